"""splatkit/run.py: the resume decision (fresh, moved aside, refused, resumed with changes)."""

from __future__ import annotations

import pytest

from splatkit.config import SAFE_ON_RESUME, preset_config
from splatkit.errors import UserError
from splatkit.run import flatten, option_name, plan_run
from splatkit.rundir import RunDir, RunRecord


def _saved(tmp_path, steps=40, done=None, finished=False):
    rd = RunDir(tmp_path)
    cfg = preset_config("tiny")
    cfg.train.steps = steps
    rd.config.write_text(cfg.to_json())
    rec = RunRecord("run1", written={"config.json", "checkpoints", "scene.ply", "metrics.json"})
    rd.write_record(rec)
    if done is not None:
        rd.checkpoints.mkdir()
        (rd.checkpoints / f"step_{done:06d}.pt").write_bytes(b"x")
    if finished:
        rd.scene_ply.write_bytes(b"ply")
        rd.metrics.write_text("{}")
    return rd, rec, cfg


def test_fresh_run_in_an_empty_folder(tmp_path):
    rd, rec = RunDir(tmp_path), RunRecord("r0")
    run = plan_run(rd, rec, preset_config("tiny"), set(), resume=False)
    assert not run.resume and run.run_id == "r0" and not run.notes


def test_fresh_run_moves_a_finished_run_aside(tmp_path):
    rd, rec, cfg = _saved(tmp_path, done=40, finished=True)
    run = plan_run(rd, rec, cfg, set(), resume=False)
    moved = rd.previous / "run1"
    assert (moved / "scene.ply").read_bytes() == b"ply" and (moved / "checkpoints").is_dir()
    assert not rd.scene_ply.exists() and not rd.checkpoints.exists()
    assert run.run_id != "run1" and "moved to" in run.notes[0]
    assert rd.read_record().history[0]["run_id"] == "run1"


def test_fresh_run_refuses_an_unfinished_run_then_restart_keeps_it(tmp_path):
    rd, rec, cfg = _saved(tmp_path, done=20)
    with pytest.raises(UserError) as e:
        plan_run(rd, rec, cfg, set(), resume=False, command="splatkit train p -o o")
    assert "stopped at step 20" in e.value.what
    assert "splatkit train p -o o --resume" in e.value.todo and "--restart" in e.value.todo
    run = plan_run(rd, rec, cfg, set(), resume=False, restart=True)
    assert (rd.previous / "run1" / "checkpoints" / "step_000020.pt").exists() and not run.resume


def test_resume_applies_safe_changes_and_says_so(tmp_path):
    rd, rec, _ = _saved(tmp_path, steps=40, done=20)
    asked = preset_config("standard")  # another preset's values, but only --steps was given
    asked.train.steps = 80
    run = plan_run(rd, rec, asked, {"train.steps"}, resume=True)
    assert run.resume and run.cfg.train.steps == 80 and run.cfg.preset == "tiny"
    assert run.cfg.train.resolution == 96  # the saved run's, not the other preset's
    assert "--steps 80 (was 40)" in run.notes[0]


@pytest.mark.parametrize("key,value", [("train.resolution", 200), ("train.sh_degree", 3),
                                       ("train.strategy", "mcmc"), ("preset", "quick"),
                                       ("train.seed", 7)])
def test_resume_refuses_unsafe_changes(tmp_path, key, value):
    rd, rec, cfg = _saved(tmp_path, done=20)
    asked = preset_config("tiny")
    section, _, name = key.rpartition(".")
    setattr(getattr(asked, section) if section else asked, name, value)
    with pytest.raises(UserError) as e:
        plan_run(rd, rec, asked, {key}, resume=True)
    assert option_name(key) in e.value.what and "cannot change when resuming" in e.value.what


def test_resume_edge_cases(tmp_path):
    with pytest.raises(UserError, match="Nothing to resume"):
        plan_run(RunDir(tmp_path / "none"), RunRecord("r"), preset_config("tiny"), set(), resume=True)
    rd, rec, cfg = _saved(tmp_path, steps=40, done=40, finished=True)
    with pytest.raises(UserError, match="has finished"):
        plan_run(rd, rec, cfg, set(), resume=True)
    cfg.train.steps = 10
    with pytest.raises(UserError, match="fewer than the 40 steps"):
        plan_run(rd, rec, cfg, {"train.steps"}, resume=True)


def test_safe_keys_are_real_settings():
    assert set(SAFE_ON_RESUME) <= set(flatten(preset_config("quick")))
