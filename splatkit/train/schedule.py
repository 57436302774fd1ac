"""Coarse-to-fine training resolution (the resolution schedule of DashGaussian, Chen et al. 2025).

Early steps fit the low frequencies of the scene, which a reduced image shows as well as the
full one, for a fraction of the cost per step (the CPU step time follows the pixel count). The
image side grows geometrically from ``coarse_start_scale`` of the training resolution to all of
it over the first ``coarse_to_fine`` fraction of the steps; the rest of the run, and every
evaluation, use the full training resolution.

The reduced view and photo are made at the call site from what the loop holds
(:func:`view_at_step`): the photo is resized with an antialiased bilinear filter (pixel centres
aligned, ``align_corners=False``) and the intrinsics are scaled per axis by the same factors,
so the splats see the same scene. Resized photos are cached (a few dozen, small).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..config import TrainConfig
from ..render import View

#: Smallest image side the schedule goes down to (pixels).
MIN_SIDE = 32
_CACHE: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
_CACHE_SIZE = 256


def scale_at(cfg: TrainConfig, step: int) -> float:
    """Image side at ``step`` as a fraction of the training resolution (1: full)."""
    end = cfg.coarse_to_fine * cfg.steps
    if cfg.coarse_to_fine <= 0 or step >= end:
        return 1.0
    return float(cfg.coarse_start_scale ** (1.0 - step / end))


def view_at_step(cfg: TrainConfig, step: int, view: View, image: Tensor) -> tuple[View, Tensor]:
    """The view and photo to train on at ``step`` (``view`` and ``image`` themselves at full
    resolution)."""
    s = max(scale_at(cfg, step), MIN_SIDE / min(view.width, view.height))
    width, height = round(view.width * s), round(view.height * s)
    if s >= 1.0 or width >= view.width or height >= view.height:
        return view, image
    key = (id(image), width, height)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not image:  # (an id can be reused once its tensor is gone)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        hit = _CACHE[key] = (image, resize_image(image, width, height))
    return scale_view(view, width, height), hit[1]


def scale_view(view: View, width: int, height: int) -> View:
    """``view`` for its image resized to ``width x height`` (intrinsics scaled per axis)."""
    K = view.K.clone()
    K[0, :] *= width / view.width
    K[1, :] *= height / view.height
    return View(world_to_cam=view.world_to_cam, K=K, width=width, height=height)


def resize_image(image: Tensor, width: int, height: int) -> Tensor:
    """``[H, W, C]`` photo resized with an antialiased bilinear filter (same dtype)."""
    x = image.permute(2, 0, 1)[None]
    dtype = x.dtype
    if not dtype.is_floating_point:
        x = x.float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    if not dtype.is_floating_point:
        y = y.round().clamp(0, 255)
    return y[0].permute(1, 2, 0).to(dtype).contiguous()
