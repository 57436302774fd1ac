"""Camera RAW photos: a DNG written here (tifffile), developed by rawpy with the camera's white
balance, upright, with its focal length; RAW + JPEG twins of one shot give one photo.

The DNG: a 300x200 RGGB Bayer mosaic, 12 bits, whose scene is a red left half and a neutral grey
right half, stored as the sensor saw it through a white balance of (2, 1, 1.5) (``AsShotNeutral``
= 1/that); its ``ColorMatrix1`` is the XYZ -> linear sRGB matrix, so that the camera's colours
are sRGB's. Developed with the camera's white balance the grey comes out grey (with LibRaw's
daylight default it would be tinted), at its sRGB value. Orientation 6 (turn clockwise), focal
length 50 mm and 35 mm equivalent 75 mm in IFD0 (TIFF-EP), make and model. No GPS: tifffile
writes no GPS IFD (GPS is read by the same code as a JPEG's once in Pillow's form, see
``read_exif``).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from splatkit.config import IngestConfig
from splatkit.events import EventBus, Message
from splatkit.ingest import ingest
from splatkit.ingest.raw import open_raw, pick_twins
from splatkit.ingest.raw import write_dng as dng
from splatkit.ingest.scan import scan

rawpy = pytest.importorskip("rawpy")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("exifread")

WB = np.array([2.0, 1.0, 1.5])
RED, GREY = np.array([0.5, 0.08, 0.08]), np.array([0.25, 0.25, 0.25])


def write_dng(path, stamp: int = 0, size=(300, 200), orientation: int = 6) -> None:
    """The test's DNG (see the module doc)."""
    w, h = size
    scene = np.zeros((h, w, 3))
    scene[:, : w // 2], scene[:, w // 2 :] = RED, GREY
    scene[:6, -6:] = 0.05 * (stamp % 10)  # no two fixtures are exact copies
    scene[-8:, -8:] = 0.85  # a highlight: LibRaw's default would take it as white and brighten all
    path.parent.mkdir(parents=True, exist_ok=True)
    dng(path, scene, tuple(WB), orientation, focal_mm=50, focal_35mm=75)


def _srgb(linear: float) -> float:
    return 255 * (12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("max_size", [120, 300])  # half-size development, and full
def test_dng_developed_upright_with_camera_white_balance(tmp_path, max_size):
    src = tmp_path / "src"
    for k in range(3):
        write_dng(src / f"IMG_{k}.DNG", stamp=k)
    cfg = IngestConfig(max_image_size=max_size, min_image_size=32)
    ps = ingest(src, tmp_path / "work", cfg)
    assert ps.names == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"] and not ps.skipped
    p = ps.photos[0]
    assert (p.orig_width, p.orig_height) == (200, 300)  # stored landscape, turned to portrait
    assert (p.width, p.height) == (round(200 * max_size / 300), max_size)
    assert p.make == "TestMake" and p.model == "TestModel"
    assert p.focal_mm == 50 and p.focal_35mm == 75
    with Image.open(p.path) as im:
        assert im.size == (p.width, p.height) and im.getexif().get(0x0112, 1) == 1
        assert im.getexif().get_ifd(0x8769)[0xA405] == 75  # EXIF kept in the working copy
        a = np.asarray(im.convert("RGB"), np.float64)
    top, bottom = a[: p.height // 3].mean((0, 1)), a[-p.height // 3 :].mean((0, 1))
    # turned clockwise: the stored left (red) half is on top, the grey below
    assert top[0] > top[1] + 80 and top[0] > top[2] + 80, top
    assert np.ptp(bottom) < 8, bottom  # grey stays grey: the camera's white balance was used
    assert abs(bottom.mean() - _srgb(0.25)) < 4, bottom  # the exposure as shot, sRGB curve


def test_open_raw_reads_size_and_exif(tmp_path):
    write_dng(tmp_path / "a.dng", orientation=1)
    info = open_raw(tmp_path / "a.dng")
    assert (info.width, info.height) == (300, 200)
    assert info.exif[0x010F] == "TestMake"
    assert info.exif.get_ifd(0x8769)[0x920A] == 50


def test_not_a_raw_is_skipped_with_reason(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        write_dng(src / f"ok{k}.dng", stamp=k)
    (src / "fake.cr2").write_bytes(b"\0" * 500)
    ps = ingest(src, tmp_path / "work", IngestConfig(max_image_size=150, min_image_size=32))
    assert len(ps) == 3
    reason = {s.path.name: s.reason for s in ps.skipped}["fake.cr2"]
    assert "RAW" in reason and ("damaged" in reason or "export" in reason), reason


def _jpeg(path, stamp):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (200, 300), (200, 30, 30))
    im.paste((stamp * 50 % 256, 90, 90), (0, 0, 10, 10))
    im.save(path, quality=92)


def test_raw_and_jpeg_twins_give_one_photo_and_say_which(tmp_path):
    """Every RAW has its JPEG: the JPEGs are used (the camera's development)."""
    src = tmp_path / "src"
    for k in range(3):
        write_dng(src / f"IMG_{k}.DNG", stamp=k)
        _jpeg(src / f"IMG_{k}.JPG", k)
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    ps = ingest(src, tmp_path / "work", IngestConfig(max_image_size=150, min_image_size=32), bus)
    assert [p.source.name for p in ps] == ["IMG_0.JPG", "IMG_1.JPG", "IMG_2.JPG"]
    twins = sorted(s.path.name for s in ps.skipped if s.kind == "twin")
    assert twins == ["IMG_0.DNG", "IMG_1.DNG", "IMG_2.DNG"]
    said = [e.text for e in seen if isinstance(e, Message) and "both RAW and JPEG" in e.text]
    assert len(said) == 1 and "3 shot(s)" in said[0] and "the JPEG of each" in said[0]


def test_raw_without_jpeg_makes_every_pair_use_its_raw(tmp_path):
    """Some RAW files alone: the RAW of every pair too, so that all photos are developed alike."""
    src = tmp_path / "src"
    for k in range(4):
        write_dng(src / f"IMG_{k}.dng", stamp=k)
    _jpeg(src / "IMG_0.jpg", 0)
    _jpeg(src / "IMG_1.jpeg", 1)
    _jpeg(src / "other" / "IMG_2.jpg", 2)  # another folder: not a twin
    found, _ = scan(src)
    kept, skipped, line = pick_twins(found)
    assert sorted(c.rel for c in kept) == ["IMG_0.dng", "IMG_1.dng", "IMG_2.dng", "IMG_3.dng",
                                          "other/IMG_2.jpg"]
    assert sorted(s.path.name for s in skipped) == ["IMG_0.jpg", "IMG_1.jpeg"]
    assert "the RAW of each is developed" in line and "2 RAW file(s) without a JPEG" in line
    assert pick_twins([c for c in found if c.rel.endswith(".dng")])[2] is None  # no pairs: silent
