"""splatkit.gpu: probes must be safe and plain-spoken on a CPU machine and with odd toolkits."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from splatkit import gpu
from splatkit.gpu import ERROR, OK, WARN, GpuProbe, report_lines


def _gpu_probe(**kw) -> GpuProbe:
    base = dict(
        torch_version="2.11.0+cu130",
        torch_cuda="13.0",
        cuda_available=True,
        device_count=1,
        gpu_name="NVIDIA H100 80GB HBM3",
        gpu_memory_gib=79.6,
        gpu_capability=(9, 0),
        nvcc_path="/usr/local/cuda/bin/nvcc",
        nvcc_version="13.0",
        gsplat_version="1.5.3",
        gsplat_jit_dir="/root/.cache/torch_extensions/py312_cu130/gsplat_cuda",
    )
    base.update(kw)
    return GpuProbe(**base)


def _levels(lines):
    return [lvl for lvl, _ in lines]


def _text(lines):
    return "\n".join(msg for _, msg in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_probe_on_cpu_machine_reports_no_gpu():
    info = gpu.probe()
    assert info.cuda_available is False
    assert info.gpu_name is None
    lines = report_lines(info)
    assert _levels(lines)[-1] == OK
    assert "No GPU" in _text(lines)
    assert not gpu.gsplat_usable(info)
    assert "[ok] No GPU" in gpu.summary(info)


def test_probe_never_imports_gsplat_backend():
    """In a fresh interpreter: probing must not import (and so JIT-build) gsplat's CUDA code."""
    code = (
        "import sys; from splatkit import gpu; gpu.probe(); "
        "sys.exit(1 if 'gsplat.cuda._backend' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cpu_only_torch_build_is_named():
    lines = report_lines(GpuProbe(torch_version="2.13.0+cpu", torch_cuda=None))
    assert "CPU-only build" in _text(lines)
    lines = report_lines(GpuProbe(torch_version="2.11.0+cu130", torch_cuda="13.0"))
    assert "sees no NVIDIA GPU" in _text(lines)


def test_ready_gpu_needs_first_build():
    info = _gpu_probe()
    lines = report_lines(info)
    text = _text(lines)
    assert "NVIDIA H100" in text and "80 GiB" in text
    assert "compiles its CUDA code on first use" in text
    assert ERROR not in _levels(lines)
    assert gpu.gsplat_usable(info)


def test_built_gsplat_has_no_warning():
    lines = report_lines(_gpu_probe(gsplat_jit_built=True))
    assert _levels(lines) == [OK, OK, OK]
    assert "already compiled" in _text(lines)


def test_missing_nvcc_is_an_error_until_built():
    lines = report_lines(_gpu_probe(nvcc_path=None, nvcc_version=None))
    assert _levels(lines)[-1] == ERROR
    assert "nvcc not found: install the CUDA toolkit matching PyTorch's CUDA 13.0" in _text(
        lines
    ).replace(", and gsplat's CUDA code is not compiled yet", "")
    built = _gpu_probe(nvcc_path=None, nvcc_version=None, gsplat_precompiled=True)
    assert ERROR not in _levels(report_lines(built))
    assert gpu.gsplat_usable(built)
    assert not gpu.gsplat_usable(_gpu_probe(nvcc_path=None, nvcc_version=None))


def test_cuda_major_mismatch():
    info = _gpu_probe(nvcc_version="12.4")
    lines = report_lines(info)
    assert ERROR in _levels(lines)
    assert "nvcc is CUDA 12.4 but PyTorch was built with CUDA 13.0" in _text(lines)
    assert not gpu.gsplat_usable(info)
    # once built, a mismatched nvcc no longer matters much
    assert ERROR not in _levels(
        report_lines(_gpu_probe(nvcc_version="12.4", gsplat_jit_built=True))
    )


def test_cuda_minor_mismatch_is_fine():
    lines = report_lines(_gpu_probe(nvcc_version="13.2"))
    assert ERROR not in _levels(lines) and "same major version" in _text(lines)


def test_gsplat_missing():
    lines = report_lines(_gpu_probe(gsplat_version=None))
    assert _levels(lines)[-1] == ERROR and "pip install gsplat" in _text(lines)


def test_find_nvcc_simulated_absent(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)
    monkeypatch.setattr(gpu, "Path", _PathNoDefault)
    assert gpu.find_nvcc() is None


class _PathNoDefault(type(gpu.Path())):
    def is_file(self):  # pretend /usr/local/cuda/bin/nvcc does not exist
        return False


def test_find_nvcc_from_cuda_home(monkeypatch, tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n")
    nvcc.chmod(0o755)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert gpu.find_nvcc() == str(nvcc)
    assert gpu.nvcc_version(str(nvcc)) == "12.8"


def test_nvcc_version_unreadable(tmp_path):
    assert gpu.nvcc_version(str(tmp_path / "missing")) is None


def test_probe_with_simulated_missing_nvcc(monkeypatch):
    monkeypatch.setattr(gpu, "find_nvcc", lambda: None)
    info = gpu.probe()
    assert info.nvcc_path is None and info.nvcc_version is None


def test_jit_dir_naming(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    d = gpu.gsplat_jit_dir("13.0")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert (
        d.name == "gsplat_cuda"
        and d.parent.name.startswith(py)
        and d.parent.name.endswith("_cu130")
    )
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert gpu.gsplat_jit_dir("13.0") == tmp_path / "gsplat_cuda"


def test_jit_built_detected(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    info = GpuProbe(torch_cuda="13.0")
    gpu.probe_gsplat(info)
    assert info.gsplat_jit_built is False
    (tmp_path / "gsplat_cuda").mkdir()
    (tmp_path / "gsplat_cuda" / "gsplat_cuda.so").write_bytes(b"")
    gpu.probe_gsplat(info)
    assert info.gsplat_jit_built is True


def test_broken_cuda_query_is_reported(monkeypatch):
    def boom():
        raise RuntimeError("driver too old")

    monkeypatch.setattr(torch.cuda, "is_available", boom)
    info = GpuProbe()
    gpu.probe_torch(info)
    assert info.cuda_available is False
    lines = report_lines(info)
    assert lines[0][0] == WARN and "driver too old" in lines[0][1]
