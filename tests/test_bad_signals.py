"""Bad input class 6: SIGTERM (what ``kill`` and container stops send) behaves like Ctrl-C.

During training: a checkpoint, the one command that resumes, exit code 143, and no native stack
dump (pycolmap installs glog's SIGTERM handler on import; splatkit replaces it). During SfM: the
call is cancelled between images, finished work is kept, the same command continues.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_project import hashes, make_project

from splatkit.train import checkpoint as ck

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
NATIVE_DUMP = ("*** SIGTERM", "stack trace", "Aborted at")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("tiny") / "proj")


def _wait_for(path: Path, needle: str, proc, timeout: float = 180.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if path.exists() and needle in path.read_text(encoding="utf-8"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {path}")


def _clean(text: str) -> None:
    assert "Traceback" not in text
    for s in NATIVE_DUMP:
        assert s not in text, text


def test_sigterm_during_training_checkpoints_and_resumes(tmp_path, project):
    out = tmp_path / "out"
    base = [sys.executable, "-m", "splatkit", "train", str(project), "-o", str(out)]
    proc = subprocess.Popen(base + ["--preset", "tiny", "--steps", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "events.jsonl", '"train_step"', proc)
        proc.send_signal(signal.SIGTERM)
        so, se = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, se
    _clean(so + se)
    assert f"Checkpoint written. To continue:\n  splatkit train {project} -o {out} --resume" in se
    step = ck.list_checkpoints(out)[-1][0]
    assert step > 0
    r = subprocess.run(base + ["--resume", "--steps", str(step + 3), "--quiet"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == step + 3


@pytest.mark.skipif(not (DATA / "strecha_fountain_p11").is_dir(), reason="shared datasets not found")
def test_sigterm_during_matching_keeps_the_features(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted((DATA / "strecha_fountain_p11" / "images").glob("*.jpg")):
        with Image.open(f) as im:
            im.draft("RGB", (600, 600))
            im = im.convert("RGB")
            im.thumbnail((300, 300))
            im.save(photos / f.name, quality=92)
    before = hashes(photos)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splatkit", "sfm", str(photos), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "events.jsonl", '"matching', proc)
        proc.send_signal(signal.SIGTERM)
        so, se = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 143), se
    _clean(so + se)
    assert f"To continue:\n  splatkit sfm {photos} -o {out}\n" in se
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "features of 11 photos" in r.stdout + r.stderr
    assert hashes(photos) == before
