"""Checks on the photos before SfM: blur, exposure, duplicates, low resolution.

Each flagged photo is named with its reason in a warning ``Message``. All-black photos and exact
duplicates (same content) are skipped, since they can only hurt SfM; the rest are warnings
(a slightly blurry or dark photo often still registers and helps).

The measures work on a grey working thumbnail (longest side :data:`THUMB`), so they cost about the
same for a 12 MP and a 50 MP photo and are comparable between photos of different sizes:

* blur: variance of the Laplacian (a sharpness measure), relative to the median of the set. A
  photo well below the median is blurrier than the others (motion blur, missed focus). Relative,
  because the absolute value depends on the scene's texture.
* exposure: the fraction of pixels near black (< 16) or blown out (> 240).
* near duplicates: mean absolute difference of 32 x 32 grey thumbnails (0-255 scale).
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..events import NULL_BUS, EventBus, Message

STAGE = "ingest"
#: longest side of the grey working thumbnail (pixels)
THUMB = 512
#: a photo whose Laplacian variance is below this fraction of the set's median is called blurry
BLUR_RATIO = 0.3
#: blur is judged relative to the others only when there are at least this many photos
BLUR_MIN_PHOTOS = 4
#: fraction of pixels that must be near black / blown out to warn
EXPOSURE_FRACTION = 0.85
#: mean grey level under which a photo counts as all black (skipped)
BLACK_MEAN = 4.0
#: mean abs difference (0-255) of 32x32 thumbnails under which two photos are near duplicates
NEAR_DUP = 2.0
#: photos whose shorter side is under this many pixels get a warning
LOW_RES = 320


@dataclass
class PhotoStats:
    name: str
    sharpness: float
    mean: float
    dark: float
    bright: float
    tiny: np.ndarray  # 32x32 float32 grey thumbnail
    digest: str
    short_side: int


def measure(image_path: Path, short_side: int, name: str) -> PhotoStats:
    """Sharpness, exposure, thumbnail and file hash of one photo's working copy.

    The working copy is hashed rather than the original: identical originals give identical
    copies, and the copy is ours (an original may vanish or change while the folder is read).
    """
    with Image.open(image_path) as im:
        im.draft("L", (THUMB, THUMB))
        g = im.convert("L")
        g.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
        a = np.asarray(g, dtype=np.float32)
        tiny = np.asarray(g.resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    return PhotoStats(
        name=name,
        sharpness=laplacian_variance(a),
        mean=float(a.mean()),
        dark=float((a < 16).mean()),
        bright=float((a > 240).mean()),
        tiny=tiny,
        digest=file_hash(image_path),
        short_side=short_side,
    )


def laplacian_variance(a: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (higher: sharper)."""
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CheckResult:
    #: names to skip -> reason (all black, exact duplicate)
    skip: dict[str, str]
    #: names with a warning -> reason (blurry, dark, blown out, near duplicate, low resolution)
    warn: dict[str, str]


def check_photos(photos, bus: EventBus = NULL_BUS) -> CheckResult:
    """Check a list of :class:`~splatkit.ingest.photos.Photo` (sorted by name); emit one warning each.

    Exact duplicates keep the first photo by name; near duplicates are only warned about.
    """
    stats = [measure(p.path, min(p.orig_width, p.orig_height), p.name) for p in photos]
    skip: dict[str, str] = {}
    warn: dict[str, list[str]] = {}
    first_by_hash: dict[str, str] = {}
    for s in stats:
        if s.digest in first_by_hash:
            skip[s.name] = f"an exact copy of {first_by_hash[s.digest]}"
            continue
        first_by_hash[s.digest] = s.name
        if s.mean < BLACK_MEAN:
            skip[s.name] = "all black (lens cap on, or taken in the dark)"
    live = [s for s in stats if s.name not in skip]
    if len(live) >= BLUR_MIN_PHOTOS:
        med = statistics.median(s.sharpness for s in live)
        for s in live:
            if med > 0 and s.sharpness < BLUR_RATIO * med:
                warn.setdefault(s.name, []).append(
                    f"blurry (sharpness {s.sharpness / med:.0%} of the typical photo here)"
                )
    for s in live:
        if s.dark > EXPOSURE_FRACTION:
            warn.setdefault(s.name, []).append(f"mostly black ({s.dark:.0%} of it is near black)")
        elif s.bright > EXPOSURE_FRACTION:
            warn.setdefault(s.name, []).append(f"mostly blown out ({s.bright:.0%} of it is white)")
    low = [s for s in live if s.short_side < LOW_RES]
    if len(live) > 1:  # near duplicates of any earlier photo
        tiny = np.stack([s.tiny.ravel() for s in live])
        for i in range(1, len(live)):
            d = np.abs(tiny[:i] - tiny[i]).mean(axis=1)
            j = int(d.argmin())
            if d[j] < NEAR_DUP:
                warn.setdefault(live[i].name, []).append(
                    f"nearly the same as {live[j].name} (adds little: take photos a step apart)"
                )
    for name, why in skip.items():
        bus.emit(Message(STAGE, f"Skipped {name}: {why}.", level="warning"))
    for name, whys in warn.items():
        bus.emit(Message(STAGE, f"Check {name}: {'; '.join(whys)}.", level="warning"))
    if low:  # one line for all: often every photo
        shown = ", ".join(s.name for s in low[:8]) + (f" and {len(low) - 8} more" if len(low) > 8 else "")
        bus.emit(
            Message(
                STAGE,
                f"Low resolution ({min(s.short_side for s in low)} pixels on the shorter side; "
                f"1000+ gives sharper splats): {shown}.",
                level="warning",
            )
        )
        for s in low:
            warn.setdefault(s.name, []).append(f"low resolution ({s.short_side} pixels)")
    return CheckResult(skip=skip, warn={k: "; ".join(v) for k, v in warn.items()})


__all__ = ["check_photos", "CheckResult", "laplacian_variance", "measure", "file_hash"]
