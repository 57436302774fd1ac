"""Camera clearance: no splat may sit where the photographer stood.

A splat just behind a training camera, or closer to it than the near plane, is outside every
training view that could show it up close: nothing in the loss moves it, yet a held-out or new
view a step along the capture path sees it from a few centimetres, as a veil over the whole
image. On South Building (128 photos walked around a building) two of sixteen held-out photos
lost 8-9 dB to single splats like that, 0.02-0.2 (normalised units) from the nearest training
camera. Nothing real can be there: the camera and the person holding it occupy that space.

So every ``refine_every`` steps, and after the last step, the splats whose centre lies within
``camera_clearance`` times the *camera spacing* (the median distance from a training camera to
its nearest training neighbour) of a training camera centre are removed, unless that camera
sees them: a splat in front of a camera and inside its image is held by that photo's loss at
close range (a close-up subject), while the veils sat beside or behind the cameras near them.
The radius follows the capture: a phone video's frames a hand-width apart give a small radius,
a walk with a photo every few steps a larger one. It never exceeds half the distance from a
camera to its nearest SfM point (the median over the cameras): in a courtyard photographed
from close to its walls (Strecha castle: 16 photos, spacing 0.26, nearest point 0.04) two
spacings would reach the walls, the ground and the corners the other cameras see.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gsplat.strategy.ops import remove
from torch import Tensor

from ..render import View

#: Points (SfM points, splat centres) measured against the cameras at a time (bounds the
#: distance matrix's memory).
POINT_CHUNK = 16384


def camera_spacing(centers: Tensor) -> float:
    """Median distance from each camera centre ``[C, 3]`` to its nearest other centre; 0 for one."""
    if len(centers) < 2:
        return 0.0
    d = torch.cdist(centers.double(), centers.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def clearance_radius(centers: Tensor, points: Tensor, spacings: float) -> float:
    """``spacings`` x :func:`camera_spacing`, at most half the median over the cameras of the
    distance to their nearest point; 0 with fewer than two cameras or no points."""
    if spacings <= 0 or len(centers) < 2 or len(points) == 0:
        return 0.0
    c, p = centers.double(), points.double()
    nearest = torch.full((len(c),), float("inf"), dtype=torch.float64)
    for lo in range(0, len(p), POINT_CHUNK):
        nearest = torch.minimum(nearest, torch.cdist(c, p[lo:lo + POINT_CHUNK]).min(dim=1).values)
    return min(spacings * camera_spacing(c), 0.5 * float(nearest.median()))


def near_cameras(means: Tensor, cameras: Sequence[View], radius: float) -> Tensor:
    """``[N]`` bool: the splats whose centre lies within ``radius`` of a camera centre and
    outside that camera's view (behind it, or in front but outside its image)."""
    out = torch.zeros(len(means), dtype=torch.bool, device=means.device)
    if radius <= 0 or len(cameras) == 0:
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
        hit = torch.zeros(len(cand), dtype=torch.bool, device=means.device)
        for view in cameras:
            hit |= _near_unseen(sub, view, radius)
        out[cand] = hit
    return out


def _near_unseen(means: Tensor, view: View, radius: float) -> Tensor:
    w2c = view.world_to_cam.to(means)
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]  # camera frame: the centre is the origin
    near = cam.norm(dim=1) < radius
    z = cam[:, 2].clamp(min=1e-12)
    k = view.K.to(means)
    u = k[0, 0] * cam[:, 0] / z + k[0, 2]
    v = k[1, 1] * cam[:, 1] / z + k[1, 2]
    seen = (cam[:, 2] > 0) & (u >= 0) & (u < view.width) & (v >= 0) & (v < view.height)
    return near & ~seen


@torch.no_grad()
def clear_cameras(params, optimizers, state: dict, cameras: Sequence[View], radius: float) -> int:
    """Remove the splats :func:`near_cameras` marks (parameters, Adam moments and the strategy's
    per-splat state together); returns how many were removed."""
    mask = near_cameras(params["means"].detach(), cameras, radius)
    n = int(mask.sum())
    if n:
        remove(params=params, optimizers=optimizers, state=state, mask=mask)
    return n
