"""Issue 12, class 8 (two items): messages that must not send the user the wrong way.

* Panoramas and strips (8000 x 400) used to become 200 x 10 working copies and fail in SfM with
  no word of the cause: each is now named as a panorama, and when nothing else is left the error
  says what to do instead.
* ``splatkit train ""`` (an unset shell variable) used to mean the current folder: it is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from input_util import error_lines, run_cli, snapshot
from PIL import Image

from splatkit.cli import main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOUNTAIN = DATA / "strecha_fountain_p11" / "images"
pytestmark = pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no strecha_fountain_p11")


def _photos(d: Path, k: int, size: int = 200) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in sorted(FOUNTAIN.glob("*.jpg"))[:k]:
        with Image.open(f) as im:
            im.draft("RGB", (2 * size, 2 * size))
            im = im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            im.save(d / f.name, quality=92)


def _panorama(path: Path, size: tuple[int, int], k: int) -> None:
    """A wide (or tall) strip cut from a fountain photo and stretched to ``size``."""
    src = sorted(FOUNTAIN.glob("*.jpg"))[k]
    with Image.open(src) as im:
        im.draft("RGB", (768, 512))
        im = im.convert("RGB")
        band = im.crop((0, im.height // 3, im.width, im.height // 3 + im.height // 10))
        band.resize(size, Image.Resampling.BILINEAR).save(path, quality=90)


def test_only_panoramas_say_so_and_what_to_do(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    for k in range(3):
        _panorama(d / f"pano{k}.jpg", (8000, 400), k)
    _panorama(d / "tall.jpg", (300, 2400), 3)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["train", d, "-o", out], watched=d)
    assert rc == 2
    assert "Skipped pano0.jpg: a panorama or strip (8000x400 pixels, 20:1): structure from motion needs " \
           "ordinary photos." in text
    assert "Skipped tall.jpg: a panorama or strip (300x2400 pixels, 8:1)" in text
    assert error_lines(text) == [
        f"splatkit: error: No usable photos found in {d} (4 file(s) skipped, 4 of them panoramas or strips).",
        "A panorama cannot be used for structure from motion: take ordinary photos instead (panorama mode "
        "off), 30-200 of them from different viewpoints, overlapping by about two thirds.",
    ]
    assert not list((out / "work" / "images").glob("*.jpg"))  # no 200x10 working copies


def test_a_panorama_among_photos_is_named_the_rest_used(tmp_path, capsys):
    d = tmp_path / "photos"
    _photos(d, 5)
    _panorama(d / "pano.jpg", (8000, 400), 6)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", d, "-o", out, "--preset", "quick"], watched=d)
    assert rc == 0, text
    assert "Skipped pano.jpg: a panorama or strip (8000x400 pixels, 20:1)" in text
    assert "Using 5 photos, 1 file(s) skipped." in text


@pytest.mark.parametrize("arg", ["", "   "])
def test_empty_photos_argument_is_not_the_current_folder(tmp_path, capsys, monkeypatch, arg):
    """Run from inside a folder of photos: an empty argument must not train on it (the message
    itself: tests/test_bad_options.py)."""
    d = tmp_path / "photos"
    _photos(d, 3, size=100)
    monkeypatch.chdir(d)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["train", arg])
    assert e.value.code == 2
    text = "".join(capsys.readouterr())
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("splatkit train: error: argument photos: is empty: give the folder")
    assert snapshot(tmp_path) == before  # no photos-splatkit folder beside it, nothing written
    shutil.rmtree(d)
