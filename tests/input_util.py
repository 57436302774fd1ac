"""Helpers of the bad-input tests: run the real CLI and check that the user's files are untouched.

``snapshot`` records every entry under a folder without following links: a file's sha256 and
mtime, a folder's mtime (it changes when something is created or deleted in it), a link's target.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from PIL import Image

from splatkit.cli import main

FOX = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "fox"


def fox_subset(d: Path, k: int = 8, scale: float = 0.25) -> Path:
    """``d/transforms.json`` + ``d/images``: the first ``k`` fox frames at ``scale``, intrinsics
    scaled alike."""
    meta = json.loads((FOX / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:k]
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        meta[key] = meta[key] * scale
    (d / "images").mkdir(parents=True)
    for fr in meta["frames"]:
        with Image.open(FOX / fr["file_path"]) as im:
            size = (round(im.width * scale), round(im.height * scale))
            im.draft("RGB", (2 * size[0], 2 * size[1]))
            im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(d / fr["file_path"], quality=92)
    (d / "transforms.json").write_text(json.dumps(meta))
    return d


def snapshot(folder: Path) -> dict:
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[p] = ("dir", st.st_mtime_ns)
            elif os.path.isfile(p) and os.access(p, os.R_OK) and st.st_mode & 0o444:
                with open(p, "rb") as f:
                    out[p] = (hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns)
            else:
                out[p] = ("other", st.st_mode, st.st_mtime_ns)
    out[str(folder)] = ("top", os.lstat(folder).st_mtime_ns)
    return out


def run_cli(capsys, args: list[str], watched: Path) -> tuple[int, str]:
    """``splatkit ARGS`` in-process; asserts no traceback and ``watched`` unchanged."""
    before = snapshot(watched)
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "Traceback" not in text and "internal error" not in text, text
    assert snapshot(watched) == before, "the input was changed"
    return rc, text


def error_lines(text: str) -> list[str]:
    """The error message: the line starting ``splatkit: error:`` and what follows."""
    lines = text.strip().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("splatkit: error:"))
    return lines[i:]


def outputs_left(out: Path) -> set[str]:
    """What a refused run left in its output folder besides its logs."""
    logs = {"log.txt", "events.jsonl", "config.json"}
    return {p.name for p in out.iterdir() if p.name not in logs and not p.name.startswith(".")} \
        if out.is_dir() else set()


def cut_in_line(data: bytes, fraction: float, keep_fields: int = 3) -> bytes:
    """A text file cut short inside a data line: the first data line from ``fraction`` of the
    file on keeps its first ``keep_fields`` fields (so the cut is always a damaged line, never a
    shorter file that happens to be sound)."""
    lines = data.split(b"\n")
    at, pos = None, 0
    for i, line in enumerate(lines):
        if pos >= fraction * len(data) and line.strip() and not line.startswith(b"#"):
            at = i
            break
        pos += len(line) + 1
    assert at is not None, "no data line after that point"
    head = b"\n".join(lines[:at])
    return (head + b"\n" if head else b"") + b" ".join(lines[at].split()[:keep_fields])
