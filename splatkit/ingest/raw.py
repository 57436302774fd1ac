"""Camera RAW photos: developed to sRGB with rawpy (LibRaw), their EXIF read with exifread.

Development (:func:`develop`): the camera's own white balance (as shot), LibRaw's colour matrix
to sRGB, the sRGB curve (``gamma=(2.4, 12.92)``), 8 bits, upright (the file's orientation), and
the exposure as shot: no brightening per photo (LibRaw's default stretches each photo to its
own histogram, and by default takes a photo's brightest pixel as white when it is above 75% of
the white level: both would give the same wall another brightness in each view). When the
working copy is at most half the RAW's size, each 2x2 block of the sensor becomes one pixel
(``half_size``: no demosaicing artefacts, about 4 times faster).

EXIF (:func:`read_exif`): make, model, focal length, 35 mm equivalent, focal-plane resolution
and GPS of the TIFF structure that DNG, CR2, NEF, ARW, ORF, RW2, PEF and most other RAW formats
share, read with exifread and returned in Pillow's form (a :class:`PIL.Image.Exif`), so that
ingest reads them as it reads a JPEG's and writes them into the working copy. rawpy gives no
EXIF, but LibRaw knows the focal length of every format it reads (CR3 and RAF too): it is
used when the EXIF has none.

A folder holding the RAW and the JPEG (or HEIC) of the same shots (same folder, same name but
the extension) uses one of each pair (:func:`pick_twins`): the JPEG, the camera's own
development, unless some RAW files have no JPEG; then the RAW of every pair, so that all the
photos are developed alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .formats import RAW_EXTS
from .names import shown
from .scan import Found, Skipped

# EXIF tags kept from a RAW (tag id -> where it goes: 0 = IFD0, 1 = the EXIF sub-IFD)
_MAKE, _MODEL, _FOCAL, _FOCAL_35 = 0x010F, 0x0110, 0x920A, 0xA405
_KEPT = {_MAKE: 0, _MODEL: 0, _FOCAL: 1, _FOCAL_35: 1, 0xA20E: 1, 0xA20F: 1, 0xA210: 1,
         0x9003: 1}  # focal-plane x/y resolution and unit, date taken
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_TIFF_EP_FOCAL = 0x920A  # TIFF-EP (DNG) may hold FocalLength in IFD0: same number as in EXIF


class RawError(Exception):
    """A RAW file that cannot be read or developed (the message says why, in plain words)."""


@dataclass
class RawPhoto:
    """What :func:`open_raw` learnt: the upright size of the full development and the EXIF."""

    width: int
    height: int
    exif: Image.Exif


def open_raw(path: Path) -> RawPhoto:
    """The upright size and EXIF of a RAW file (decodes nothing yet).

    Raises:
        RawError: not a RAW file LibRaw reads, or damaged.
    """
    with _imread(path) as raw:
        s = raw.sizes
        w, h = (s.height, s.width) if s.flip in (5, 6) else (s.width, s.height)
        focal = _lib_focal(raw)
    exif = read_exif(path)
    sub = exif.get_ifd(_EXIF_IFD)
    if not sub.get(_FOCAL) and focal:
        sub[_FOCAL] = focal
    return RawPhoto(int(w), int(h), exif)


def develop(path: Path, scale: float) -> Image.Image:
    """The RAW developed to 8-bit sRGB, upright, at about ``scale`` of its full size or more
    (half size when ``scale`` <= 0.5; the caller resizes to the exact size).

    Raises:
        RawError: damaged, or LibRaw fails.
    """
    import rawpy

    with _imread(path) as raw:
        try:
            rgb = raw.postprocess(
                use_camera_wb=True, half_size=scale <= 0.5, no_auto_bright=True, output_bps=8,
                gamma=(2.4, 12.92), output_color=rawpy.ColorSpace.sRGB,
                adjust_maximum_thr=0.0,  # LibRaw's default takes the photo's brightest pixel as white
            )
        except (rawpy.LibRawError, MemoryError, ValueError) as e:
            raise RawError(f"could not be developed ({_why(e)}): it may be damaged") from None
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _imread(path: Path):
    try:
        import rawpy
    except ImportError:
        raise RawError("RAW photos need the rawpy package, which is missing here: reinstall "
                       "splatkit (pip install rawpy)") from None
    try:
        return rawpy.imread(str(path))
    except rawpy.LibRawFileUnsupportedError:
        raise RawError("not a RAW format that LibRaw reads (or damaged): export the photos as "
                       "JPEG") from None
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise RawError(f"could not be read as a RAW photo ({_why(e)}): it may be damaged") from None


def _why(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


def _lib_focal(raw) -> float | None:
    try:
        f = float(raw.other.focal_length)
    except (AttributeError, TypeError, ValueError):  # an older rawpy without ``other``
        return None
    return f if 0 < f < 10_000 else None


def read_exif(path: Path) -> Image.Exif:
    """Make, model, focal length(s), focal-plane resolution and GPS of a RAW, as a Pillow Exif
    (empty when the file's structure is not one exifread knows, e.g. CR3)."""
    import exifread

    exif = Image.Exif()
    try:
        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False, extract_thumbnail=False)
    except Exception:  # noqa: BLE001 - exifread raises many kinds on odd files; EXIF is optional
        return exif
    sub, gps = exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)
    for key, tag in tags.items():
        group = key.split(" ", 1)[0]
        value = _value(getattr(tag, "values", None))
        if value is None:
            continue
        if group == "GPS" and 0 <= tag.tag <= 6:
            gps[tag.tag] = value
        elif group in ("Image", "EXIF") and tag.tag in _KEPT:
            target = exif if _KEPT[tag.tag] == 0 else sub
            if tag.tag not in target or group == "EXIF":  # the EXIF IFD wins over TIFF-EP's IFD0
                target[tag.tag] = value
    return exif


def _value(values):
    """exifread's values -> what Pillow's Exif writes (str, int, float, tuple of floats)."""
    if isinstance(values, str):
        return values.strip("\x00 ").strip() or None
    if isinstance(values, bytes):
        return None
    try:
        nums = [float(Fraction(v.num, v.den)) if hasattr(v, "den") else v for v in values]
    except (TypeError, ZeroDivisionError, ValueError):
        return None
    if not nums:
        return None
    if len(nums) == 1:
        return nums[0]
    return tuple(float(x) for x in nums)


def pick_twins(found: list[Found]) -> tuple[list[Found], list[Skipped], str | None]:
    """One photo of each RAW + JPEG/HEIC pair (same folder and name, another extension).

    Returns the photos to use, the twins left out (each with its reason) and one line saying
    which of each pair is used and why (None when there are no pairs).
    """
    by_shot: dict[tuple[str, str], list[Found]] = {}
    for c in found:
        folder, _, base = c.rel.rpartition("/")
        by_shot.setdefault((folder, base.rpartition(".")[0].lower()), []).append(c)
    pairs = [g for g in by_shot.values() if len(g) > 1 and any(_is_raw(c) for c in g)
             and any(not _is_raw(c) for c in g)]
    if not pairs:
        return found, [], None
    lone_raw = sum(1 for g in by_shot.values() if all(_is_raw(c) for c in g))
    use_raw = lone_raw > 0  # a RAW without a JPEG: develop every RAW, so all look alike
    drop: dict[Path, str] = {}
    for g in pairs:
        keep = min((c for c in g if _is_raw(c) == use_raw), key=lambda c: c.rel)
        for c in g:
            if c is not keep:
                drop[c.path] = f"the same shot as {shown(Path(keep.rel).name)}, which is used"
    kept = [c for c in found if c.path not in drop]
    skipped = [Skipped(p, why, "twin") for p, why in drop.items()]
    example = next(g for g in pairs)
    names = " + ".join(shown(Path(c.rel).name) for c in sorted(example, key=lambda c: c.rel))
    if use_raw:
        line = (f"{len(pairs)} shot(s) are both RAW and JPEG (e.g. {names}): the RAW of each is "
                f"developed, like the {lone_raw} RAW file(s) without a JPEG, so that all the "
                "photos look alike; the JPEGs are left out.")
    else:
        line = (f"{len(pairs)} shot(s) are both RAW and JPEG (e.g. {names}): the JPEG of each "
                "(the camera's own development) is used, the RAW files are left out.")
    return kept, skipped, line


def _is_raw(c: Found) -> bool:
    return Path(c.rel).suffix.lower() in RAW_EXTS


#: XYZ -> linear sRGB (D65): as a DNG's ColorMatrix1, it makes the camera's colours sRGB's
_XYZ_TO_SRGB = [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                [0.0556434, -0.2040259, 1.0572252]]


def write_dng(path: Path, linear_rgb: np.ndarray, white_balance=(2.0, 1.0, 1.5), orientation: int = 1,
              focal_mm: float | None = None, focal_35mm: int | None = None,
              make: str = "TestMake", model: str = "TestModel") -> None:
    """A minimal DNG that LibRaw reads, as a camera would record ``linear_rgb`` (``[H, W, 3]``
    linear sRGB in [0, 1], even sizes): a 12-bit RGGB mosaic seen through ``white_balance``
    (``AsShotNeutral`` = its inverse), ``ColorMatrix1`` the XYZ -> sRGB matrix. For tests and
    benchmarks (needs tifffile)."""
    import tifffile

    def rationals(values):
        return tuple(v for x in values for v in (int(round(x * 10000)), 10000))

    cam = np.asarray(linear_rgb, np.float64) / np.asarray(white_balance)
    mosaic = np.empty(cam.shape[:2])
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = cam[0::2, 0::2, 0], cam[1::2, 1::2, 2]
    mosaic[0::2, 1::2], mosaic[1::2, 0::2] = cam[0::2, 1::2, 1], cam[1::2, 0::2, 1]
    white = 4095
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),  # UniqueCameraModel
        (271, "s", 0, make, True), (272, "s", 0, model, True), (274, "H", 1, orientation, True),
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50714, "H", 1, 0, True), (50717, "H", 1, white, True),  # BlackLevel, WhiteLevel
        (50721, "2i", 9, rationals(np.ravel(_XYZ_TO_SRGB)), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, rationals(1 / np.asarray(white_balance)), True),  # AsShotNeutral
    ]
    if focal_mm:
        tags.append((37386, "2I", 1, (int(round(focal_mm * 100)), 100), True))  # TIFF-EP FocalLength
    if focal_35mm:
        tags.append((41989, "H", 1, int(focal_35mm), True))  # FocalLengthIn35mmFilm
    tifffile.imwrite(path, np.round(np.clip(mosaic, 0, 1) * white).astype(np.uint16),
                     photometric=32803, extratags=tags)


__all__ = ["RawError", "RawPhoto", "open_raw", "develop", "read_exif", "pick_twins", "write_dng"]
