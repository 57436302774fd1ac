"""Reference renderer: dense, plain PyTorch, float64-capable. The test oracle.

Every visible Gaussian is evaluated against every pixel ([N, H, W] tensors), so keep scenes small.
The compositing rules are gsplat's (``RasterizeToPixels3DGSFwd.cu``), written as tensor algebra:

1. pixel (row i, column j) has centre ``(j + 0.5, i + 0.5)``;
2. a Gaussian only reaches pixels in the 16x16 tiles its box ``[mean - radius, mean + radius]``
   overlaps, computed as gsplat's ``isect_tiles``: ``floor(mean/16 - radius/16)`` inclusive to
   ``ceil(mean/16 + radius/16)`` exclusive, clamped to the tile grid;
3. ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy`` with ``d = mean2d - pixel centre``;
   ``alpha = min(max_alpha, opacity * exp(-sigma))``; skipped when ``sigma < 0`` or
   ``alpha < 1/255``;
4. Gaussians are composited front to back in (stable) depth order; ``next_T = T (1 - alpha)``;
   once ``next_T <= 1e-4`` that Gaussian and all behind it are dropped (exclusive stop);
5. ``colour = sum alpha T c + T_final * background``; ``alpha_out = 1 - T_final``.

Gradients come from autograd (``torch.clamp`` passes the gradient where ``opacity * exp(-sigma)
<= max_alpha``, as gsplat's backward does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..splats import Splats
from . import (
    ALPHA_THRESHOLD,
    TILE_SIZE,
    TRANSMITTANCE_THRESHOLD,
    RenderOutput,
    RenderSettings,
    View,
)
from .projection import camera_centre, project_splats
from .sh import sh_to_color


def tile_ranges(
    means2d: Tensor, radii: Tensor, width: int, height: int, tile_size: int = TILE_SIZE
) -> tuple[Tensor, Tensor]:
    """gsplat's ``isect_tiles`` box: ``(tile_min [N, 2], tile_max [N, 2])`` int64, max exclusive.

    Gaussians with a zero radius get an empty range.
    """
    tiles_w = (width + tile_size - 1) // tile_size
    tiles_h = (height + tile_size - 1) // tile_size
    t = means2d.detach() / tile_size
    r = radii.to(means2d.dtype) / tile_size
    lo = torch.floor(t - r).long()
    hi = torch.ceil(t + r).long()
    upper = torch.tensor([tiles_w, tiles_h])
    lo = torch.minimum(lo.clamp(min=0), upper)
    hi = torch.minimum(hi.clamp(min=0), upper)
    empty = (radii <= 0).any(dim=-1)
    hi = torch.where(empty[:, None], lo, hi)
    return lo, hi


def rasterize_dense(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    radii: Tensor,  # [N, 2] int
    width: int,
    height: int,
    background: Tensor | None = None,  # [3]
    max_alpha: float = 0.99,
    depths: Tensor | None = None,  # [N]; None: the inputs are already sorted front to back
) -> tuple[Tensor, Tensor]:
    """Composite Gaussians densely; returns ``(image [H, W, 3], alpha [H, W, 1])``."""
    dtype = means2d.dtype
    if background is None:
        background = torch.zeros(3, dtype=dtype)
    background = background.to(dtype)
    idx, weights, T_final = blend_weights(means2d, conics, opacities, radii, width, height,
                                          max_alpha, depths)  # fmt: skip
    if idx.numel() == 0:
        image = background.expand(height, width, 3).clone()
        return image, torch.zeros(height, width, 1, dtype=dtype)

    # Rule 5.
    image = torch.einsum("nhw,nc->hwc", weights, colors[idx]) + T_final[..., None] * background
    return image, (1.0 - T_final)[..., None]


@torch.no_grad()
def splat_weights(splats: Splats, view: View, settings: RenderSettings) -> tuple[Tensor, Tensor]:
    """Each splat's largest and summed blending weight over the pixels of ``view``
    (``(w_max [N], w_sum [N])`` in the splats' dtype; 0 where it reaches no pixel): the oracle of
    :func:`splatkit.render.cpu.splat_weights`."""
    means2d, conics, depths, radii, opacities, _ = project_splats(splats, view, settings)
    idx, weights, _ = blend_weights(means2d, conics, opacities, radii, view.width, view.height,
                                    settings.max_alpha, depths)  # fmt: skip
    w_max = means2d.new_zeros(len(splats))
    w_sum = means2d.new_zeros(len(splats))
    if idx.numel():
        w_max[idx] = weights.flatten(1).max(1).values
        w_sum[idx] = weights.flatten(1).sum(1)
    return w_max, w_sum


def blend_weights(
    means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, width: int, height: int,
    max_alpha: float = 0.99, depths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rules 1-4: ``(idx [n], weights [n, H, W], T_final [H, W])``: the visible Gaussians in
    compositing order, each one's blending weight ``alpha T`` at every pixel (its share of the
    pixel's colour) and the transmittance left behind them all."""
    dtype = means2d.dtype
    visible = (radii > 0).all(dim=-1)
    idx = torch.nonzero(visible).flatten()
    if depths is not None:
        idx = idx[torch.sort(depths.detach()[idx], stable=True).indices]
    if idx.numel() == 0:
        empty = means2d.new_zeros(0, height, width)
        return idx, empty, torch.ones(height, width, dtype=dtype)
    m, q, op = means2d[idx], conics[idx], opacities[idx]

    # Rule 2: tile masks [n, H, W].
    lo, hi = tile_ranges(means2d[idx], radii[idx], width, height)
    tx = torch.arange(width) // TILE_SIZE
    ty = torch.arange(height) // TILE_SIZE
    in_x = (tx[None, :] >= lo[:, None, 0]) & (tx[None, :] < hi[:, None, 0])  # [n, W]
    in_y = (ty[None, :] >= lo[:, None, 1]) & (ty[None, :] < hi[:, None, 1])  # [n, H]
    in_tile = in_y[:, :, None] & in_x[:, None, :]

    # Rules 1 and 3.
    px = torch.arange(width, dtype=dtype) + 0.5
    py = torch.arange(height, dtype=dtype) + 0.5
    dx = m[:, 0, None, None] - px[None, None, :]  # [n, 1, W]
    dy = m[:, 1, None, None] - py[None, :, None]  # [n, H, 1]
    a, b, c = (q[:, k, None, None] for k in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # [n, H, W]
    alpha = torch.clamp(op[:, None, None] * torch.exp(-sigma), max=max_alpha)
    valid = in_tile & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(valid, alpha, torch.zeros_like(alpha))

    # Rule 4: the transmittance after each Gaussian decreases along the depth order, so the
    # Gaussians that pass "next_T > 1e-4" form a prefix; the first failing one and all behind drop.
    with torch.no_grad():
        t_after = torch.cumprod(1.0 - alpha, dim=0)
        keep = t_after > TRANSMITTANCE_THRESHOLD
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    T_after = torch.cumprod(one_minus, dim=0)
    T_before = torch.cat([torch.ones_like(T_after[:1]), T_after[:-1]], dim=0)
    weights = alpha * T_before  # [n, H, W]

    return idx, weights, T_after[-1]


def render(splats: Splats, view: View, settings: RenderSettings) -> RenderOutput:
    """Render ``splats`` from ``view`` in the dtype of ``splats`` (use float64 for an oracle)."""
    dtype = splats.means.dtype
    means2d, conics, depths, radii, opacities, w2c = project_splats(splats, view, settings)
    degree = min(settings.sh_degree, splats.sh_degree)
    dirs = splats.means - camera_centre(w2c)
    colors = sh_to_color(degree, dirs, splats.sh)
    background = torch.tensor(settings.background, dtype=dtype)
    image, alpha = rasterize_dense(
        means2d, conics, colors, opacities, radii, view.width, view.height,
        background=background, max_alpha=settings.max_alpha, depths=depths,
    )  # fmt: skip
    return RenderOutput(image=image, alpha=alpha, means2d=means2d, radii=radii, depths=depths)


def make_test_scene(
    seed: int = 0,
    n: int = 64,
    sh_degree: int = 3,
    width: int = 40,
    height: int = 30,
) -> tuple[Splats, View]:
    """A random float64 scene for the tests: a rotated, off-centre pinhole camera and Gaussians
    in front of it, partly off-screen, some behind the camera or at the near plane, some huge,
    tiny or nearly flat (one axis ~1e-4 of the others)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    fx = 0.9 * width
    K = torch.tensor([[fx, 0, 0.45 * width], [0, 1.05 * fx, 0.55 * height], [0, 0, 1]],
                     dtype=torch.float64)  # fmt: skip
    # Camera: a small rotation about an oblique axis, then a translation.
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -1.0, 0.2], dtype=torch.float64), dim=0)
    ang = 0.2
    Kx = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = torch.eye(3, dtype=torch.float64) + math.sin(ang) * Kx + (1 - math.cos(ang)) * Kx @ Kx
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = R
    w2c[:3, 3] = torch.tensor([0.1, -0.2, 0.3])
    # Camera-space means, then to world.
    z = uni(1.0, 6.0, n)
    xy = uni(-0.8, 0.8, n, 2) * z[:, None]  # slightly wider than the field of view
    mc = torch.cat([xy, z[:, None]], dim=1)
    k = max(n // 16, 1)
    mc[:k, 2] = uni(-3.0, -0.1, k)  # behind the camera
    mc[k : 2 * k, 2] = uni(0.0, 0.03, k)  # around the near plane
    means = (mc - w2c[:3, 3]) @ R  # R^T (mc - t)
    log_scales = uni(-3.5, -1.0, n, 3)
    log_scales[2 * k : 3 * k] = uni(0.5, 1.5, k, 3)  # huge
    log_scales[3 * k : 4 * k] = uni(-8.0, -6.0, k, 3)  # tiny
    log_scales[4 * k : 5 * k, 0] = -11.0  # nearly flat
    quats = rnd(n, 4)
    opacity_logits = 2.0 * rnd(n)
    K_sh = (sh_degree + 1) ** 2
    sh0 = 0.8 * rnd(n, 1, 3)
    shN = 0.3 * rnd(n, K_sh - 1, 3)
    splats = Splats(means, log_scales, quats, opacity_logits, sh0, shN)
    return splats, View(world_to_cam=w2c, K=K, width=width, height=height)
