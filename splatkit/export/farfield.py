"""The far field: splats that stand for the sky and the distant background, not for the place.

Trained on photos taken from a small region, the sky and the far background end up in a
handful of huge blobs far away (on the shared sets: 16 m wide, up to 2.4 km from a facade).
They are no use as splats in a level (each one placed as geometry, 50-145 camera extents wide)
and they make a tiling or a fixed-point format span kilometres. So the export keeps the *near
field* and leaves the far field to the sky.

Rule (one place; the export, the benchmarks and the sky model use it): with ``E`` the
:func:`camera_extent` (the diameter of the training cameras' centres), a splat is far field when

- it is *larger* than ``E``: its 3-sigma diameter ``6 max(scale)`` exceeds ``E``; or
- it is *farther* than :data:`FAR_FACTOR` ``x E`` from every training camera.

Both tests are ratios of lengths, so they hold in any frame that is a similarity of the
training one (the SfM world, the upright metres of the export).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from splatkit.splats import Splats

#: A splat farther than this many camera extents from every training camera is far field.
FAR_FACTOR = 10.0
#: Splat centres measured against the cameras at a time (bounds the distance matrix).
_CHUNK = 65536


def camera_extent(centers: Tensor, points: Tensor | None = None) -> float:
    """The diameter of the camera centres ``[C, 3]`` (largest distance between two of them).

    A capture from (nearly) one spot has no diameter to speak of: the extent is then at least
    the median distance from the cameras' centroid to the SfM ``points`` (the scene's depth),
    or 1 unit with neither.
    """
    c = centers.double()
    diam = float(torch.cdist(c, c).max()) if len(c) > 1 else 0.0
    floor = 0.0
    if points is not None and len(points):
        floor = float((points.double() - c.mean(0)).norm(dim=1).median()) if len(c) else 0.0
    extent = max(diam, floor)
    return extent if extent > 0 else 1.0


def splat_size(s: Splats) -> Tensor:
    """The 3-sigma diameter of each splat along its longest axis: ``6 max(scale)``."""
    return 6.0 * s.log_scales.double().max(1).values.exp()


def camera_distance(means: Tensor, centers: Tensor) -> Tensor:
    """Distance ``[N]`` from each splat centre to the nearest camera centre."""
    c = centers.double().to(means.device)
    if len(c) == 0:
        return torch.full((len(means),), float("inf"), dtype=torch.float64)
    if len(means) == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([torch.cdist(means[lo:lo + _CHUNK].double(), c).min(1).values
                      for lo in range(0, len(means), _CHUNK)])  # fmt: skip


@dataclass
class FarField:
    """The classification of a set of splats: which are far field, and why."""

    mask: Tensor  # [N] bool: far field
    larger: Tensor  # [N] bool: larger than the camera extent
    farther: Tensor  # [N] bool: farther than FAR_FACTOR x the extent from every camera
    extent: float  # the camera extent, in the splats' units

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def as_dict(self) -> dict:
        return {"far_field": self.count, "larger_than_extent": int(self.larger.sum()),
                "beyond_far_factor": int(self.farther.sum()), "camera_extent": self.extent,
                "far_factor": FAR_FACTOR}  # fmt: skip


def classify(splats: Splats, centers: Tensor, points: Tensor | None = None) -> FarField:
    """:class:`FarField` of ``splats`` against the training camera centres ``[C, 3]`` (same frame)."""
    extent = camera_extent(centers, points)
    larger = splat_size(splats) > extent
    farther = camera_distance(splats.means, centers) > FAR_FACTOR * extent
    return FarField(larger | farther, larger, farther, extent)


def far_field_mask(splats: Splats, cameras, points: Tensor | None = None) -> Tensor:
    """``[N]`` bool: the splats larger than the camera extent or farther than
    :data:`FAR_FACTOR` times it from every camera. ``cameras``: a :class:`splatkit.scene.Cameras`
    (its ``centers``) or the centres ``[C, 3]`` themselves."""
    centers = cameras if isinstance(cameras, Tensor) else cameras.centers
    return classify(splats, centers, points).mask


def message(ff: FarField, units: str = "m", sky: bool = False) -> str:
    """The one line the export says about the far field it left out."""
    where = "went to the sky panorama" if sky else "dropped (they are sky and far background)"
    return (f"{ff.count:,} far splats {where}: {int(ff.larger.sum()):,} larger than the cameras' "
            f"extent ({ff.extent:.3g} {units}), {int(ff.farther.sum()):,} farther than "
            f"{FAR_FACTOR:g}x it; --far-field keep keeps them")
