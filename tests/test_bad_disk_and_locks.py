"""Bad input class 5, the run's side: a full disk, a truncated newest checkpoint, two runs started
into one folder, and a lock left by a killed run. (Broken symlinks, loops and undecodable names
among the photos: tests/test_bad_filesystem.py.)

Each case: a plain message (exit code 2, no traceback), the finished work kept, and the next run
(after the cause is gone) continuing where it stopped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny_project import cli as _cli
from tiny_project import stopped_run as _stopped

from splatkit.train import checkpoint as ck

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def project(tiny_project):
    return tiny_project


def test_disk_full_while_writing_a_checkpoint(tmp_path, capsys, project, monkeypatch):
    out = tmp_path / "out"
    _stopped(project, out)
    real_save = ck.torch.save

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full)
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 2
    assert f"The disk holding {out} is full" in text and "what was finished is kept" in text
    assert f"then continue with: splatkit train {project} -o {out} --resume" in text
    assert [s for s, _ in ck.list_checkpoints(out)] == [10, 15]  # the intact ones, untouched
    assert not list((out / "checkpoints").glob(".*.tmp"))  # no half-written file left
    monkeypatch.setattr(ck.torch, "save", real_save)  # space freed
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 0 and "Resuming from step 15" in text


class _Usage:
    def __init__(self, free: int):
        self.total, self.used, self.free = 2 * free + 1, free, free


@pytest.mark.parametrize("where", ["sfm", "checkpoint"])
def test_a_full_disk_behind_a_library_message(tmp_path, capsys, project, monkeypatch, where):
    """pycolmap's and torch's own errors carry no errno and never say "disk": the free space of
    the output's volume tells a full disk, and a roomy disk keeps the error a bug."""
    import splatkit.job
    import splatkit.sources

    out = tmp_path / "out"
    _stopped(project, out)
    if where == "sfm":

        def fail(*a, **k):
            raise RuntimeError("No registered database factory succeeded")

        monkeypatch.setattr(splatkit.sources, "import_cameras", fail)
    else:
        def fail(*a, **k):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

        monkeypatch.setattr(ck.torch, "save", fail)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    real = shutil.disk_usage
    monkeypatch.setattr(splatkit.job.shutil, "disk_usage", lambda p: _Usage(3 * 2**20))
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 2 and f"The disk holding {out} is full (3 MB free)" in text, text
    assert "internal error" not in text and "--resume" in text
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    monkeypatch.setattr(splatkit.job.shutil, "disk_usage", real)  # room: the same error is a bug
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 1 and "internal error: RuntimeError" in text and "is full" not in text


FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from tiny_project import stopped_run as _stopped
    disk, project = Path(sys.argv[3]), Path(sys.argv[4])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    out = disk / "out"
    _stopped(project, out)
    with open(disk / "filler", "wb") as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
        except OSError:
            pass
    cmd = [sys.executable, "-m", "splatkit", "train", str(project), "-o", str(out), "--resume"]
    full = subprocess.run(cmd, capture_output=True, text=True)
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    os.unlink(disk / "filler")
    again = subprocess.run(cmd, capture_output=True, text=True)
    print(json.dumps({"rc": full.returncode, "err": full.stderr, "kept": kept,
                      "rc2": again.returncode, "err2": again.stderr}))
""")


def test_a_real_full_disk(tmp_path, project):
    """The same on a real 4 MB file system (a tmpfs in a user namespace, where the OS allows it)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available; test_disk_full_while_writing_a_checkpoint covers it")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not allowed here; the simulated full disk test covers it")
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    r = subprocess.run(["unshare", "-rm", sys.executable, "-c", FULL_DISK_SCRIPT, str(REPO), str(TESTS),
                        str(disk), str(project)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["rc"] == 2, res["err"]
    assert "is full" in res["err"] and "--resume" in res["err"] and "Traceback" not in res["err"]
    assert "step_000015.pt" in res["kept"]
    assert res["rc2"] == 0, res["err2"]


def test_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys, project):
    out = tmp_path / "out"
    _stopped(project, out)
    newest = ck.checkpoint_path(out, 15)
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short (a copy, a crash of an older tool)
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 0, text
    assert "Checkpoint step_000015.pt is damaged" in text and "Resuming from step 10" in text
    assert json.loads((out / "metrics.json").read_text())["steps"] == 40


def _wait_for(pred, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_two_runs_into_one_folder(tmp_path, capsys, project):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splatkit", "train", str(project), "-o", str(out), "--preset", "tiny",
           "--steps", "100000"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = out / "events.jsonl"
        assert _wait_for(lambda: events.exists() and '"train_step"' in events.read_text())
        rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny")
        assert rc == 2
        assert f"Training is running in {out}" in text  # named as live, with its step
        assert f"process {first.pid}, step " in text and "Wait for it to finish, or stop it" in text
        first.send_signal(signal.SIGINT)
        so, se = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, se
    assert "Checkpoint written" in se and "Traceback" not in se
    step = ck.list_checkpoints(out)[-1][0]
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume", "--steps", str(step + 5))
    assert rc == 0 and f"Resuming from step {step}" in text


def test_lock_of_a_killed_run_is_taken_over(tmp_path, capsys, project):
    out = tmp_path / "out"
    code = ("import sys, os; sys.path.insert(0, sys.argv[1]); from splatkit.rundir import RunDir; "
            "from splatkit.runlock import RunLock; "
            "lock = RunLock(RunDir(sys.argv[2]), 'train photos').acquire(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(REPO), str(out)], check=True)  # dies holding it
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny")
    assert rc == 0, text
    assert "ended without cleaning up" in text and "taking over" in text
    assert "taking over" in (out / "log.txt").read_text()
