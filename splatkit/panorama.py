"""The equirectangular (latitude-longitude) panorama convention: directions <-> image.

One convention for every panorama splatkit reads or writes (the sky learned in training,
:mod:`splatkit.train.sky`, and the sky the Unreal export writes):

- directions are given in a frame with **+X forward, +Z up**; the third axis is +Y *left* in a
  right-handed frame (splatkit's ``upright`` frame, a training sky's own frame) or +Y *right*
  in Unreal's left-handed one: the same physical directions, so one image serves both, with
  the longitude written for each (:func:`direction_to_uv` takes ``y_right``);
- longitude ``lon = atan2(y_right, x)``: 0 forward, +90 degrees to the right (Unreal's yaw);
  latitude ``lat = asin(z)``: +90 degrees straight up;
- image coordinates ``u = 0.5 + lon / (2 pi)`` (left to right, wrapping at the back),
  ``v = 0.5 - lat / pi`` (top row = up), both in [0, 1]; texel (row i, column j) of a
  ``W x H`` image has its centre at ``((j + 0.5) / W, (i + 0.5) / H)``.

So the image's centre column looks forward, and reading it from left to right turns right, as
a viewer inside the sphere sees it: the usual layout of HDRI panoramas, and the image layout of
the 360-degree photos splatkit reads (:mod:`splatkit.pano.equirect`, whose rays are in OpenCV
axes). The change of axes upright -> Unreal for directions is
:func:`splatkit.frames.upright_to_ue_directions`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def direction_to_uv(d: Tensor, y_right: bool = False) -> tuple[Tensor, Tensor]:
    """Unit directions ``[..., 3]`` -> ``(u, v)`` in [0, 1] (see the module docstring).

    ``y_right``: the directions are in Unreal's axes (+Y right); default: +Y left (upright).
    """
    x, y, z = d.unbind(-1)
    right = y if y_right else -y
    u = 0.5 + torch.atan2(right, x) / (2 * math.pi)
    v = 0.5 - torch.asin(z.clamp(-1.0, 1.0)) / math.pi
    return u, v


def uv_to_direction(u: Tensor, v: Tensor, y_right: bool = False) -> Tensor:
    """``(u, v)`` -> unit directions ``[..., 3]``, the inverse of :func:`direction_to_uv`."""
    lon = (u - 0.5) * (2 * math.pi)
    lat = (0.5 - v) * math.pi
    right = torch.cos(lat) * torch.sin(lon)
    return torch.stack([torch.cos(lat) * torch.cos(lon), right if y_right else -right,
                        torch.sin(lat)], dim=-1)  # fmt: skip


def texel_directions(width: int, height: int, y_right: bool = False,
                     dtype: torch.dtype = torch.float64) -> Tensor:  # fmt: skip
    """The directions ``[H, W, 3]`` of a ``width x height`` panorama's texel centres."""
    u = (torch.arange(width, dtype=dtype) + 0.5) / width
    v = (torch.arange(height, dtype=dtype) + 0.5) / height
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return uv_to_direction(uu, vv, y_right)


def bilinear_taps(height: int, width: int, d: Tensor, y_right: bool = False) -> tuple[Tensor, Tensor]:
    """The four texels a bilinear sample at directions ``d [..., 3]`` reads: flat indices
    ``[..., 4]`` (row * width + column) and weights ``[..., 4]`` (summing to 1).

    Longitude wraps (the first and last columns are neighbours: no seam at the back); latitude
    clamps at the centres of the top and bottom rows.
    """
    u, v = direction_to_uv(d, y_right)
    x = u * width - 0.5
    y = (v * height - 0.5).clamp(0.0, height - 1.0)
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = x - x0f, y - y0f
    x0 = x0f.long() % width
    x1 = (x0 + 1) % width
    y0 = y0f.long().clamp(0, height - 1)
    y1 = (y0 + 1).clamp(max=height - 1)
    idx = torch.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], -1)
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    return idx, wts


def sample(image: Tensor, d: Tensor, y_right: bool = False) -> Tensor:
    """Bilinear sample of ``image [H, W, C]`` at directions ``d [..., 3]`` -> ``[..., C]``
    (:func:`bilinear_taps`). Differentiable in ``image``; any float dtype (float64 for
    gradchecks)."""
    h, w = image.shape[:2]
    return gather(image, *bilinear_taps(h, w, d.to(image.dtype), y_right))


def gather(image: Tensor, idx: Tensor, wts: Tensor) -> Tensor:
    """``sum_k wts[..., k] * image[idx[..., k]]`` for taps from :func:`bilinear_taps`."""
    h, w = image.shape[:2]
    texels = image.reshape(h * w, -1)[idx.reshape(-1)].reshape(*idx.shape, -1)
    return (texels * wts[..., None]).sum(-2)
