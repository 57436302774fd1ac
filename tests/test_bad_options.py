"""Bad input class 7: options out of range, refused up front with their valid range.

Every numeric option of every command is checked where it is parsed (``splatkit.options``, from
the config fields' ``min``/``max`` metadata); a ``config.json`` edited out of range is refused
when a run resumes with it. Each: exit code 2, two lines naming the option and the range, no
traceback, and nothing written.
"""

from __future__ import annotations

import json

import pytest

from splatkit.cli import main
from splatkit.config import RunConfig, preset_config, validate
from splatkit.errors import UserError
from splatkit.rundir import RunDir

BAD = [
    (["train", "P", "--max-splats", "-1"], "--max-splats: must be at least 1"),
    (["train", "P", "--max-splats", "0"], "--max-splats: must be at least 1"),
    (["train", "P", "--steps", "1e23"], "--steps: must be at least 1 and at most 10,000,000, not 1e23"),
    (["train", "P", "--steps", "0"], "--steps: must be at least 1"),
    (["train", "P", "--steps", "2.5"], "--steps: '2.5' is not a whole number"),
    (["train", "P", "--steps", "many"], "--steps: 'many' is not a number"),
    (["train", "P", "--resolution", "8"], "--resolution: must be at least 32"),
    (["train", "P", "--seed", "-3"], "--seed: must be at least 0"),
    (["train", "P", "--sh-degree", "4"], "--sh-degree: must be at least 0 and at most 3, not 4"),
    (["train", "P", "--video-fps", "0"], "--video-fps: must be above 0 and at most 60, not 0"),
    (["train", "P", "--video-fps", "100"], "--video-fps: must be above 0 and at most 60, not 100"),
    (["sfm", "P", "--video-fps", "-1"], "--video-fps: must be above 0"),
    (["train", ""], "argument photos: is empty"),
    (["sfm", ""], "argument photos: is empty"),
    (["train", "P", "-o", ""], "argument -o/--out: is empty"),
    (["view", "P", "--port", "70000"], "--port: must be between 0 and 65535, not 70000"),
    (["view", "P", "--port", "-1"], "--port: must be between 0 and 65535"),
    (["serve", "--port", "70000"], "--port: must be between 0 and 65535"),
    (["export", "P", "--max-splats", "0"], "--max-splats: must be at least 1"),
    (["export", "P", "--sh-degree", "9"], "--sh-degree: must be at least 0 and at most 3, not 9"),
    (["export", "P", "--drop-background", "-2"], "--drop-background: must be at least 0"),
    (["serve", "--ray-cpus", "0"], "--ray-cpus: must be at least 1"),
    (["serve", "--max-upload-mb", "-5"], "--max-upload-mb: must be a number above 0"),
    (["serve", "--max-upload-mb", "inf"], "--max-upload-mb: must be a number above 0"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_option_out_of_range(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P").mkdir()
    with pytest.raises(SystemExit) as e:
        main([a if a != "P" else str(tmp_path / "P") for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and message in lines[0], err
    assert "--help" in lines[1] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P"]  # nothing written


def test_every_numeric_setting_has_a_range():
    """A new numeric setting without min/max would slip through: each must declare its range."""
    import dataclasses

    from splatkit.config import IngestConfig, SfmConfig, TrainConfig, field_range

    for klass in (IngestConfig, SfmConfig, TrainConfig):
        for f in dataclasses.fields(klass):
            if f.type in ("int", "float", int, float):
                assert field_range(f) is not None, f"{klass.__name__}.{f.name} has no range"


def test_edited_config_out_of_range_is_refused_on_resume(tmp_path, capsys):
    rd = RunDir(tmp_path / "out")
    rd.root.mkdir()
    cfg = json.loads(preset_config("tiny").to_json())
    cfg["train"]["max_splats"] = 0
    rd.config.write_text(json.dumps(cfg))
    (tmp_path / "photos").mkdir()
    rc = main(["train", str(tmp_path / "photos"), "-o", str(rd.root), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "--max-splats must be at least 1" in err and "Traceback" not in err
    with pytest.raises(UserError, match="--init-opacity must be above 0 and below 1, not 1"):
        c = RunConfig.from_dict(cfg)
        c.train.max_splats, c.train.init_opacity = 10, 1.0
        validate(c)


def test_video_fps_option_sets_the_setting(tmp_path):
    from splatkit.cli import build_parser, config_from_args

    for command in ("train", "sfm"):
        args = build_parser().parse_args([command, str(tmp_path), "--video-fps", "4.5"])
        cfg, explicit = config_from_args(args)
        assert cfg.ingest.video_fps == 4.5 and "ingest.video_fps" in explicit
    cfg, explicit = config_from_args(build_parser().parse_args(["train", str(tmp_path)]))
    assert cfg.ingest.video_fps == 2.0 and "ingest.video_fps" not in explicit
