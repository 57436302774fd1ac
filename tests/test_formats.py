"""Photo formats: HEIC/HEIF (pillow-heif) and AVIF (Pillow) read like JPEG, alone and mixed with
JPEG; formats that are not read are named, and a folder of only those ends naming the format.

The HEIC and AVIF fixtures are written here: a landscape picture whose left half is red, stored
with an EXIF orientation of 6 (turn 90 degrees clockwise to view), a focal length with its 35 mm
equivalent, and GPS. pillow-heif writes the orientation as the HEIF ``irot`` transform, Pillow's
AVIF plugin likewise; both must arrive upright, once (not turned twice).
"""

from __future__ import annotations

import hashlib

import pytest
from input_util import error_lines
from PIL import Image, features

from splatkit.cli import main
from splatkit.config import IngestConfig
from splatkit.errors import UserError
from splatkit.events import EventBus, Message
from splatkit.ingest import ingest
from splatkit.ingest.formats import format_name, heif_problem, not_read_reason

CFG = IngestConfig(max_image_size=200, min_image_size=64)
GPS = {1: "N", 2: (48.0, 51.0, 29.5), 3: "W", 4: (2.0, 17.0, 40.2), 5: 0, 6: 35.5}
needs_heif = pytest.mark.skipif(heif_problem() is not None, reason="pillow-heif missing")
needs_avif = pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")


def _exif(orientation: int | None, stamp: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", f"iPhone {stamp}"
    if orientation:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x920A], sub[0xA405] = 5.7, 26
    gps = exif.get_ifd(0x8825)
    gps.update(GPS)
    return exif


def _picture(stamp: int, size=(300, 200)) -> Image.Image:
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    im.paste((stamp * 40 % 256, 128, 40), (0, 0, 8, 8))  # no two fixtures are exact copies
    return im


def _write(path, fmt: str, orientation: int | None = 6, stamp: int = 1):
    path.parent.mkdir(parents=True, exist_ok=True)
    _picture(stamp).save(path, fmt, quality=90, exif=_exif(orientation, stamp).tobytes())
    return path


def _check_upright_and_exif(p) -> None:
    assert (p.orig_width, p.orig_height) == (200, 300)  # stored landscape, shown portrait
    with Image.open(p.path) as im:
        assert im.format == "JPEG" and im.size == (p.width, p.height) and im.height > im.width
        exif = im.getexif()
        assert exif.get(0x0112, 1) == 1  # the pixels are upright: viewers must not turn them again
        assert exif.get_ifd(0x8769)[0xA405] == 26  # the working copy keeps the EXIF for SfM
        rgb = im.convert("RGB")
        top = rgb.getpixel((im.width // 2, im.height // 6))
        bottom = rgb.getpixel((im.width // 2, im.height * 5 // 6))
    assert top[0] > 190 and top[2] < 70, top  # turned clockwise: the stored left (red) half on top
    assert bottom[2] > 190 and bottom[0] < 70, bottom
    assert p.make == "Apple" and p.focal_mm == pytest.approx(5.7) and p.focal_35mm == 26
    lat, lon, alt = p.gps
    assert lat == pytest.approx(48 + 51 / 60 + 29.5 / 3600, abs=1e-6)
    assert lon == pytest.approx(-(2 + 17 / 60 + 40.2 / 3600), abs=1e-6)  # west: negative
    assert alt == pytest.approx(35.5)


@needs_heif
@pytest.mark.parametrize("ext", [".heic", ".HEIF"])
def test_heic_reads_like_jpeg(tmp_path, ext):
    src = tmp_path / "src"
    for k in range(3):
        _write(src / f"IMG_{k}{ext}", "HEIF", stamp=k)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    ps = ingest(src, tmp_path / "work", CFG)
    assert ps.names == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"] and not ps.skipped
    for p in ps:
        _check_upright_and_exif(p)
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}


@needs_avif
def test_avif_reads_like_jpeg(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        _write(src / f"shot{k}.avif", "AVIF", stamp=k)
    ps = ingest(src, tmp_path / "work", CFG)
    assert len(ps) == 3 and not ps.skipped
    for p in ps:
        _check_upright_and_exif(p)


@needs_heif
def test_heic_mixed_with_jpeg_and_png(tmp_path):
    """One folder, three formats: all used, each upright, the JPEG and the HEIC alike."""
    src = tmp_path / "src"
    _write(src / "a.heic", "HEIF", stamp=1)
    _write(src / "b.jpg", "JPEG", stamp=2)
    _picture(3).save(src / "c.png")
    ps = ingest(src, tmp_path / "work", CFG)
    assert ps.names == ["a.jpg", "b.jpg", "c.png"]
    _check_upright_and_exif(ps.photos[0])
    _check_upright_and_exif(ps.photos[1])
    assert (ps.photos[2].width, ps.photos[2].height) == (200, 133) and ps.photos[2].focal_35mm is None


@needs_heif
def test_heic_named_jpg_is_read(tmp_path):
    """Some apps save HEIC with a .jpg name: read by what it is, not by its name."""
    src = tmp_path / "src"
    for k in range(3):
        _write(src / f"IMG_{k}.JPG", "HEIF", stamp=k)
    ps = ingest(src, tmp_path / "work", CFG)
    assert len(ps) == 3 and not ps.skipped
    _check_upright_and_exif(ps.photos[0])


@needs_heif
def test_damaged_heic_is_skipped_by_name(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        _write(src / f"ok{k}.heic", "HEIF", stamp=k)
    data = (src / "ok0.heic").read_bytes()
    (src / "cut.heic").write_bytes(data[: len(data) // 2])
    (src / "fake.heic").write_bytes(b"\0" * 200)
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    ps = ingest(src, tmp_path / "work", CFG, bus)
    assert len(ps) == 3
    reasons = {s.path.name: s.reason for s in ps.skipped}
    assert "not really a HEIC file" in reasons["fake.heic"]
    assert "cut.heic" in reasons and ("damaged" in reasons["cut.heic"] or "not really" in reasons["cut.heic"])
    assert any(isinstance(e, Message) and "cut.heic" in e.text for e in seen)


def test_formats_not_read_are_named():
    assert format_name("a.HEIC") == "HEIC" and format_name("x.cr3") == "camera RAW"
    assert not_read_reason("scan.tiff") == "TIFF is not read by splatkit: export the photos as JPEG (or PNG)"
    assert not_read_reason("a.webp").startswith("WebP is not read")
    assert not_read_reason("notes.txt").startswith("not a photo: splatkit reads JPEG, PNG, HEIC, AVIF")


@pytest.mark.parametrize("ext,name", [(".tif", "TIFF"), (".webp", "WebP"), (".jxl", "JPEG XL")])
def test_folder_of_only_an_unread_format_ends_naming_it(tmp_path, capsys, ext, name):
    """Not advice about overlap: the format, and what to do about it (two lines, exit code 2)."""
    d = tmp_path / "photos"
    d.mkdir()
    for k in range(4):
        (d / f"IMG_{k}{ext}").write_bytes(b"\0" * 64)
    (d / "notes.txt").write_text("x")
    rc = main(["train", str(d), "-o", str(tmp_path / "out"), "--preset", "quick"])
    text = capsys.readouterr()
    err = error_lines(text.out + text.err)
    assert rc == 2 and len(err) == 2, err
    assert "No usable photos" in err[0] and "4 of them in a format not read" in err[0]
    assert f"export the {name} photos as JPEG" in err[1] and "overlap" not in err[1]


def test_too_few_after_damaged_files_says_so(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _picture(1).save(src / "a.jpg")
    for k in range(3):
        (src / f"b{k}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError) as e:
        ingest(src, tmp_path / "work", CFG)
    assert "3 of them damaged or too small" in e.value.what and "copy damaged ones again" in e.value.todo
