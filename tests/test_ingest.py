"""Ingest: orientation, skipping with reasons, originals untouched, errors, odd paths, caching."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splatkit.config import IngestConfig
from splatkit.errors import UserError
from splatkit.events import EventBus, Message
from splatkit.ingest import PhotoSet, ingest, safe_name

CFG = IngestConfig(max_image_size=200, min_image_size=64)


def _photo(path: Path, size=(300, 200), orientation: int | None = None, focal35=None, fmt=None):
    """A small photo whose left half is red and right half blue (so orientation is visible)."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    # a corner stamp that depends on the name, so that no two test photos are exact duplicates
    stamp = int(hashlib.sha256(os.fsencode(path.name)).hexdigest()[:6], 16)
    im.paste((stamp & 255, (stamp >> 8) & 255, stamp >> 16), (0, 0, 6, 6))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if focal35 is not None:
        exif[0x010F], exif[0x0110] = "TestMake", "TestModel"
        sub = exif.get_ifd(0x8769)
        sub[0x920A], sub[0xA405] = 4.2, focal35
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"exif": exif.tobytes()} if len(exif) else {}
    im.save(path, fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG"), quality=95, **kw)
    return path


def _hashes(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _events(bus: EventBus) -> list:
    seen: list = []
    bus.subscribe(seen.append)
    return seen


def test_exif_orientation_applied(tmp_path):
    src = tmp_path / "src"
    # stored landscape 300x200 with orientation 6 (rotate 90 deg clockwise to view): portrait
    _photo(src / "a.jpg", orientation=6)
    _photo(src / "b.jpg")
    _photo(src / "c.jpg")
    ps = ingest(src, tmp_path / "work", CFG)
    a = next(p for p in ps if p.name == "a.jpg")
    assert (a.orig_width, a.orig_height) == (200, 300)
    with Image.open(a.path) as im:
        assert im.size == (a.width, a.height)
        assert im.height > im.width  # upright portrait
        assert im.getexif().get(0x0112, 1) == 1  # orientation not applied twice by viewers
        rgb = im.convert("RGB")
        # rotating clockwise puts the stored left (red) half at the top
        top = rgb.getpixel((im.width // 2, im.height // 6))
        bottom = rgb.getpixel((im.width // 2, im.height * 5 // 6))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    b = next(p for p in ps if p.name == "b.jpg")
    assert (b.width, b.height) == (200, 133)  # downscaled to max_image_size, aspect kept


def test_skips_with_reasons_and_keeps_originals(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        _photo(src / f"good{k}.jpg")
    (src / "notes.txt").write_text("not a photo")
    (src / "fake.jpg").write_bytes(b"this is not a jpeg at all")
    good = _photo(tmp_path / "full.jpg", size=(600, 400))
    data = good.read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    _photo(src / "tiny.png", size=(40, 30))
    (src / "IMG_1.HEIC").write_bytes(b"\0" * 100)
    _photo(src / ".hidden" / "h.jpg")  # hidden folders are not searched
    _photo(src / ".dotfile.jpg")
    before = _hashes(src)
    bus = EventBus()
    seen = _events(bus)
    ps = ingest(src, tmp_path / "work", CFG, bus)
    assert _hashes(src) == before  # originals untouched (content and mtime)
    assert ps.names == ["good0.jpg", "good1.jpg", "good2.jpg"]
    reasons = {r.path.name: r.reason for r in ps.skipped}
    assert set(reasons) == {"notes.txt", "fake.jpg", "truncated.jpg", "tiny.png", "IMG_1.HEIC"}
    assert "not a photo: splatkit reads JPEG, PNG, HEIC" in reasons["notes.txt"]
    assert "not a readable image" in reasons["fake.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "too small" in reasons["tiny.png"] and "40x30" in reasons["tiny.png"]
    assert "not a readable image (damaged, or not really a HEIC file)" in reasons["IMG_1.HEIC"]
    warned = [e.text for e in seen if isinstance(e, Message) and e.level == "warning"]
    assert any("truncated.jpg" in t for t in warned)
    # working copies live in work_dir only
    assert all(p.path.parent == tmp_path / "work" for p in ps)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_photos_is_a_user_error(tmp_path, n):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(n):
        _photo(src / f"p{k}.jpg")
    (src / "readme.txt").write_text("x")
    with pytest.raises(UserError) as err:
        ingest(src, tmp_path / "work", CFG)
    msg = str(err.value)
    assert ("No usable photos" if n == 0 else f"Only {n} usable photo") in msg
    assert "at least 3" in err.value.todo


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ingest(tmp_path / "nope", tmp_path / "work", CFG)


def test_spaces_and_non_ascii_paths(tmp_path):
    src = tmp_path / "mes photos d'été" / "Château 2024"
    _photo(src / "façade 1.JPG")
    _photo(src / "façade 2.jpeg")
    _photo(src / "sub dir" / "Ünïcode ß.PNG")
    _photo(src / "Ǆ.jpg")  # nothing ASCII survives of some names: still unique and safe
    work = tmp_path / "work dir ü"
    ps = ingest(src, work, CFG)
    assert ps.names == sorted(ps.names)
    assert ps.names == ["DZ.jpg", "facade_1.jpg", "facade_2.jpg", "sub_dir__Unicode.png"]
    for p in ps:
        assert p.name.isascii() and " " not in p.name
        assert p.path.is_file() and p.path.parent == work
    png = next(p for p in ps if p.name.endswith(".png"))
    assert png.source.name == "Ünïcode ß.PNG"
    assert safe_name("Été/Façade 1.JPG", ".jpg") == "Ete__Facade_1.jpg"


def test_exif_metadata_and_cache_reuse(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        _photo(src / f"p{k}.jpg", focal35=26)
    bus = EventBus()
    seen = _events(bus)
    ps = ingest(src, tmp_path / "work", CFG, bus)
    p0 = ps.photos[0]
    assert (p0.make, p0.model, p0.focal_mm, p0.focal_35mm) == ("TestMake", "TestModel", 4.2, 26)
    assert p0.focal_px == pytest.approx(26 / 36 * 200)
    with Image.open(p0.path) as im:  # EXIF kept in the working copy for COLMAP
        assert im.getexif().get_ifd(0x8769).get(0xA405) == 26
    mtimes = {p.name: p.path.stat().st_mtime_ns for p in ps}
    seen.clear()
    ps2 = ingest(src, tmp_path / "work", CFG, bus)
    assert isinstance(ps2, PhotoSet) and ps2.names == ps.names
    assert {p.name: p.path.stat().st_mtime_ns for p in ps2} == mtimes  # not rewritten
    assert ps2.reused == 3
    assert any("3 working copies reused" in e.text for e in seen if isinstance(e, Message))
    # a changed source is redone; a removed one loses its working copy
    _photo(src / "p1.jpg", size=(400, 200), focal35=26)
    (src / "p2.jpg").unlink()
    _photo(src / "p3.jpg")
    ps3 = ingest(src, tmp_path / "work", CFG)
    assert ps3.names == ["p0.jpg", "p1.jpg", "p3.jpg"]
    assert (ps3.photos[1].width, ps3.photos[1].height) == (200, 100)
    assert not (tmp_path / "work" / "p2.jpg").exists()


def test_checks_flag_blur_exposure_duplicates(tmp_path):
    """Blurry, dark, blown-out and near-duplicate photos are named with a reason; all-black and
    exact copies are skipped."""
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for k in range(6):  # textured photos (sharp)
        a = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(a).resize((400, 300), Image.Resampling.BICUBIC).save(src / f"p{k}.png")
    with Image.open(src / "p0.png") as im:
        im.filter(ImageFilter.GaussianBlur(6)).save(src / "q_blurry.png")
        im.save(src / "p0_again.jpg", quality=95)  # near duplicate (re-encoded)
    (src / "p1_copy.png").write_bytes((src / "p1.png").read_bytes())  # exact duplicate
    Image.new("RGB", (400, 300), (1, 1, 1)).save(src / "r_black.png")
    dark = rng.integers(0, 12, (300, 400, 3), dtype=np.uint8)
    dark[:20] = 200
    Image.fromarray(dark).save(src / "s_dark.png")
    Image.new("RGB", (400, 300), (255, 255, 255)).save(src / "t_white.png")
    bus = EventBus()
    seen = _events(bus)
    ps = ingest(src, tmp_path / "work", CFG, bus)
    skipped = {s.name: s.reason for s in ps.skipped}
    assert skipped == {"p1_copy.png": "an exact copy of p1.png", "r_black.png": skipped["r_black.png"]}
    assert "all black" in skipped["r_black.png"]
    assert "blurry" in ps.flags["q_blurry.png"]
    assert "mostly black" in ps.flags["s_dark.png"]
    assert "blown out" in ps.flags["t_white.png"]
    assert "nearly the same as p0.png" in ps.flags["p0_again.jpg"]
    for k in range(2, 6):  # sharp, well exposed, distinct: only the low-resolution note
        assert ps.flags[f"p{k}.png"] == "low resolution (300 pixels)"
    warned = " ".join(e.text for e in seen if isinstance(e, Message) and e.level == "warning")
    for name in ("q_blurry.png", "s_dark.png", "t_white.png", "p0_again.jpg", "p1_copy.png"):
        assert name in warned


def test_fifty_megapixel_png_is_read(tmp_path):
    """PIL's decompression-bomb limit is raised: a 50 MP PNG becomes a working copy."""
    src = tmp_path / "src"
    src.mkdir()
    big = Image.linear_gradient("L").resize((8660, 5773)).convert("RGB")
    big.save(src / "big.png", compress_level=1)
    for k in range(2):
        _photo(src / f"p{k}.jpg")
    ps = ingest(src, tmp_path / "work", CFG)
    p = next(p for p in ps if p.name == "big.png")
    assert (p.orig_width, p.orig_height) == (8660, 5773) and max(p.width, p.height) == 200


def test_panoramas_and_thin_working_copies_are_skipped_with_the_cause(tmp_path):
    """The aspect ratio counts: a 20:1 strip is a panorama; with panoramas allowed, a strip whose
    working copy would be thinner than min_image_size is still refused, and says why."""
    src = tmp_path / "src"
    for k in range(3):
        _photo(src / f"p{k}.jpg")
    _photo(src / "pano.jpg", size=(4000, 200))
    _photo(src / "strip.jpg", size=(1200, 100))
    ps = ingest(src, tmp_path / "work", CFG)
    reasons = {s.name: s for s in ps.skipped}
    assert reasons["pano.jpg"].kind == "panorama"
    assert reasons["pano.jpg"].reason.startswith("a panorama or strip (4000x200 pixels, 20:1)")
    assert reasons["strip.jpg"].reason.startswith("a panorama or strip (1200x100 pixels, 12:1)")
    wide = IngestConfig(max_image_size=200, min_image_size=64, max_aspect_ratio=30.0)
    ps = ingest(src, tmp_path / "work2", wide)
    reasons = {s.name: s.reason for s in ps.skipped}
    assert reasons["pano.jpg"].startswith("too thin: its working copy would be 200x10 pixels")
    assert "strip.jpg" in reasons and "too thin" in reasons["strip.jpg"]
    assert not (tmp_path / "work2" / "pano.jpg").exists()


def test_long_and_awkward_names_get_bounded_ascii_working_copies(tmp_path):
    from splatkit.ingest.names import shown

    src = tmp_path / "src"
    long_a, long_b = "é" * 120 + "a.jpg", "é" * 120 + "b.jpg"  # 240+ bytes, same ASCII start
    for name in (long_a, long_b, "tab\there.jpg", os.fsdecode(b"\xff\xfe.jpg")):
        _photo(src / name)
    ps = ingest(src, tmp_path / "work", CFG)
    assert len(ps) == 4 and len(set(ps.names)) == 4
    for p in ps:
        assert p.name.isascii() and len(p.name) <= 104 and p.path.is_file()
    assert shown("tab\there.jpg") == "tab\\there.jpg"
    assert shown(os.fsdecode(b"\xff\xfe.jpg")) == "\\xff\\xfe.jpg"
    assert len(shown("x" * 500)) <= 120 and shown("x" * 500).count("...") == 1
