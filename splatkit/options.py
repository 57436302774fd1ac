"""argparse types that check a value where it is typed: numbers in a setting's range (from the
config field's metadata), ports, the input path. A bad value is a usage error that names the range
(two lines, exit code 2), for every command and front end that parses options.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from .config import check_value, field_range


def number(section: type, name: str):
    """An argparse type for a config field: a number in the field's range (``1e5`` is accepted
    for whole numbers); out of range is a usage error naming the range."""
    f = next(f for f in dataclasses.fields(section) if f.name == name)
    is_int = f.type is int or str(f.type).split(" ")[0] == "int"  # "int" or "int | None"
    rng = field_range(f)

    def parse(text: str):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if is_int:
            if not v.is_integer():
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
            v = int(v)
        why = check_value("it", v, rng, shown=text) if rng else None
        if why:
            raise argparse.ArgumentTypeError(why.replace("it must", "must", 1))
        return v

    parse.__name__ = "int" if is_int else "number"
    return parse


def add_config_option(p: argparse.ArgumentParser, section: type, name: str, *, note: str = "",
                      dest: str | None = None, metavar: str | None = None, flag: str | None = None) -> None:
    """One ``--flag`` for the config field ``section.name``, built from the field: its help text
    (plus ``note``, what the command line adds), its choices, its range (numbers are checked
    where typed, :func:`number`), a switch for a bool. The default is None: "not given", so a
    preset or a resumed run's own value stays unless the flag is typed. ``flag``: the flag's name
    when it is not the field's."""
    f = next(f for f in dataclasses.fields(section) if f.name == name)
    text = (f.metadata["help"] + note).replace("%", "%%")  # argparse formats help texts with %
    kw: dict = {"help": text, "default": None, "dest": dest or name}
    if f.type in (bool, "bool"):
        kw.update(action="store_const", const=True)
    else:
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        kw["type"] = number(section, name) if field_range(f) else str
        if "choices" not in f.metadata:
            kw["metavar"] = metavar or name.upper()
    p.add_argument("--" + (flag or name).replace("_", "-"), **kw)


def input_path(text: str) -> Path:
    """An argparse type for the input: an empty argument (``""``) is refused, not read as ``.``."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "is empty: give the folder that holds your photos, e.g. splatkit train photos/")
    return Path(text)


def output_path(text: str) -> Path:
    """An argparse type for ``-o``: an empty argument is refused, not read as the current folder;
    a name longer than the file system allows is refused here, before anything is made."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a new folder for the results, e.g. -o scene-out")
    path = Path(os.path.expanduser(text))
    limit = _name_max(path)
    long = next((p for p in path.parts if len(os.fsencode(p)) > limit), None)
    if long is not None:
        raise argparse.ArgumentTypeError(
            f"has a name of {len(os.fsencode(long))} bytes ({long[:24]}...); this file system allows "
            f"at most {limit}: choose a shorter name")
    return path


def _name_max(path: Path) -> int:
    """The longest file name the file system of ``path`` (its nearest existing folder) allows."""
    p = path.absolute()
    while p != p.parent:
        try:
            if p.exists():
                break
        except OSError:  # itself too long
            pass
        p = p.parent
    try:
        return int(os.pathconf(p, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def port_number(text: str) -> int:
    """An argparse type for a TCP port (0: any free port)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {v}")
    return v


def positive_int(text: str) -> int:
    """An argparse type for a whole number of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def positive_number(text: str) -> float:
    """An argparse type for a finite number above 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return v
