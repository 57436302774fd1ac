"""Which photos share a camera: COLMAP's rule, EXIF make, model, focal length and image size.

Photos that agree on all four were taken with the same camera body and zoom setting, so they share
one set of intrinsics (focal length, lens distortion), which SfM then estimates from all of them.
Photos without EXIF share one camera per image size (a folder of video frames, or photos whose
EXIF was stripped: almost always one camera). Different sizes are always different cameras.
Forcing photos of different cameras (or zoom settings) into one camera gives wrong poses.

With ``SfmConfig.single_camera`` off every photo gets its own camera.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import pycolmap

from ..ingest import Photo, PhotoSet


@dataclass
class CameraGroup:
    """Photos that share one camera, and the EXIF facts they share."""

    width: int
    height: int
    make: str = ""
    model: str = ""
    focal_mm: float | None = None  # EXIF focal length
    names: list[str] = field(default_factory=list)
    #: EXIF focal lengths of the photos in working-copy pixels (a prior for SfM)
    focal_px: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Plain words, e.g. ``Panasonic DMC-TZ3 at 6.3 mm, 1536x1152``."""
        who = " ".join(s for s in (self.make, self.model) if s) or "camera without EXIF"
        at = f" at {self.focal_mm:g} mm" if self.focal_mm else ""
        return f"{who}{at}, {self.width}x{self.height}"

    @property
    def prior_focal_px(self) -> float | None:
        return statistics.median(self.focal_px) if self.focal_px else None


def _key(p: Photo) -> tuple:
    """COLMAP's: make, model, focal length (35 mm equivalent when known, else in mm), size."""
    focal = p.focal_35mm or p.focal_mm
    return (p.make, p.model, round(focal, 2) if focal else None, p.width, p.height)


def camera_groups(photos: PhotoSet, single_camera: bool = True) -> list[CameraGroup]:
    """The photos grouped into cameras (see the module doc), largest group first."""
    groups: dict[tuple, CameraGroup] = {}
    for p in photos.photos:
        key = _key(p) if single_camera else (p.name,)
        g = groups.get(key)
        if g is None:
            g = groups[key] = CameraGroup(
                width=p.width, height=p.height, make=p.make, model=p.model, focal_mm=p.focal_mm
            )
        g.names.append(p.name)
        if p.focal_px:
            g.focal_px.append(p.focal_px)
    return sorted(groups.values(), key=lambda g: (-len(g.names), g.names[0]))


def reader_options(group: CameraGroup, camera_model: str) -> pycolmap.ImageReaderOptions:
    """COLMAP's image reader for one group: the camera model, seeded with the EXIF focal length."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    f = group.prior_focal_px
    if f:
        cx, cy = group.width / 2, group.height / 2
        if camera_model == "SIMPLE_RADIAL":
            reader.camera_params = f"{f:.6g},{cx:.6g},{cy:.6g},0"
        else:
            reader.camera_params = f"{f:.6g},{f:.6g},{cx:.6g},{cy:.6g},0,0,0,0"
    return reader


def describe(groups: list[CameraGroup], limit: int = 4) -> str:
    """One line naming the cameras found, for a message (only asked for when there are several)."""
    shown = [f"{g.label} ({len(g.names)} photos)" for g in groups[:limit]]
    more = f" and {len(groups) - limit} more" if len(groups) > limit else ""
    return (
        f"The photos come from {len(groups)} cameras or zoom settings (by their EXIF make, model, "
        f"focal length and size): {'; '.join(shown)}{more}. Each is calibrated on its own."
    )


__all__ = ["CameraGroup", "camera_groups", "reader_options", "describe"]
