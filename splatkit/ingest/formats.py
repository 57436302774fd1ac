"""Which photo files splatkit reads, by file extension, and the readers behind them.

* JPEG and PNG: Pillow.
* HEIC/HEIF (iPhone photos, many Android phones): pillow-heif, a Pillow plugin over libheif.
  libheif applies the HEIF rotation and mirroring (``irot``/``imir``) while decoding and
  pillow-heif then sets the EXIF orientation to 1, so the pixels arrive upright; the EXIF (focal
  length, GPS) is kept. 10-bit HEIC is reduced to 8 bits by pillow-heif.
* AVIF: Pillow's own AVIF plugin (libavif), which turns ``irot``/``imir`` into an EXIF
  orientation that ingest applies like a JPEG's.
* Camera RAW (DNG, CR2, CR3, NEF, ARW and the other formats LibRaw reads): developed by
  :mod:`.raw`.

Everything else is refused with its format named and what to export instead
(:data:`NOT_READ`); a file whose extension is unknown is "not a photo".
"""

from __future__ import annotations

from pathlib import Path

JPEG_PNG_EXTS = {".jpg", ".jpeg", ".png"}
HEIF_EXTS = {".heic", ".heif", ".hif"}
AVIF_EXTS = {".avif"}
#: LibRaw's formats that cameras write today (rawpy reads them all).
RAW_EXTS = {
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
    ".rw2", ".rwl", ".pef", ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".mef", ".x3f",
}
#: Extensions of the photos splatkit reads.
IMAGE_EXTS = JPEG_PNG_EXTS | HEIF_EXTS | AVIF_EXTS | RAW_EXTS
#: Pillow's names of the formats read through Pillow (MPO: a JPEG with a second picture).
PIL_FORMATS = {"JPEG", "PNG", "MPO", "HEIF", "AVIF"}
#: What splatkit reads, in words (for messages).
READ = "JPEG, PNG, HEIC, AVIF and camera RAW (DNG, CR2, CR3, NEF, ARW, ...)"

#: Image formats recognised but not read: extension -> (format name, what to export instead).
NOT_READ = {
    ".tif": ("TIFF", "JPEG (or PNG)"),
    ".tiff": ("TIFF", "JPEG (or PNG)"),
    ".webp": ("WebP", "JPEG or PNG"),
    ".jxl": ("JPEG XL", "JPEG"),
    ".gif": ("GIF", "JPEG or PNG"),
    ".bmp": ("BMP", "JPEG or PNG"),
    ".psd": ("Photoshop", "JPEG"),
    ".exr": ("OpenEXR", "JPEG or PNG"),
    ".hdr": ("Radiance HDR", "JPEG or PNG"),
}

_heif_problem: str | None = None
_heif_registered = False


def format_name(path: Path | str) -> str:
    """The format a file's extension names, in words ("HEIC", "camera RAW", "TIFF"), or ""."""
    ext = Path(path).suffix.lower()
    if ext in NOT_READ:
        return NOT_READ[ext][0]
    if ext in RAW_EXTS:
        return "camera RAW"
    if ext in HEIF_EXTS:
        return "HEIC" if ext == ".heic" else "HEIF"
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".avif": "AVIF"}.get(ext, "")


def not_read_reason(path: Path | str) -> str:
    """Why a file of a format that is not read is skipped, and what to do."""
    ext = Path(path).suffix.lower()
    if ext in NOT_READ:
        name, instead = NOT_READ[ext]
        return f"{name} is not read by splatkit: export the photos as {instead}"
    return f"not a photo: splatkit reads {READ}"


def heif_problem() -> str | None:
    """Register pillow-heif's HEIF opener with Pillow (once); why HEIC cannot be read, or None."""
    global _heif_problem, _heif_registered
    if not _heif_registered:
        _heif_registered = True
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _heif_problem = ("HEIC needs the pillow-heif package, which is missing here: "
                             "reinstall splatkit (pip install pillow-heif)")
        else:
            # thumbnails=False: draft() never swaps in an embedded thumbnail for the photo
            register_heif_opener(thumbnails=False)
    return _heif_problem


def avif_problem() -> str | None:
    """Why AVIF cannot be read here (a Pillow without its AVIF plugin), or None."""
    from PIL import features

    if features.check("avif"):
        return None
    return "AVIF needs Pillow 11.3 or newer: update it (pip install -U pillow)"


__all__ = ["IMAGE_EXTS", "JPEG_PNG_EXTS", "HEIF_EXTS", "AVIF_EXTS", "RAW_EXTS", "NOT_READ",
           "PIL_FORMATS", "READ", "format_name", "not_read_reason", "heif_problem", "avif_problem"]
