"""Small copies of the shared photo sets for the SfM tests (decoded at reduced size: fast)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOUNTAIN = DATA / "strecha_fountain_p11"
SOUTH = DATA / "south_building_128"


def small_copies(
    src: Path, dst: Path, size: int, names: list[str] | None = None,
    edit: Callable[[int, Image.Image], tuple[Image.Image, bytes | None]] | None = None,
) -> Path:  # fmt: skip
    """JPEG copies of ``src``'s photos (``names``, default all) with the longest side ``size``.

    ``edit(k, image) -> (image, exif bytes or None)`` may change photo ``k`` before it is saved.
    """
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in (".jpg", ".jpeg"))
    if names is not None:
        files = [f for f in files if f.name in set(names)]
    for k, f in enumerate(files):
        with Image.open(f) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        exif = None
        if edit is not None:
            im, exif = edit(k, im)
        im.save(dst / f.name, quality=92, **({"exif": exif} if exif else {}))
    return dst
