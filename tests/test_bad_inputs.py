"""Bad inputs through the real command line: a plain message, the right exit code, photos untouched.

Every case runs ``splatkit sfm`` (``splatkit.cli.main``, or ``python -m splatkit`` where a signal
is sent) on small copies (300 px) of the shared photo sets, and checks that the photos folder is
byte-for-byte and mtime-for-mtime unchanged and that no traceback is shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from input_util import error_lines
from PIL import Image

from splatkit.cli import main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOUNTAIN = DATA / "strecha_fountain_p11" / "images"
CASTLE = DATA / "strecha_castle_p19" / "images"
SIZE = 300

needs_data = pytest.mark.skipif(
    not (FOUNTAIN.is_dir() and CASTLE.is_dir()), reason="shared datasets not found"
)


def _small(src: Path, dst: Path, names: list[str] | None = None, k: int | None = None) -> list[Path]:
    files = sorted(src.glob("*.jpg")) or sorted(src.glob("*.png"))
    files = files[:k] if k else files
    out = []
    dst.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im.draft("RGB", (SIZE * 2, SIZE * 2))
            im = im.convert("RGB")
            im.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
            p = dst / (names[i] if names else f.name)
            im.save(p, "JPEG", quality=92)
            out.append(p)
    return out


@pytest.fixture(scope="module")
def fountain(tmp_path_factory) -> Path:
    if not FOUNTAIN.is_dir():
        pytest.skip("no strecha_fountain_p11")
    d = tmp_path_factory.mktemp("fountain300")
    _small(FOUNTAIN, d)
    return d


def _hashes(folder: Path) -> dict:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run(capsys, photos: Path, out: Path, *extra: str) -> tuple[int, str]:
    before = _hashes(photos) if photos.is_dir() else None
    rc = main(["sfm", str(photos), "-o", str(out), *extra])
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "Traceback" not in text
    if before is not None:
        assert _hashes(photos) == before, "the photos folder was changed"
    return rc, text


def _copy_photos(fountain: Path, dst: Path, k: int) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted(fountain.iterdir())[:k]:
        (dst / f.name).write_bytes(f.read_bytes())
        out.append(dst / f.name)
    return out


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    rc, text = _run(capsys, tmp_path / "photos", tmp_path / "out")
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2 and "No usable photos" in err[0] and "at least 3" in err[1]


def test_only_non_images(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    (d / "scan.pdf").write_bytes(b"%PDF-1.4\n")
    (d / "IMG_0001.HEIC").write_bytes(b"\0" * 64)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2 and "No usable photos" in err[0] and "3 file(s) skipped" in err[0]
    assert "not really a HEIC file" in text  # each skipped file is named with its reason


@needs_data
def test_truncated_jpeg_is_skipped_and_named(tmp_path, capsys, fountain):
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 6)
    data = (fountain / "0007.jpg").read_bytes()
    (d / "broken.jpg").write_bytes(data[: len(data) // 3])
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 0, text
    assert "Skipped broken.jpg" in text and "truncated" in text
    assert "Placed 6 of 6 photos" in text


@needs_data
@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_photos(tmp_path, capsys, fountain, n):
    d = tmp_path / "photos"
    _copy_photos(fountain, d, n)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2 and f"Only {n} usable photo" in err[0] and "at least 3" in err[1]


@needs_data
def test_exact_duplicates(tmp_path, capsys, fountain):
    d = tmp_path / "photos"
    d.mkdir()
    one = (fountain / "0003.jpg").read_bytes()
    for k in range(4):
        (d / f"copy{k}.jpg").write_bytes(one)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    assert "Skipped copy1.jpg: an exact copy of copy0.jpg" in text
    err = error_lines(text)
    assert len(err) == 2 and "Only 1 usable photo" in err[0] and "3 file(s) skipped" in err[0]


@needs_data
def test_two_unrelated_scenes(tmp_path, capsys, fountain):
    """Fountain (7) + castle (4): the fountain is kept, each castle photo is named as left out."""
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 7)
    castle = _small(CASTLE, d, names=[f"castle_{k}.jpg" for k in range(4)], k=4)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 0, text
    assert "Placed 7 of 11 photos" in text
    for p in castle:
        assert f"Could not place {p.name}: it forms a separate group" in text
    rec = json.loads((tmp_path / "out" / "sfm_work" / "inputs.json").read_text())
    assert sorted(rec["unregistered"]) == [p.name for p in castle]


@needs_data
def test_mostly_another_scene_fails_plainly(tmp_path, capsys, fountain):
    """3 fountain + 3 castle photos: nothing holds half the photos: a plain two-line error."""
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 3)
    _small(CASTLE, d, names=[f"castle_{k}.jpg" for k in range(3)], k=3)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2, err
    assert "fell apart into 2 groups" in err[0] and "one place or object per folder" in err[1]


def test_all_black_images(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):  # black with a little sensor noise, so that the files differ
        a = rng.integers(0, 3, (200, 300, 3), dtype=np.uint8)
        Image.fromarray(a).save(d / f"dark{k}.jpg", quality=90)
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    assert "Skipped dark0.jpg: all black" in text
    err = error_lines(text)
    assert len(err) == 2 and "No usable photos" in err[0]


@needs_data
def test_fifty_megapixel_photo(tmp_path, capsys, fountain):
    """An 8660 x 5773 JPEG (a smooth gradient) among real photos: read at reduced size, no crash."""
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 5)
    w, h = 8660, 5773
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    g = np.empty((h, w, 3), np.uint8)
    g[..., 0] = (0.5 * x + 0.5 * y).astype(np.uint8)
    g[..., 1] = x.astype(np.uint8)
    g[..., 2] = y.astype(np.uint8)
    Image.fromarray(g).save(d / "huge.jpg", quality=90)
    del g
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 0, text
    with Image.open(tmp_path / "out" / "work" / "images" / "huge.jpg") as im:
        assert max(im.size) <= 1600
    assert "Could not place huge.jpg:" in text  # a featureless gradient: named with a reason
    assert "Placed 5 of 6 photos" in text


@needs_data
def test_spaces_and_non_ascii_path(tmp_path, capsys, fountain):
    d = tmp_path / "mes photos d'été" / "Château 2024"
    d.mkdir(parents=True)
    for k, f in enumerate(sorted(fountain.iterdir())[:5]):
        (d / f"façade {k}.jpg").write_bytes(f.read_bytes())
    out = tmp_path / "sortie ü"
    rc, text = _run(capsys, d, out)
    assert rc == 0, text
    assert "Placed 5 of 5 photos" in text
    assert (out / "sparse" / "0" / "cameras.bin").exists()


@needs_data
def test_unwritable_output_folder(tmp_path, capsys, fountain):
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 3)
    (tmp_path / "out").write_text("a file where the output folder should be")
    rc, text = _run(capsys, d, tmp_path / "out")
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2 and "Cannot write to the output folder" in err[0] and "-o" in err[1]


@needs_data
def test_output_inside_photos(tmp_path, capsys, fountain):
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 3)
    rc, text = _run(capsys, d, d / "out")
    assert rc == 2 and "inside the photos folder" in text
    assert not (d / "out").exists()


@needs_data
def test_ctrl_c_during_matching_then_resume(tmp_path, fountain):
    """SIGINT as soon as matching starts: exit 130, features kept; the re-run reuses them."""
    d = tmp_path / "photos"
    _copy_photos(fountain, d, 11)
    before = _hashes(d)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splatkit", "sfm", str(d), "-o", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = out / "events.jsonl"
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        if events.exists() and '"matching' in events.read_text(encoding="utf-8"):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    so, se = proc.communicate(timeout=120)
    assert proc.returncode == 130, so + se
    assert "Traceback" not in so + se
    assert f"To continue:\n  splatkit sfm {d} -o {out}\n" in se  # the same command again
    assert not (out / "sfm_work" / "inputs.json").exists()  # SfM did not finish
    # run it again: the features (and any matches) of the first run are reused
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Continuing from the earlier run: features of 11 photos" in r.stdout + r.stderr
    assert "Placed 11 of 11 photos" in r.stdout + r.stderr
    rec = json.loads((out / "sfm_work" / "inputs.json").read_text())
    assert rec["seconds"]["extract"] < 2.0, rec["seconds"]
    assert _hashes(d) == before
