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
    assert f"-o {out} --resume" in text and f"-o {out} --preset tiny --restart" in text
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


def _copy(project, dest):
    import shutil

    shutil.copytree(project, dest)
    return dest


@pytest.mark.parametrize("change", ["replaced", "deleted", "added"])
def test_resume_on_other_photos_is_refused_before_anything_changes(tmp_path, capsys, project, change):
    """The photos under the same names from another capture, one deleted, one added: the
    checkpoint cannot continue on them; refused with what changed, --restart offered."""
    from PIL import Image

    proj = _copy(project, tmp_path / "proj")
    out = tmp_path / "out"
    _stopped_run(proj, out)
    photo = proj / "images" / "0003.jpg"
    if change == "replaced":  # same name, same size class, other pixels
        with Image.open(photo) as im:
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo, quality=95)
    elif change == "deleted":
        photo.unlink()
    else:
        (proj / "images" / "0009.jpg").write_bytes(photo.read_bytes())
    inputs, before = hashes(proj), hashes(out)
    rc, text = _cli(capsys, "train", str(proj), "-o", str(out), "--resume")
    word = {"replaced": "1 changed (images/0003.jpg)", "deleted": "1 removed (images/0003.jpg)",
            "added": "1 added (images/0009.jpg)"}[change]
    assert rc == 2 and "The input changed since the run" in text and word in text, text
    # the offered restart keeps the run's preset (without it: the default preset, hours on a CPU)
    assert f"splatkit train {proj} -o {out} --preset tiny --restart" in text and "internal error" not in text
    assert hashes(proj) == inputs  # the photos untouched
    assert {k: v for k, v in hashes(out).items() if k not in ("log.txt", "events.jsonl")} == \
        {k: v for k, v in before.items() if k not in ("log.txt", "events.jsonl")}
    if change == "deleted":
        return
    rc, text = _cli(capsys, "train", str(proj), "-o", str(out), "--restart", "--preset", "tiny", "--quiet")
    assert rc == 0, text  # the offered command works, and the earlier run is kept aside
    assert (out / RunDir(out).read_record().history[0]["moved_to"] / "checkpoints").is_dir()


def test_resume_after_renaming_the_photos_folder_continues(tmp_path, capsys, project):
    proj = _copy(project, tmp_path / "proj")
    out = tmp_path / "out"
    _stopped_run(proj, out)
    moved = proj.rename(tmp_path / "renamed")
    rc, text = _cli(capsys, "train", str(moved), "-o", str(out), "--resume")
    assert rc == 0 and "Resuming from step 15" in text, text


def test_resume_on_another_camera_model_is_refused(tmp_path, capsys, project):
    """The SfM output the checkpoints belong to is recorded: a different sparse/0 (SfM run again
    on the same photos) cannot be continued either."""
    out = tmp_path / "out"
    _stopped_run(project, out)
    rd = RunDir(out)
    rec = rd.read_record()
    assert rec.model == rd.model_id() != ""
    rec.model = "another-model"
    rd.write_record(rec)
    rc, text = _cli(capsys, "train", str(project), "-o", str(out), "--resume")
    assert rc == 2 and "are not the ones the run" in text and "--preset tiny --restart" in text, text
