"""Camera clearance: no splat may sit where the photographer stood.

A splat just behind a training camera, or closer to it than the near plane, is outside every
training view that could show it up close: nothing in the loss moves it, yet a held-out or new
view a step along the capture path sees it from a few centimetres, as a veil over the whole
image. On South Building (128 photos walked around a building) two of sixteen held-out photos
lost 8-9 dB to single splats like that, 0.02-0.08 (normalised units) from the nearest training
camera. Nothing real can be there: the camera and the person holding it occupy that space.

So every ``refine_every`` steps, and after the last step, the splats whose centre lies within
``camera_clearance`` times the *camera spacing* (the median distance from a training camera to
its nearest training neighbour) of any training camera centre are removed. The radius follows
the capture: a phone video's frames a hand-width apart give a small radius, a walk with a photo
every few steps a larger one.
"""

from __future__ import annotations

import torch
from gsplat.strategy.ops import remove
from torch import Tensor

#: Splats checked against the cameras at a time (bounds the distance matrix's memory).
CHUNK = 65536


def camera_spacing(centers: Tensor) -> float:
    """Median distance from each camera centre ``[C, 3]`` to its nearest other centre; 0 for one."""
    if len(centers) < 2:
        return 0.0
    d = torch.cdist(centers.double(), centers.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def near_cameras(means: Tensor, centers: Tensor, radius: float) -> Tensor:
    """``[N]`` bool: the splats whose centre lies within ``radius`` of any camera centre."""
    out = torch.zeros(len(means), dtype=torch.bool, device=means.device)
    if radius <= 0 or len(centers) == 0:
        return out
    c = centers.to(means)
    for lo in range(0, len(means), CHUNK):
        out[lo:lo + CHUNK] = torch.cdist(means[lo:lo + CHUNK], c).min(dim=1).values < radius
    return out


@torch.no_grad()
def clear_cameras(params, optimizers, state: dict, centers: Tensor, radius: float) -> int:
    """Remove the splats within ``radius`` of a camera centre (parameters, Adam moments and the
    strategy's per-splat state together); returns how many were removed."""
    mask = near_cameras(params["means"], centers, radius)
    n = int(mask.sum())
    if n:
        remove(params=params, optimizers=optimizers, state=state, mask=mask)
    return n
