"""splatkit/job.py: the one job setup (open, lock, record, claim; disk-full detection)."""

from __future__ import annotations

import errno
import json

import pytest

from splatkit.config import preset_config
from splatkit.errors import UserError
from splatkit.events import EventBus
from splatkit.job import CLAIMS, JobRequest, is_disk_full, open_run_dir, run_job
from splatkit.rundir import LAYOUT, RunDir


@pytest.fixture
def project(tiny_project):
    return tiny_project


def test_open_claims_and_records(tmp_path, project):
    opened = open_run_dir(tmp_path / "out", project, "sfm")
    try:
        opened.claim(CLAIMS["sfm"])
        rec = RunDir(tmp_path / "out").read_record()
        assert rec.written == set(CLAIMS["sfm"]) and "scene.ply" not in rec.written
        with pytest.raises(UserError, match="Camera poses are being computed in"):
            open_run_dir(tmp_path / "out", project, "train")
    finally:
        opened.lock.release()
    assert set(CLAIMS["train"]) == set(LAYOUT)


def test_sfm_job_writes_config_and_the_record_names_the_input(tmp_path, project):
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    res = run_job(JobRequest(source=project, out_dir=tmp_path / "out", cfg=preset_config("tiny"),
                             command="sfm"), bus)
    rd = RunDir(tmp_path / "out")
    assert len(res.scene.cameras) == 8 and rd.sparse.is_dir() and not rd.checkpoints.exists()
    assert json.loads(rd.config.read_text())["preset"] == "tiny"
    assert rd.read_record().source == str(project.resolve())
    assert rd.log.read_text().strip() and seen  # the log and the caller's bus both got events
    assert not (rd.meta / "lock.json").exists()  # released


def test_disk_full_detection(tmp_path):
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    # a library's wrapped write error counts only when the disk really is (nearly) full
    assert not is_disk_full(RuntimeError("PytorchStreamWriter failed writing file"), tmp_path)
