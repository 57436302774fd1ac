"""splatkit/rundir.py: the output folder's names and rules (separation, record)."""

from __future__ import annotations

import json

import pytest

from splatkit.errors import UserError
from splatkit.rundir import (
    LAYOUT,
    RunDir,
    RunRecord,
    check_separate,
    foreign_entries,
    input_root,
    suggest_out_dir,
)


def test_every_layout_name_has_a_path():
    rd = RunDir("/x")
    paths = {rd.config, rd.log, rd.events, rd.work, rd.sfm_work, rd.images, rd.checkpoints,
             rd.previews, rd.scene_ply, rd.metrics, rd.report, rd.unreal, rd.exports, rd.previous,
             rd.blocks, rd.scene_clean_ply, rd.sky, rd.sky_png, rd.depth}
    tops = {p.relative_to(rd.root).parts[0] for p in paths | {rd.sparse, rd.work_images, rd.frames}}
    assert tops == set(LAYOUT)


@pytest.mark.parametrize("out", ["photos", "photos/out", "photos/a/b", "."])
def test_output_inside_or_equal_to_photos_is_refused(tmp_path, out):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="inside the photos folder"):
        check_separate(tmp_path / "photos", tmp_path / "photos" / out if out != "." else tmp_path / "photos")


def test_output_containing_the_input_is_refused(tmp_path):
    (tmp_path / "proj" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match="contains the photos folder"):
        check_separate(tmp_path / "proj" / "images", tmp_path / "proj")
    clip = tmp_path / "clips" / "clip.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    with pytest.raises(UserError, match="contains the video"):
        check_separate(clip, tmp_path / "clips")
    with pytest.raises(UserError, match="contains the video"):
        check_separate(clip, tmp_path)
    check_separate(clip, tmp_path / "clips-out")  # beside it: fine


def test_transforms_json_counts_as_its_folder(tmp_path):
    (tmp_path / "scene").mkdir()
    tj = tmp_path / "scene" / "transforms.json"
    tj.write_text("{}")
    assert input_root(tj) == (tmp_path / "scene").resolve()
    with pytest.raises(UserError, match="inside"):
        check_separate(tj, tmp_path / "scene")
    with pytest.raises(UserError, match="inside"):
        check_separate(tj, tmp_path / "scene" / "out")
    assert suggest_out_dir(tj) == (tmp_path / "scene-splatkit").resolve()


def test_foreign_layout_names_are_found(tmp_path):
    rd = RunDir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("mine")  # not a layout name: never touched, not refused
    assert foreign_entries(rd, None) == ["images"]
    assert foreign_entries(rd, RunRecord("r", written={"images"})) == []
    # a folder of a run written before the record existed counts as splatkit's own
    rd.config.write_text(json.dumps({"train": {}, "sfm": {}}))
    assert foreign_entries(rd, None) == []


def test_record_round_trip(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.read_record() is None
    rd.write_record(RunRecord("abc", written={"scene.ply"}, source="/photos"))
    rec = rd.read_record()
    assert (rec.run_id, rec.written, rec.source) == ("abc", {"scene.ply"}, "/photos")
    assert rd.train_command(resume=True) == f"splatkit train /photos -o {tmp_path} --resume"
    rd.record_path.write_text("{not json")
    assert rd.read_record() is None


def test_default_output_sits_beside_a_linked_photos_folder(tmp_path):
    (tmp_path / "real" / "photos").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    link = tmp_path / "work" / "shoot"
    link.symlink_to(tmp_path / "real" / "photos")
    assert suggest_out_dir(link) == tmp_path / "work" / "shoot-splatkit"
