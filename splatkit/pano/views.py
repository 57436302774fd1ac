"""The pinhole views cut from every 360 frame, and their feature masks, on disk.

``OUT/work/pano_views/vNN/<frame>.jpg`` (view ``NN`` of the layout, :mod:`.equirect`) and
``OUT/work/pano_masks/vNN/<frame>.jpg.png``: COLMAP's masks, white where the panorama's pixel is
nearer this view's centre than any other's, so that each pixel gives features once (COLMAP's
``panorama_sfm.py`` does the same). ``OUT/work/pano_views.json`` lets a second run reuse them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image

from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import write_text_atomic
from .equirect import (
    LAYOUTS,
    ViewLayout,
    cut_view,
    is_equirect_size,
    lowest_pitch_deg,
    view_intrinsics,
    view_rays,
)

STAGE = "ingest"
RECIPE = 1
JPEG_QUALITY = 95


@dataclass
class CutViews:
    """Views of ``frames`` (panorama names) under ``image_dir``; one square PINHOLE camera."""

    frames: list[str]
    image_dir: Path
    mask_dir: Path
    layout: str
    size: int
    focal: float
    key: str = ""
    rotations: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rotations:
            self.rotations = LAYOUTS[self.layout].rotations()

    @staticmethod
    def folder(k: int) -> str:
        return f"v{k:02d}"

    def view_name(self, k: int, frame: str) -> str:
        return f"{self.folder(k)}/{frame}"

    def frame_of(self, view_name: str) -> str:
        return view_name.split("/", 1)[1]

    def all_names(self) -> list[str]:
        return [self.view_name(k, f) for k in range(len(self.rotations)) for f in self.frames]

    def camera(self) -> pycolmap.Camera:
        c = self.size / 2.0
        return pycolmap.Camera(model="PINHOLE", width=self.size, height=self.size,
                               params=[self.focal, self.focal, c, c])  # fmt: skip


def frame_name(name: str) -> str:
    """The file name of a panorama's views: flat, ``.jpg``."""
    flat = name.replace("/", "_").replace("\\", "_")
    return flat if flat.lower().endswith(".jpg") else flat + ".jpg"


def feature_masks(layout: ViewLayout, size: int, focal: float) -> list[np.ndarray]:
    """Per view, ``uint8 [size, size]``: 255 where this view's centre is the nearest of all."""
    rots = layout.rotations()
    centres = np.stack([R[2] for R in rots])  # each view's forward axis in the pano frame
    rays = view_rays(size, focal)
    out = []
    for k, R in enumerate(rots):
        nearest = np.argmax((rays @ R) @ centres.T, axis=-1)
        out.append(np.where(nearest == k, 255, 0).astype(np.uint8))
    return out


def cut_panoramas(panos: list[tuple[str, Path]], work: Path, layout_name: str,
                  bus: EventBus = NULL_BUS) -> CutViews:  # fmt: skip
    """Cut every panorama ``(name, path)`` (its working copy) into the views of ``layout_name``."""
    layout = LAYOUTS[layout_name]
    sizes = {}
    for name, path in panos:
        with Image.open(path) as im:
            sizes[name] = im.size
    odd = [f"{n} ({w}x{h})" for n, (w, h) in sizes.items() if not is_equirect_size(w, h)]
    if odd or len(set(sizes.values())) > 1:
        raise UserError(
            "The 360 frames are not all full panoramas of one size: " + (", ".join(odd[:3]) or
                                                                          "sizes differ") + ".",
            "Give the equirectangular (2:1) frames of one camera, exported at one size.",
        )
    H = next(iter(sizes.values()))[1]
    size, focal = view_intrinsics(H, layout.fov_deg)
    key = _key(panos, layout_name, size)
    image_dir, mask_dir = work / "pano_views", work / "pano_masks"
    views = CutViews([frame_name(n) for n, _ in panos], image_dir, mask_dir, layout_name, size, focal, key)
    manifest = work / "pano_views.json"
    try:
        if json.loads(manifest.read_text(encoding="utf-8")).get("key") == key:
            bus.emit(Message(STAGE, f"Reusing the {len(views.all_names())} views cut before."))
            return views
    except (OSError, ValueError):
        pass
    manifest.unlink(missing_ok=True)
    for d in (image_dir, mask_dir):
        if d.exists():
            shutil.rmtree(d)
    masks = feature_masks(layout, size, focal)
    for k in range(len(layout)):
        (image_dir / views.folder(k)).mkdir(parents=True)
        (mask_dir / views.folder(k)).mkdir(parents=True)
    for i, (_, path) in enumerate(panos):
        with Image.open(path) as im:
            pano = np.asarray(im.convert("RGB"))
        f = views.frames[i]
        for k, R in enumerate(views.rotations):
            Image.fromarray(cut_view(pano, R, size, focal)).save(image_dir / views.view_name(k, f),
                                                                   quality=JPEG_QUALITY)  # fmt: skip
            Image.fromarray(masks[k]).save(mask_dir / (views.view_name(k, f) + ".png"))
        bus.emit(StageProgress(STAGE, i + 1, len(panos), detail="cutting 360 frames into views"))
    write_text_atomic(manifest, json.dumps({"key": key, "frames": views.frames}))
    bus.emit(Message(STAGE, f"Cut {len(panos)} 360 frames into {len(layout)} views each "
                            f"({layout_name}: {size}x{size} px, {layout.fov_deg:g} degrees; none looks "
                            f"more than {-lowest_pitch_deg(layout):.0f} degrees down, where the tripod "
                            "and the operator are)."))  # fmt: skip
    return views


def _key(panos: list[tuple[str, Path]], layout: str, size: int) -> str:
    h = hashlib.sha256(f"{RECIPE}\0{layout}\0{size}\n".encode())
    for name, path in panos:
        st = Path(path).stat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


__all__ = ["CutViews", "cut_panoramas", "feature_masks", "frame_name"]
