"""``splatkit doctor``: ready on this machine; names the problem and fails when something is off."""

from __future__ import annotations

import sys
import time
from collections import namedtuple

import pytest

from splatkit import doctor
from splatkit.cli import main


def run(folder) -> tuple[int, list[str]]:
    lines: list[str] = []
    return doctor.doctor(folder, out=lines.append), lines


def test_ready_here(tmp_path):
    import torch

    t0 = time.perf_counter()
    code, lines = run(tmp_path)
    assert time.perf_counter() - t0 < 10
    assert code == 0, "\n".join(lines)
    assert all(line.split()[0] in ("OK", "WARN") for line in lines[:-1]), lines
    for name in ("Python", "PyTorch", "GPU", "pycolmap", "numba", "Disk", "Memory",
                 "Write access"):
        assert any(line.split(None, 1)[1].startswith(name) for line in lines[:-1]), name
    assert lines[-1].startswith("Ready")
    if not torch.cuda.is_available():
        assert "on the CPU" in lines[-1]
        assert any("No GPU" in line for line in lines)


def test_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["doctor"]) == 0
    assert str(tmp_path) in capsys.readouterr().out


def test_unwritable_folder(tmp_path, monkeypatch):
    # tests run as root, for whom chmod does not stop writes: simulate the refusal
    monkeypatch.setattr(doctor, "can_write", lambda folder: "Permission denied")
    code, lines = run(tmp_path)
    assert code != 0
    bad = [line for line in lines if line.startswith("FAIL")]
    assert len(bad) == 1 and "Write access" in bad[0] and str(tmp_path) in bad[0]
    assert "Permission denied" in bad[0] and lines[-1].startswith("Not ready")


def test_can_write_probe(tmp_path):
    assert doctor.can_write(tmp_path) is None
    assert doctor.can_write(tmp_path / "missing") is not None


@pytest.mark.parametrize("module,hint", [("pycolmap", "pip install pycolmap"),
                                         ("plyfile", "pip install plyfile")])
def test_missing_package(tmp_path, monkeypatch, module, hint):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    code, lines = run(tmp_path)
    assert code != 0
    bad = [line for line in lines if line.startswith("FAIL")]
    assert len(bad) == 1 and module in bad[0] and hint in bad[0], bad


def test_missing_numba_without_gpu(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("with a GPU a missing numba is only a warning")
    monkeypatch.setitem(sys.modules, "numba", None)
    code, lines = run(tmp_path)
    assert code != 0 and any(line.startswith("FAIL") and "numba" in line for line in lines)


def test_low_disk_warns_but_ready(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: usage(100e9, 98e9, 2e9))
    code, lines = run(tmp_path)
    assert code == 0
    assert any(line.startswith("WARN") and "Disk" in line and "2.0 GB" in line for line in lines)


def test_gpu_error_fails(tmp_path, monkeypatch):
    """A GPU that gsplat cannot use (e.g. no nvcc) is a FAIL that says what to do."""
    monkeypatch.setattr(doctor, "gpu_checks", lambda: (
        [doctor.Check(doctor.FAIL, "GPU", "nvcc not found ... or use --device cpu.")], False))
    code, lines = run(tmp_path)
    assert code == 1 and any("--device cpu" in line for line in lines)
