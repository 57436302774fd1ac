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
from pathlib import Path

import pytest
from tiny_project import hashes, signal_when

from splatkit.train import checkpoint as ck

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
NATIVE_DUMP = ("*** SIGTERM", "stack trace", "Aborted at")


@pytest.fixture
def project(tiny_project):
    return tiny_project


def _clean(text: str) -> None:
    assert "Traceback" not in text
    for s in NATIVE_DUMP:
        assert s not in text, text


def test_sigterm_during_training_checkpoints_and_resumes(tmp_path, project):
    out = tmp_path / "out"
    base = [sys.executable, "-m", "splatkit", "train", str(project), "-o", str(out)]
    rc, so, se = signal_when(base + ["--preset", "tiny", "--steps", "100000"], out / "events.jsonl",
                             '"train_step"', signal.SIGTERM)
    assert rc == 143, se
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
    rc, so, se = signal_when(cmd, out / "events.jsonl", '"matching', signal.SIGTERM)
    assert rc in (130, 143), se
    _clean(so + se)
    assert f"To continue:\n  splatkit sfm {photos} -o {out}\n" in se
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "features of 11 photos" in r.stdout + r.stderr
    assert hashes(photos) == before
