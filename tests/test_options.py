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
