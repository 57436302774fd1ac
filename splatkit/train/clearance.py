"""Camera clearance: no splat may sit where the photographer stood.

A splat just behind a training camera, or closer to it than the near plane, is outside every
training view that could show it up close: far views see it as a small blob at the depth of
the scene, the cameras beside it do not see it at all, so nothing in the loss moves it, yet a
held-out or new view a step along the capture path sees it from a few centimetres, as a veil
over the whole image. On South Building (128 photos walked around a building) held-out photos
lost 3-9 dB to single splats like that, 0.02-0.2 (normalised units) from the nearest training
camera and seen by the other cameras only from 0.8 and farther. Nothing real can be there: the
camera and the person holding it occupy that space.

So every ``refine_every`` steps, and after the last step, a splat is removed when, for some
training camera,

- its centre lies within ``camera_clearance`` times the *camera spacing* (the median distance
  from a training camera to its nearest training neighbour) of the camera centre: the radius
  follows the capture (a phone video's frames a hand-width apart, a walk with a photo every
  few steps);
- that camera does not see it (behind, or in front but outside its image): a splat a camera
  sees is held by that photo's loss at close range (a close-up subject);
- and it is nearer to that camera than to every SfM point: the space around a camera that is
  closer to it than to any reconstructed surface is free space. The ground under the cameras
  and a wall behind one (Strecha castle: cameras 0.04 from the nearest point, spacing 0.26)
  have SfM points beside their splats, the veils had none (South Building: 0.08 from a camera,
  0.09-0.11 from the nearest point).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gsplat.strategy.ops import remove
from scipy.spatial import cKDTree
from torch import Tensor

from ..render import View

#: Splat centres measured against the cameras at a time (bounds the distance matrix's memory).
POINT_CHUNK = 16384


def camera_spacing(centers: Tensor) -> float:
    """Median distance from each camera centre ``[C, 3]`` to its nearest other centre; 0 for one."""
    if len(centers) < 2:
        return 0.0
    d = torch.cdist(centers.double(), centers.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def clearance_radius(centers: Tensor, spacings: float) -> float:
    """``spacings`` x :func:`camera_spacing`; 0 with fewer than two cameras."""
    return spacings * camera_spacing(centers) if spacings > 0 else 0.0


def point_index(points: Tensor) -> cKDTree | None:
    """A k-d tree of the SfM points ``[P, 3]`` (in the cameras' world frame) for :func:`near_cameras`;
    None without points (then no splat counts as nearer to a camera than to a surface)."""
    return cKDTree(points.detach().double().cpu().numpy()) if len(points) else None


def near_cameras(means: Tensor, cameras: Sequence[View], radius: float,
                 points: cKDTree | None) -> Tensor:  # fmt: skip
    """``[N]`` bool: the splats within ``radius`` of a camera centre, outside that camera's view
    and nearer to that camera than to every SfM point in ``points``."""
    out = torch.zeros(len(means), dtype=torch.bool, device=means.device)
    if radius <= 0 or len(cameras) == 0 or points is None:
        return out
    # Candidates first (one distance matrix, chunked): the view test then runs on the few splats
    # near some camera instead of every splat once per camera. The margin keeps the exact
    # decision to the test in the camera's frame.
    w2c = torch.stack([v.world_to_cam for v in cameras]).to(means)
    centers = -(w2c[:, :3, :3].transpose(1, 2) @ w2c[:, :3, 3:])[..., 0]
    cand = torch.cat([(torch.cdist(means[lo:lo + POINT_CHUNK], centers) < radius * (1 + 1e-6)).any(1)
                      for lo in range(0, len(means), POINT_CHUNK)]).nonzero().flatten()
    if len(cand):
        sub = means[cand]
        # Distance to the nearest camera that does not see the splat, within the radius.
        unseen = torch.full((len(cand),), float("inf"), dtype=sub.dtype, device=sub.device)
        for view in cameras:
            dist, seen = _distance_and_seen(sub, view)
            unseen = torch.where((dist < radius) & ~seen, torch.minimum(unseen, dist), unseen)
        to_point, _ = points.query(sub.detach().double().cpu().numpy())
        out[cand] = unseen < torch.from_numpy(np.asarray(to_point)).to(unseen)
    return out


def _distance_and_seen(means: Tensor, view: View) -> tuple[Tensor, Tensor]:
    """Distance to the camera centre, and whether the centre projects into the image."""
    w2c = view.world_to_cam.to(means)
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]  # camera frame: the centre is the origin
    z = cam[:, 2].clamp(min=1e-12)
    k = view.K.to(means)
    u = k[0, 0] * cam[:, 0] / z + k[0, 2]
    v = k[1, 1] * cam[:, 1] / z + k[1, 2]
    seen = (cam[:, 2] > 0) & (u >= 0) & (u < view.width) & (v >= 0) & (v < view.height)
    return cam.norm(dim=1), seen


@torch.no_grad()
def clear_cameras(params, optimizers, state: dict, cameras: Sequence[View], radius: float,
                  points: cKDTree | None) -> int:  # fmt: skip
    """Remove the splats :func:`near_cameras` marks (parameters, Adam moments and the strategy's
    per-splat state together); returns how many were removed."""
    mask = near_cameras(params["means"].detach(), cameras, radius, points)
    n = int(mask.sum())
    if n:
        remove(params=params, optimizers=optimizers, state=state, mask=mask)
    return n
