"""Ingest: a folder of photos -> upright, downscaled working copies with stable ASCII names.

The originals are only ever read. Each usable photo gets a working copy in ``work_dir`` whose
longest side is at most ``IngestConfig.max_image_size`` (EXIF orientation applied, JPEG quality 95
or PNG), keeping its EXIF (make, model, focal length, GPS; orientation reset) so that SfM can use
the focal-length and GPS priors. A small manifest (``work_dir/ingest.json``) lets a second run
reuse working copies whose source has the same size and modification time.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import IngestConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import atomic_path, write_text_atomic
from .checks import check_photos
from .formats import (
    AVIF_EXTS,
    HEIF_EXTS,
    PIL_FORMATS,
    RAW_EXTS,
    READ,
    avif_problem,
    format_name,
    heif_problem,
)
from .names import safe_name, shown, unique_name
from .raw import RawError, develop, open_raw, pick_twins
from .scan import Found, Skipped, os_reason, scan
from .source_kind import SourceKind

STAGE = "ingest"
MANIFEST = "ingest.json"
#: Bump when the working-copy recipe changes, so that old caches are not reused.
RECIPE_VERSION = 2
JPEG_QUALITY = 95
MIN_PHOTOS = 3
# PIL refuses images over 2 x MAX_IMAGE_PIXELS (default 89.5 MP) as possible "decompression bombs"
# and warns above it. Phone cameras reach 200 MP (16320 x 12240), and we only read files the user
# chose, decoded at reduced size where possible (JPEG draft), so allow up to 2 x 250 MP.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 250_000_000)

# EXIF tags
_ORIENTATION, _MAKE, _MODEL = 0x0112, 0x010F, 0x0110
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_FOCAL, _FOCAL_35 = 0x920A, 0xA405
_FP_XRES, _FP_YRES, _FP_UNIT = 0xA20E, 0xA20F, 0xA210


@dataclass
class Photo:
    """One usable photo.

    Attributes:
        name: working-copy file name (ASCII-safe, unique, stable), relative to
            ``PhotoSet.image_dir``.
        source: the original file (never modified).
        path: the working copy.
        width, height: working-copy size in pixels (upright).
        orig_width, orig_height: original size in pixels (upright).
        make, model: EXIF camera make and model ("" when absent).
        focal_mm: EXIF focal length in millimetres (None when absent).
        focal_35mm: 35 mm-equivalent focal length in millimetres (None when unknown).
        gps: (latitude, longitude, altitude) in degrees/metres from EXIF, or None.
    """

    name: str
    source: Path
    path: Path
    width: int
    height: int
    orig_width: int
    orig_height: int
    make: str = ""
    model: str = ""
    focal_mm: float | None = None
    focal_35mm: float | None = None
    gps: tuple[float, float, float] | None = None

    @property
    def focal_px(self) -> float | None:
        """Focal length prior in working-copy pixels (35 mm film is 36 mm wide), or None."""
        if not self.focal_35mm:
            return None
        return self.focal_35mm / 36.0 * max(self.width, self.height)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["source"], d["path"] = str(self.source), str(self.path)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Photo:
        d = dict(d)
        d["source"], d["path"] = Path(d["source"]), Path(d["path"])
        d["gps"] = tuple(d["gps"]) if d.get("gps") else None
        return cls(**d)


@dataclass
class PhotoSet:
    """The result of :func:`ingest`: usable photos sorted by name, and the files skipped."""

    src: Path
    image_dir: Path
    photos: list[Photo] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: how many working copies were reused from an earlier run (cache hits)
    reused: int = 0
    #: working-copy name -> warning from the checks (blurry, dark, near duplicate, ...)
    flags: dict[str, str] = field(default_factory=dict)
    #: photos, or video for frames taken from a video (SfM then matches sequentially)
    source_kind: SourceKind = SourceKind.PHOTOS

    def __post_init__(self) -> None:
        self.source_kind = SourceKind(self.source_kind)  # "video" -> SourceKind.VIDEO

    def __len__(self) -> int:
        return len(self.photos)

    def __iter__(self):
        return iter(self.photos)

    @property
    def images(self) -> list[Photo]:
        """The usable photos (same as ``photos``)."""
        return self.photos

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.photos]

    @property
    def has_gps(self) -> bool:
        return any(p.gps is not None for p in self.photos)


def ingest(src: Path, work_dir: Path, cfg: IngestConfig, bus: EventBus = NULL_BUS) -> PhotoSet:
    """Find the photos in ``src`` and write upright, downscaled working copies into ``work_dir``.

    Every file that is not used is named in a warning with its reason (see :mod:`.scan`).

    Raises:
        UserError: ``src`` is missing, not a folder or unreadable, or fewer than 3 usable photos
            are found.
    """
    src, work_dir = Path(src), Path(work_dir)
    _check_folder(src)
    work_dir.mkdir(parents=True, exist_ok=True)
    found, skipped = scan(src, work_dir)
    for s in skipped:
        bus.emit(Message(STAGE, f"Skipped {_rel(s.path, src)}: {s.reason}.", "warning"))
    found, twins, twin_line = pick_twins(found)  # RAW + JPEG of one shot: one of them
    if twin_line:
        bus.emit(Message(STAGE, twin_line))
    skipped += twins
    old = _read_manifest(work_dir, cfg)
    photos: list[Photo] = []
    entries: dict[str, dict] = {}  # relative source path -> size, mtime, photo (the manifest)
    used: set[str] = set()
    reused = 0
    for k, c in enumerate(found):
        photo = _reuse(old.get(c.rel), c, used)
        if photo is not None:
            reused += 1
        else:
            try:
                photo = _make_working_copy(c.path, c.rel, work_dir, cfg, used)
            except _Skip as e:
                skipped.append(Skipped(c.path, str(e), e.kind))
                bus.emit(Message(STAGE, f"Skipped {shown(c.rel)}: {e}.", level="warning"))
                continue
        entries[c.rel] = {"size": c.size, "mtime_ns": c.mtime_ns, "photo": photo.to_json()}
        used.add(photo.name)
        photos.append(photo)
        bus.emit(StageProgress(STAGE, k + 1, len(found), detail=shown(c.rel)))
    photos.sort(key=lambda p: p.name)
    _write_manifest(work_dir, cfg, src, entries, old)
    # blur, exposure, duplicates: skip what can only hurt, warn about the rest
    checked = check_photos(photos, bus)
    skipped += [Skipped(p.source, checked.skip[p.name], "check") for p in photos if p.name in checked.skip]
    photos = [p for p in photos if p.name not in checked.skip]
    skipped.sort(key=lambda s: str(s.path))
    result = PhotoSet(
        src=src, image_dir=work_dir, photos=photos, skipped=skipped, reused=reused, flags=checked.warn
    )
    if len(photos) < MIN_PHOTOS:
        raise _too_few(src, photos, skipped)
    bus.emit(
        Message(
            STAGE,
            f"Using {len(photos)} photos"
            + (f", {len(skipped)} file(s) skipped" if skipped else "")
            + (f" ({reused} working copies reused)" if reused else "")
            + ".",
        )
    )
    return result


def _check_folder(src: Path) -> None:
    """The photos folder exists, is a folder and can be listed (else a plain UserError)."""
    if not src.exists():
        if src.is_symlink():
            raise UserError(
                f"The photo folder {shown(src)} is a link to {shown(os.readlink(src))}, which does "
                "not exist (or which leads round in a loop).",
                "Give the folder that holds the photos themselves.",
            )
        raise UserError(
            f"The photo folder {shown(src)} does not exist.", "Check the path (quote it if it has spaces)."
        )
    if not src.is_dir():
        raise UserError(f"{shown(src)} is not a folder.", "Give the folder that holds the photos.")
    try:
        with os.scandir(src):
            pass
    except OSError as e:
        raise UserError(
            f"The photo folder {shown(src)} {os_reason(e)}.",
            "Check its permissions, or copy the photos into a folder of your own.",
        ) from None


def _too_few(src: Path, photos: list[Photo], skipped: list[Skipped]) -> UserError:
    """Fewer than 3 photos: what was skipped, by cause, and the way out for the main cause."""
    kinds: dict[str, list[Skipped]] = {}
    for s in skipped:
        kinds.setdefault(s.kind, []).append(s)
    found = ("No usable photos" if not photos else f"Only {len(photos)} usable photo(s)") + \
        f" found in {shown(src)}"
    if skipped:
        found += f" ({len(skipped)} file(s) skipped, {_causes(kinds)})"
    main = max(kinds, key=lambda k: len(kinds[k])) if kinds else ""
    return UserError(found + ".", _TOO_FEW_TODO.get(main, _TOO_FEW_TODO[""]).format(
        formats=_format_names(kinds.get("format", [])), read=READ))


def _format_names(skipped: list[Skipped]) -> str:
    names = sorted({format_name(s.path) or s.path.suffix.lstrip(".").upper() for s in skipped})
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


#: kind of skipped file -> its words in the count of :func:`_too_few`
_CAUSES = {"format": "in a format not read", "other": "not photos", "image": "damaged or too small",
           "unreadable": "unreadable", "panorama": "panoramas or strips", "check": "copies or black",
           "twin": "RAW/JPEG twins", "link": "links not followed", "folder": "folders not read"}
#: the main cause -> what to do ({formats}: the formats not read, {read}: those read)
_TOO_FEW_TODO = {
    "format": "splatkit reads {read}: export the {formats} photos as JPEG and try again.",
    "image": "Each file skipped is named above with its reason: copy damaged ones again from the "
             "camera or phone, and give at least 3 photos (30-200 is typical).",
    "unreadable": "Check the files' permissions, or copy the photos into a folder of your own.",
    "panorama": "A panorama cannot be used for structure from motion: take ordinary photos "
                "instead (panorama mode off), 30-200 of them from different viewpoints, "
                "overlapping by about two thirds.",
    "": "Add at least 3 photos of the object ({read}; 30-200 is typical), taken from "
        "different viewpoints with plenty of overlap.",
}


def _causes(kinds: dict[str, list[Skipped]]) -> str:
    parts = sorted(kinds.items(), key=lambda kv: -len(kv[1]))
    return ", ".join(f"{len(v)} of them {_CAUSES.get(k, 'for other reasons')}" for k, v in parts)


def _rel(path: Path, src: Path) -> str:
    try:
        return shown(path.relative_to(src).as_posix())
    except ValueError:
        return shown(path)


def _reuse(entry: dict | None, c: Found, used: set[str]) -> Photo | None:
    """The working copy of an earlier run, if its source is unchanged and the copy still there."""
    if not (entry and entry["size"] == c.size and entry["mtime_ns"] == c.mtime_ns):
        return None
    if entry["photo"]["name"] in used or not Path(entry["photo"]["path"]).is_file():
        return None
    photo = Photo.from_json(entry["photo"])
    photo.source = c.path
    return photo


class _Skip(Exception):
    def __init__(self, reason: str, kind: str = "image"):
        super().__init__(reason)
        self.kind = kind


def _open(f: Path) -> Image.Image:
    ext = f.suffix.lower()
    heif = heif_problem()  # registers the HEIF reader: also a HEIC named .jpg is read
    problem = heif if ext in HEIF_EXTS else avif_problem() if ext in AVIF_EXTS else None
    if problem:
        raise _Skip(problem, "format")
    try:
        return Image.open(f)
    except UnidentifiedImageError:
        raise _Skip(f"not a readable image (damaged, or not really a {format_name(f)} file)") from None
    except Image.DecompressionBombError:
        raise _Skip("too large (over 500 megapixels): save a smaller copy") from None
    except FileNotFoundError:
        raise _Skip("it disappeared while splatkit was reading the folder", "unreadable") from None
    except PermissionError:
        raise _Skip("cannot be read (permission denied): check its permissions", "unreadable") from None
    except OSError as e:
        raise _Skip(f"could not be read ({e.strerror or e})", "unreadable") from None


def _working_size(w0: int, h0: int, cfg: IngestConfig) -> tuple[float, int, int]:
    """``(scale, width, height)`` of the working copy; a _Skip for photos that cannot be used."""
    long_side, short_side = max(w0, h0), min(w0, h0)
    if short_side < cfg.min_image_size:
        raise _Skip(
            f"too small ({w0}x{h0} pixels; photos need at least {cfg.min_image_size} "
            "pixels on the shorter side)"
        )
    if long_side > cfg.max_aspect_ratio * short_side:
        raise _Skip(
            f"a panorama or strip ({w0}x{h0} pixels, {long_side / short_side:.0f}:1): structure "
            "from motion needs ordinary photos",
            "panorama",
        )
    scale = min(1.0, cfg.max_image_size / long_side)
    tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    if min(tw, th) < cfg.min_image_size:
        raise _Skip(
            f"too thin: its working copy would be {tw}x{th} pixels (the longer side is cut to "
            f"{cfg.max_image_size}), under the {cfg.min_image_size} pixels that structure from "
            "motion needs on the shorter side",
            "panorama",
        )
    return scale, tw, th


def _make_working_copy(
    f: Path, rel: str, work_dir: Path, cfg: IngestConfig, used: set[str]
) -> Photo:
    if f.suffix.lower() in RAW_EXTS:
        return _make_raw_copy(f, rel, work_dir, cfg, used)
    with _open(f) as im:
        if im.format not in PIL_FORMATS:
            raise _Skip(f"is a {im.format} file named like a {format_name(f) or 'photo'}: "
                        "rename it, or export it as JPEG", "format")
        exif = im.getexif()
        exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)  # read now: the file closes below
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
        w0, h0 = im.size
        if orientation in (5, 6, 7, 8):
            w0, h0 = h0, w0
        scale, tw, th = _working_size(w0, h0, cfg)
        is_png = im.format == "PNG"
        name = unique_name(safe_name(rel, ".png" if is_png else ".jpg"), used)
        out = work_dir / name
        try:
            if scale < 1.0 and im.format == "JPEG":
                # decode at reduced size straight away (much faster for big photos)
                im.draft("RGB", (int(im.size[0] * scale) + 1, int(im.size[1] * scale) + 1))
            im.load()
        except (OSError, SyntaxError, ValueError, RuntimeError) as e:  # pillow-heif: RuntimeError
            raise _Skip(f"is damaged or truncated ({e})") from None
        up = _rgb(ImageOps.exif_transpose(im))
        if up.size != (tw, th):
            up = up.resize((tw, th), Image.Resampling.LANCZOS)
        # keep make/model/focal/GPS for SfM, drop the orientation (the pixels are upright now)
        if _ORIENTATION in exif:
            del exif[_ORIENTATION]
        _save(up, out, exif, "PNG" if is_png else "JPEG")
    return _photo(name, f, out, (tw, th), (w0, h0), exif)


def _make_raw_copy(f: Path, rel: str, work_dir: Path, cfg: IngestConfig, used: set[str]) -> Photo:
    """A camera RAW developed (:mod:`.raw`) into a JPEG working copy with the RAW's EXIF."""
    try:
        info = open_raw(f)
        scale, tw, th = _working_size(info.width, info.height, cfg)
        up = develop(f, scale)
    except RawError as e:
        raise _Skip(str(e)) from None
    except OSError as e:
        raise _Skip(f"could not be read ({os_reason(e)})", "unreadable") from None
    if up.size != (tw, th):
        up = up.resize((tw, th), Image.Resampling.LANCZOS)
    name = unique_name(safe_name(rel, ".jpg"), used)
    _save(up, work_dir / name, info.exif, "JPEG")
    return _photo(name, f, work_dir / name, (tw, th), (info.width, info.height), info.exif)


def _save(up: Image.Image, out: Path, exif: Image.Exif, fmt: str) -> None:
    with atomic_path(out) as tmp:
        kw = {"exif": exif.tobytes()} if len(exif) else {}
        if fmt == "PNG":
            up.save(tmp, "PNG", **kw)
        else:
            up.save(tmp, "JPEG", quality=JPEG_QUALITY, **kw)


def _photo(name: str, f: Path, out: Path, size: tuple[int, int], orig: tuple[int, int],
           exif: Image.Exif) -> Photo:
    """The :class:`Photo` of a working copy, with the camera facts of the original's EXIF."""
    sub, gps_ifd = exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)
    make = str(exif.get(_MAKE, "") or "").strip("\x00 ").strip()
    model = str(exif.get(_MODEL, "") or "").strip("\x00 ").strip()
    focal_mm = _num(sub.get(_FOCAL))
    f35 = _num(sub.get(_FOCAL_35))
    if not f35 and focal_mm:
        f35 = _focal35_from_plane(sub, focal_mm, *orig)
    return Photo(name=name, source=f, path=out, width=size[0], height=size[1], orig_width=orig[0],
                 orig_height=orig[1], make=make, model=model, focal_mm=focal_mm or None,
                 focal_35mm=f35 or None, gps=_gps(gps_ifd))


def _rgb(up: Image.Image) -> Image.Image:
    """8-bit RGB; transparency over white, 16-bit greys scaled down."""
    if up.mode == "RGB":
        return up
    if up.mode in ("RGBA", "LA", "PA") or (up.mode == "P" and "transparency" in up.info):
        rgba = up.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if up.mode in ("I;16", "I;16B", "I", "F"):
        return up.point(lambda v: v / 256).convert("L").convert("RGB")
    return up.convert("RGB")


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if x > 0 and x == x else None


def _focal35_from_plane(sub, focal_mm: float, w0: int, h0: int) -> float | None:
    """35 mm equivalent from the focal-plane resolution tags (sensor width), when present."""
    xres = _num(sub.get(_FP_XRES))
    unit = {2: 25.4, 3: 10.0, 4: 1.0}.get(int(sub.get(_FP_UNIT, 2) or 2))
    if not xres or not unit:
        return None
    long_px = max(w0, h0)  # the focal-plane resolution is per pixel, orientation does not matter
    sensor_long_mm = long_px / xres * unit
    if not 1.0 < sensor_long_mm < 100.0:
        return None
    return focal_mm * 36.0 / sensor_long_mm


def _gps(g) -> tuple[float, float, float] | None:
    try:
        if not g or 2 not in g or 4 not in g:
            return None

        def deg(v) -> float:
            d, m, s = (float(x) for x in v)
            return d + m / 60 + s / 3600

        lat, lon = deg(g[2]), deg(g[4])
        if str(g.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(g.get(3, "E")).upper().startswith("W"):
            lon = -lon
        alt = float(g.get(6, 0.0) or 0.0)
        if g.get(5) in (1, b"\x01"):
            alt = -alt
        return (lat, lon, alt)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _manifest_key(cfg: IngestConfig) -> dict:
    return {
        "version": RECIPE_VERSION,
        "max_image_size": cfg.max_image_size,
        "min_image_size": cfg.min_image_size,
        "max_aspect_ratio": cfg.max_aspect_ratio,
        "jpeg_quality": JPEG_QUALITY,
    }


def _read_manifest(work_dir: Path, cfg: IngestConfig) -> dict:
    p = work_dir / MANIFEST
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if m.get("recipe") != _manifest_key(cfg):
        # other settings: nothing is reusable, but clean up what we wrote before
        for e in m.get("photos", {}).values():
            _unlink(work_dir, e.get("photo", {}).get("name"))
        return {}
    return m.get("photos", {})


def _write_manifest(work_dir: Path, cfg: IngestConfig, src: Path, entries: dict, old: dict) -> None:
    """Record the working copies (``entries``: relative source path -> size, mtime, photo)."""
    # remove working copies of photos that are gone (only files that we wrote)
    keep = {e["photo"]["name"] for e in entries.values()}
    for e in old.values():
        name = e.get("photo", {}).get("name")
        if name not in keep:
            _unlink(work_dir, name)
    m = {"recipe": _manifest_key(cfg), "src": str(src), "photos": entries}
    write_text_atomic(work_dir / MANIFEST, json.dumps(m, indent=1))


def _unlink(work_dir: Path, name: str | None) -> None:
    if name and "/" not in name and not name.startswith("."):
        p = work_dir / name
        if p.is_file():
            p.unlink()


__all__ = ["ingest", "Photo", "PhotoSet", "Skipped", "safe_name", "shown"]
