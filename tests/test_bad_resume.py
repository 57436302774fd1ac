"""Bad input class 2: another run's checkpoints in the folder, and resuming with other settings.

Through the real CLI on a tiny COLMAP project (tiny preset: 40 steps, a checkpoint every 10):
a fresh run never mixes with an earlier run's checkpoints; ``--resume`` continues with the
checkpoint's settings, applies a longer ``--steps`` and refuses a changed resolution; the
retention of old checkpoints never deletes the one just written.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_project import cli as _cli
from tiny_project import hashes
from tiny_project import stopped_run as _stopped_run

from splatkit.config import preset_config
from splatkit.rundir import RunDir
from splatkit.train import checkpoint as ck


@pytest.fixture
def project(tiny_project):
    return tiny_project


def test_fresh_run_into_a_stopped_run_is_refused_then_restart_keeps_it(tmp_path, capsys, project):
    out = tmp_path / "out"
    assert _stopped_run(project, out) == [10, 15]
    before = hashes(out / "checkpoints")
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny")
    assert rc == 2 and "holds an unfinished run (stopped at step 15)" in text
    assert f"-o {out} --resume" in text and "--restart" in text
    assert hashes(out / "checkpoints") == before  # nothing of the earlier run touched
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny", "--restart")
    assert rc == 0, text
    old = RunDir(out).read_record().history[0]
    assert hashes(out / old["moved_to"] / "checkpoints") == before  # kept aside, intact
    assert json.loads((out / "metrics.json").read_text())["steps"] == 40


def test_resume_continues_the_same_run_with_a_longer_steps(tmp_path, capsys, project):
    out = tmp_path / "out"
    _stopped_run(project, out)
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume", "--steps", "60")
    assert rc == 0, text
    assert "--steps 60 (was 40): train longer" in text and "Resuming from step 15" in text
    assert json.loads((out / "metrics.json").read_text())["steps"] == 60
    # the checkpoints are this run's, and the saved settings say 60 now
    rid = RunDir(out).read_record().run_id
    assert all(ck.load_checkpoint(p)["run_id"] == rid for _, p in ck.list_checkpoints(out))
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 60


def test_resume_with_a_changed_resolution_is_refused(tmp_path, capsys, project):
    out = tmp_path / "out"
    _stopped_run(project, out)
    before = hashes(out / "checkpoints"), (out / "config.json").read_text()
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume", "--resolution", "128")
    assert rc == 2 and "--resolution (was 96; the splats were fitted to photos of that size)" in text
    assert (hashes(out / "checkpoints"), (out / "config.json").read_text()) == before
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume", "--quiet")
    assert rc == 0, text  # the refused command left nothing that confuses the next one


def test_fresh_run_into_a_finished_run_moves_it_aside(tmp_path, capsys, project):
    out = tmp_path / "out"
    assert _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny", "--quiet")[0] == 0
    first = (out / "scene.ply").read_bytes()
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--preset", "tiny", "--steps", "20")
    assert rc == 0 and "The earlier run's results were moved to" in text
    old = RunDir(out).read_record().history[0]
    assert (out / old["moved_to"] / "scene.ply").read_bytes() == first
    assert [s for s, _ in ck.list_checkpoints(out)] == [10, 20]  # no step 30/40 of the first run
    assert json.loads((out / "metrics.json").read_text())["steps"] == 20


def test_retention_never_deletes_the_checkpoint_just_written(tmp_path):
    """A foreign higher-step checkpoint left in the folder: the new run's are kept and used."""
    params = torch.nn.ParameterDict({"means": torch.nn.Parameter(torch.zeros(2, 3))})
    opt = {"means": torch.optim.Adam([{"params": [params["means"]], "name": "means"}])}
    cfg = preset_config("tiny").train
    for step in (100, 200):
        ck.save_checkpoint(tmp_path, step, params, opt, {}, {}, cfg, run_id="old")
    p = ck.save_checkpoint(tmp_path, 5, params, opt, {}, {}, cfg, run_id="new")
    assert p.exists()
    p2 = ck.save_checkpoint(tmp_path, 10, params, opt, {}, {}, cfg, run_id="new")
    assert p.exists() and p2.exists()  # keep 2: the one just written and the one before
    path, payload = ck.load_latest(tmp_path, run_id="new")
    assert path == p2 and payload["run_id"] == "new"  # the old run's step 200 is not used
