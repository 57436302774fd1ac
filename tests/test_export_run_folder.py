"""One run-folder export (splatkit/export/run_folder.py): finished, unfinished and wrong folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splatkit.errors import UserError
from splatkit.export.run_folder import check_finished, export_run, summary_lines
from splatkit.export.unreal import UnrealExportOptions
from tests.fake_run import make_fake_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("run") / "out")


def test_export_run_writes_and_summarises(run, tmp_path):
    res = export_run(run, UnrealExportOptions(plugin="nanogs", tiles="none"), dest=tmp_path / "u")
    assert res.manifest_path.name == "scene.unreal.json" and res.manifest["plugin"] == "nanogs"
    assert (tmp_path / "u" / "import_splat.py").is_file()
    text = "\n".join(summary_lines(res))
    assert "scale candidate eye-height" in text and "Execute Python Script" in text


def test_unfinished_runs_say_why(tmp_path):
    (tmp_path / "ckpt" / "checkpoints").mkdir(parents=True)
    (tmp_path / "ckpt" / "checkpoints" / "step_000100.pt").write_bytes(b"x")
    with pytest.raises(UserError) as e:
        check_finished(tmp_path / "ckpt")
    assert "training has not finished" in e.value.what and "--resume" in e.value.todo
    (tmp_path / "poses" / "sparse" / "0").mkdir(parents=True)
    with pytest.raises(UserError) as e:
        check_finished(tmp_path / "poses")
    assert "camera poses only" in e.value.what and "splatkit train" in e.value.todo
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError) as e:
        check_finished(tmp_path / "other")
    assert "not a splatkit output folder" in e.value.what
    with pytest.raises(UserError):
        check_finished(tmp_path / "missing")


def test_cli_unfinished_run_is_two_lines(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_000010.pt").write_bytes(b"x")
    r = subprocess.run(
        [sys.executable, "-m", "splatkit", "export", str(tmp_path), "--for", "unreal"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "training has not finished" in r.stderr and "--resume" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) <= 2
    assert not (tmp_path / "unreal").exists()


def test_manifest_is_json_with_scale_fields(run, tmp_path):
    res = export_run(run, UnrealExportOptions(plugin="picosplat"), dest=tmp_path / "p")
    m = json.loads(res.manifest_path.read_text())
    assert {"scale_source", "metres_per_unit", "scale_uncertainty", "up", "tiles", "collision"} <= set(m)
