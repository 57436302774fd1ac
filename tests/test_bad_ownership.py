"""Readers and writers of one run folder, with real processes: ``export`` racing a re-train, two
exports, ``report``/``export``/``view`` while training runs.

Writers (train, sfm, export) hold the folder's lock exclusively, readers (report, view) shared
(splatkit.runlock.RunLock): a live run is named as live with its step, an export never lands in a
run that replaced the scene it read, and two exports never silently replace each other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_project import cli as _cli
from tiny_project import hashes

from splatkit.rundir import RunDir

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
#: ``splatkit ARGS`` in a process whose reading of scene.ply waits for the file ``argv[1]``: the
#: export holds the folder while another command starts
SLOW_EXPORT = (
    "import os, sys, time; import splatkit.export.ply as p; read = p.read_ply\n"
    "def slow(*a, **k):\n"
    "    t = time.time()\n"
    "    while not os.path.exists(sys.argv[1]) and time.time() - t < 300:\n"
    "        time.sleep(0.05)\n"
    "    return read(*a, **k)\n"
    "p.read_ply = slow\nfrom splatkit.cli import main\nsys.exit(main(sys.argv[2:]))\n"
)


@pytest.fixture(scope="module")
def finished(tiny_project, tmp_path_factory):
    """A finished tiny run (copied by each test)."""
    from splatkit.cli import main

    out = tmp_path_factory.mktemp("finished") / "out"
    assert main(["train", str(tiny_project), "-o", str(out), "--preset", "tiny", "--quiet"]) == 0
    return out


def _copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def _wait_for(pred, timeout=180.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _holder(out: Path) -> str:
    try:
        return json.loads((out / ".splatkit" / "lock.json").read_text()).get("command", "")
    except (OSError, ValueError):
        return ""


def _slow_export(out: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """An export that holds the folder until the returned file is made."""
    release = out.parent / "release"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(release), "export", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return proc, release


def test_an_export_racing_a_retrain(tmp_path, capsys, tiny_project, finished):
    out = _copy(finished, tmp_path)
    before = hashes(tiny_project)
    export, release = _slow_export(out)
    try:
        assert _wait_for(lambda: _holder(out) == "export"), export.communicate()
        retrain = subprocess.run([sys.executable, "-m", "splatkit", "train", str(tiny_project), "-o",
                                  str(out), "--preset", "tiny"], capture_output=True, text=True, env=ENV)
        release.touch()
        so, se = export.communicate(timeout=300)
    finally:
        if export.poll() is None:
            export.kill()
    assert export.returncode == 0, se
    assert retrain.returncode == 2 and "Traceback" not in retrain.stderr, retrain.stderr
    assert f"An export is being written in {out}" in retrain.stderr
    manifest = json.loads(next((out / "unreal").glob("*.unreal.json")).read_text())
    first_run = RunDir(out).read_record().run_id
    assert manifest["run_id"] == first_run  # the export belongs to the scene it read
    rc, text = _cli(capsys, "train", str(tiny_project), "-o", str(out), "--preset", "tiny", "--quiet")
    assert rc == 0, text  # the re-train, now: the earlier scene's export moved aside with it
    assert not (out / "unreal").exists()
    assert (out / "previous" / first_run / "unreal").is_dir()
    assert hashes(tiny_project) == before


def test_two_exports_with_other_settings(tmp_path, capsys, finished):
    out = _copy(finished, tmp_path)
    first, release = _slow_export(out, "--scale", "2")
    try:
        assert _wait_for(lambda: _holder(out) == "export"), first.communicate()
        rc, text = _cli(capsys, "export", str(out), "--scale", "3")
        release.touch()
        so, se = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, se
    assert rc == 2 and f"An export is being written in {out}" in text and "Wait for it" in text
    scale = json.loads(next((out / "unreal").glob("*.unreal.json")).read_text())["options"]["scale"]
    assert scale == "2"
    # one after the other with another scale: the earlier one is kept, and said
    rc, text = _cli(capsys, "export", str(out), "--scale", "3")
    assert rc == 0, text
    kept = list((out / "previous").glob("unreal-*"))
    assert len(kept) == 1 and f"it was kept in {kept[0]}" in text and "scale 2 -> 3" in text
    assert json.loads(next(kept[0].glob("*.unreal.json")).read_text())["options"]["scale"] == "2"
    assert json.loads(next((out / "unreal").glob("*.unreal.json")).read_text())["options"]["scale"] == "3"
    rc, text = _cli(capsys, "export", str(out), "--scale", "3")  # the same settings: replaced
    assert rc == 0 and len(list((out / "previous").glob("unreal-*"))) == 1


def test_report_export_and_view_while_training_runs(tmp_path, capsys, tiny_project):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splatkit", "train", str(tiny_project), "-o", str(out), "--preset",
           "tiny", "--steps", "100000"]
    train = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        events = out / "events.jsonl"
        assert _wait_for(lambda: events.exists() and '"train_step"' in events.read_text(), 600)
        for argv in (("report", str(out)), ("export", str(out)),
                     ("view", str(out), "--no-browser", "--port", "0")):
            rc, text = _cli(capsys, *argv)
            lines = text.strip().splitlines()
            assert rc == 2 and len(lines) == 2, text
            assert f"Training is running in {out}" in lines[0] and f"process {train.pid}, step " in lines[0]
            step = int(lines[0].split(", step ")[1].split(",")[0])
            assert step >= 1 and "--resume" not in text and "stopped at" not in text
            assert "Wait for it to finish, or stop it first" in lines[1]
        assert not (out / "report.html").exists() and not (out / "unreal").exists()
        train.send_signal(signal.SIGINT)
        train.communicate(timeout=180)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
    rc, text = _cli(capsys, "report", str(out))  # stopped now: the report says where, truly
    assert rc == 0
    page = (out / "report.html").read_text()
    from splatkit.train.checkpoint import list_checkpoints

    assert f"Training stopped at step {list_checkpoints(out)[-1][0]}" in page
