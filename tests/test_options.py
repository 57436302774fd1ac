"""splatkit/options.py: argparse types that hold a value to its setting's range where it is typed."""

from __future__ import annotations

import argparse

import pytest

from splatkit.config import TrainConfig
from splatkit.options import input_path, number, port_number, positive_int, positive_number


def test_number_accepts_whole_numbers_in_range():
    steps = number(TrainConfig, "steps")
    assert steps("2000") == 2000 and steps("1e4") == 10_000 and isinstance(steps("1e4"), int)
    lam = number(TrainConfig, "ssim_lambda")
    assert lam("0.25") == 0.25


@pytest.mark.parametrize("name,text,why", [
    ("steps", "0", "must be at least 1 and at most 10,000,000, not 0"),
    ("steps", "1.5", "'1.5' is not a whole number"),
    ("steps", "nan", "is not a whole number"),
    ("ssim_lambda", "1.5", "must be at least 0 and at most 1, not 1.5"),
    ("init_opacity", "0", "must be above 0 and below 1, not 0"),
    ("ssim_lambda", "nan", "not nan"),
])
def test_number_refuses_out_of_range(name, text, why):
    with pytest.raises(argparse.ArgumentTypeError, match=why.replace("(", r"\(").replace(")", r"\)")):
        number(TrainConfig, name)(text)


def test_ports_paths_and_positive_values():
    assert port_number("0") == 0 and port_number("65535") == 65535
    for bad in ("65536", "-1", "http"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_number(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        input_path("  ")
    assert str(input_path("photos")) == "photos"
    assert positive_int("3") == 3 and positive_number("0.5") == 0.5
    for bad in ("0", "-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    for bad in ("0", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_number(bad)


def _actions(command: str) -> dict[str, argparse.Action]:
    from splatkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_train_sfm_and_export_flags_are_built_from_their_config_fields():
    """One builder for every command: the flag's help is its field's (plus the command line's
    note), its choices and range are the field's, and it is None unless typed."""
    import dataclasses

    from splatkit.cli import FIELD_OF, SECTIONS, SFM_FLAGS, TRAIN_FLAGS
    from splatkit.export.unreal import UnrealExportOptions

    def field(cls, name):
        return next(f for f in dataclasses.fields(cls) if f.name == name)

    train, sfm, export = _actions("train"), _actions("sfm"), _actions("export")
    for name, (section, note) in TRAIN_FLAGS.items():
        f = field(SECTIONS[section], FIELD_OF.get(name, name))
        for acts in (train, sfm) if name in SFM_FLAGS else (train,):
            a = acts[name]
            assert a.help.replace("%%", "%") == f.metadata["help"] + note and a.default is None, name
            assert tuple(a.choices or ()) == tuple(f.metadata.get("choices", ())), name
    for f in dataclasses.fields(UnrealExportOptions):
        a = export[f"unreal_{f.name}"]
        assert a.help.replace("%%", "%") == f.metadata["help"] and a.default is None, f.name
    assert train["sh_degree"].type("3") == 3 and export["unreal_sh_degree"].type("3") == 3


def test_every_train_flag_sets_its_setting():
    from splatkit.cli import TRAIN_OPTIONS, build_parser, config_from_args

    args = build_parser().parse_args(["train", "photos", "--preset", "quick", "--steps", "123",
                                      "--strategy", "mcmc", "--packed", "--video-fps", "4.5",
                                      "--mapper", "global"])
    cfg, explicit = config_from_args(args)
    assert (cfg.train.steps, cfg.train.strategy, cfg.train.packed) == (123, "mcmc", True)
    assert (cfg.ingest.video_fps, cfg.sfm.mapper) == (4.5, "global")
    assert {"train.steps", "train.strategy", "train.packed", "ingest.video_fps", "sfm.mapper"} <= explicit
    assert set(TRAIN_OPTIONS.values()) >= explicit - {"preset", "device"}
