"""What the export keeps: valid splats that the training cameras see, the most visible ones.

- :func:`finite_mask`: no NaN/Inf, non-zero quaternion; near-transparent splats (opacity < 1/255)
  are dropped too (:func:`clean_mask`);
- :func:`seen_mask`: the default crop: a splat is kept when some training camera sees it (its
  centre, widened by three of its sigmas, falls inside the image, in front of the camera).
  Sky and distant background that the photos show are kept;
- :func:`background_mask`: the option to drop the far background: splats farther than a
  distance (metres) from every training camera;
- :func:`budget`: the ``max_splats`` most important ones (opacity x volume^(2/3)).

Each step reports what it dropped (:class:`CropReport`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from splatkit.scene import Cameras
from splatkit.splats import Splats

#: Splats per block when testing them against the cameras.
BLOCK = 1 << 16


@dataclass
class CropReport:
    """Counts of what each step dropped, and plain-words lines for the user."""

    counts: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    #: :meth:`splatkit.export.farfield.FarField.as_dict` of the far field left out (None: kept)
    far_field: dict | None = None

    def add(self, key: str, n: int, total: int, why: str) -> None:
        self.counts[key] = n
        if n:
            self.lines.append(f"dropped {n:,} of {total:,} splats ({100 * n / max(total, 1):.1f}%): {why}")


def finite_mask(s: Splats) -> Tensor:
    """Rows with no NaN/Inf in any attribute and a non-zero quaternion."""
    m = torch.isfinite(s.means).all(1) & torch.isfinite(s.log_scales).all(1)
    m &= torch.isfinite(s.quats).all(1) & (s.quats.norm(dim=1) > 0)
    m &= torch.isfinite(s.opacity_logits) & torch.isfinite(s.sh0).all((1, 2))
    return m & torch.isfinite(s.shN).flatten(1).all(1)


def clean_mask(s: Splats) -> Tensor:
    """Finite and visible (opacity >= 1/255)."""
    return finite_mask(s) & (s.opacity_logits >= math.log(1 / 254))


def seen_mask(means: Tensor, log_scales: Tensor, cameras: Cameras, margin: float = 3.0) -> Tensor:
    """True where some camera sees the splat: its centre in front of the camera and inside the
    image widened by ``margin`` sigmas (the splat's largest scale, projected)."""
    out = torch.zeros(len(means), dtype=torch.bool)
    w2c = cameras.world_to_cam.float()
    K = cameras.K.float()
    W, H = cameras.width.float(), cameras.height.float()
    for i in range(0, len(means), BLOCK):
        x = means[i : i + BLOCK].float()
        sig = margin * log_scales[i : i + BLOCK].float().max(1).values.exp()
        seen = torch.zeros(len(x), dtype=torch.bool)
        for c in range(len(cameras)):
            p = x @ w2c[c, :3, :3].T + w2c[c, :3, 3]
            z = p[:, 2]
            front = z > 1e-6
            zc = z.clamp(min=1e-6)
            u = K[c, 0, 0] * p[:, 0] / zc + K[c, 0, 2]
            v = K[c, 1, 1] * p[:, 1] / zc + K[c, 1, 2]
            r = K[c, 0, 0] * sig / zc
            seen |= front & (u > -r) & (u < W[c] + r) & (v > -r) & (v < H[c] + r)
        out[i : i + BLOCK] = seen
    return out


def nearest_camera_distance(means: Tensor, centers: Tensor) -> Tensor:
    """Distance from each point to the nearest camera centre (blocked)."""
    out = torch.empty(len(means), dtype=torch.float32)
    c = centers.float()
    for i in range(0, len(means), BLOCK):
        out[i : i + BLOCK] = torch.cdist(means[i : i + BLOCK].float(), c).min(1).values
    return out


def background_mask(means: Tensor, centers: Tensor, distance: float) -> Tensor:
    """True for splats within ``distance`` of some camera (``distance`` <= 0: all)."""
    if distance <= 0 or len(centers) == 0:
        return torch.ones(len(means), dtype=torch.bool)
    return nearest_camera_distance(means, centers) <= distance


def importance(s: Splats) -> Tensor:
    """opacity x volume^(2/3) (an area-like measure of how much a splat shows)."""
    return s.opacities * torch.exp(s.log_scales.sum(1) * (2.0 / 3.0))


def budget(s: Splats, max_splats: int | None) -> Splats:
    """The ``max_splats`` most important splats (all of them if None or already fewer)."""
    if max_splats is None or len(s) <= max_splats:
        return s
    idx = importance(s).topk(int(max_splats)).indices.sort().values
    return s.index(idx)
