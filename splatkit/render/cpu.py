"""Fast CPU backend: PyTorch projection + SH (autograd) and a numba tile rasterizer.

The rasterizer follows gsplat's tile algorithm (``RasterizeToPixels3DGS{Fwd,Bwd}.cu``):

1. binning: each visible Gaussian goes to the 16x16 tiles its ``[mean - radius, mean + radius]``
   box overlaps (gsplat's ``isect_tiles``); Gaussians are first sorted by depth (stable), then
   counting-sorted by tile (stable), so every tile's list is in depth order;
2. forward: one task per tile; each pixel composites its tile's list front to back (the rules of
   ``reference.py``) and stores its final transmittance and how many list entries it used;
3. backward: each pixel walks its list back to front, recovering T by dividing by (1 - alpha) as
   gsplat does, and adds its gradient contributions to a per-*intersection* buffer (a tile is
   processed by one thread, so there are no races); per-Gaussian gradients are then summed over
   that Gaussian's intersections in a fixed order. The result is bitwise deterministic whatever
   the thread count or scheduling.

Inside the kernels all arithmetic is float64 (free on a CPU's scalar units); inputs and outputs
are float32. ``fastmath=False`` keeps the forward and backward decisions (skip, stop) identical.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange
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
from .projection import camera_centre, project, quat_scale_to_covar
from .sh import sh_to_color

#: Columns of the per-intersection gradient buffer.
_G_XY, _G_CONIC, _G_RGB, _G_OPAC, _G_ABS, _G_COLS = 0, 2, 5, 8, 9, 11
#: A Gaussian is skipped without evaluating exp() once sigma exceeds log(opacity * 255) + this
#: margin; within the margin the exact alpha test decides, so the rule stays exact.
_SIGMA_MARGIN = 1e-6


# ----------------------------------------------------------------------------- binning


@njit(parallel=True, cache=True)
def _tile_boxes(order, means2d, radii, tiles_w, tiles_h, tile_size):
    """Tile box [x0, x1) x [y0, y1) of each Gaussian in ``order`` (gsplat's isect_tiles)."""
    n = order.shape[0]
    boxes = np.empty((n, 4), dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    for k in prange(n):
        g = order[k]
        tx = np.float32(means2d[g, 0]) / np.float32(tile_size)
        ty = np.float32(means2d[g, 1]) / np.float32(tile_size)
        rx = np.float32(radii[g, 0]) / np.float32(tile_size)
        ry = np.float32(radii[g, 1]) / np.float32(tile_size)
        x0 = min(max(0, int(math.floor(tx - rx))), tiles_w)
        y0 = min(max(0, int(math.floor(ty - ry))), tiles_h)
        x1 = min(max(0, int(math.ceil(tx + rx))), tiles_w)
        y1 = min(max(0, int(math.ceil(ty + ry))), tiles_h)
        boxes[k, 0] = x0
        boxes[k, 1] = x1
        boxes[k, 2] = y0
        boxes[k, 3] = y1
        counts[k] = (x1 - x0) * (y1 - y0)
    return boxes, counts


@njit(cache=True)
def _bin(order, boxes, counts, n_tiles, tiles_w):
    """Stable counting sort of the intersections by tile.

    Returns ``tile_offsets [n_tiles + 1]``, ``tile_gauss [n_isects]`` (Gaussian ids, each tile's
    run in depth order), ``g_offsets [n + 1]`` (intersections of ``order[k]`` are
    ``g_offsets[k]:g_offsets[k + 1]`` in Gaussian-major order) and ``perm`` (Gaussian-major
    position -> tile-major position).
    """
    n = order.shape[0]
    g_offsets = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        g_offsets[k + 1] = g_offsets[k] + counts[k]
    n_isects = g_offsets[n]
    tile_counts = np.zeros(n_tiles + 1, dtype=np.int64)
    for k in range(n):
        for ty in range(boxes[k, 2], boxes[k, 3]):
            for tx in range(boxes[k, 0], boxes[k, 1]):
                tile_counts[ty * tiles_w + tx + 1] += 1
    tile_offsets = np.cumsum(tile_counts)
    cursor = tile_offsets[:-1].copy()
    tile_gauss = np.empty(n_isects, dtype=np.int32)
    perm = np.empty(n_isects, dtype=np.int64)
    p = 0
    for k in range(n):
        g = order[k]
        for ty in range(boxes[k, 2], boxes[k, 3]):
            for tx in range(boxes[k, 0], boxes[k, 1]):
                t = ty * tiles_w + tx
                q = cursor[t]
                cursor[t] = q + 1
                tile_gauss[q] = g
                perm[p] = q
                p += 1
    return tile_offsets, tile_gauss, g_offsets, perm


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def _load_tile(start, end, tile_gauss, means2d, conics, colors, opacities):
    m = end - start
    p = np.empty((m, 10), dtype=np.float64)  # x, y, a, b, c, opacity, sigma_max, r, g, b
    for k in range(m):
        g = tile_gauss[start + k]
        p[k, 0] = means2d[g, 0]
        p[k, 1] = means2d[g, 1]
        p[k, 2] = conics[g, 0]
        p[k, 3] = conics[g, 1]
        p[k, 4] = conics[g, 2]
        op = np.float64(opacities[g])
        p[k, 5] = op
        p[k, 6] = math.log(op / ALPHA_THRESHOLD) + _SIGMA_MARGIN if op > 0 else -1.0
        p[k, 7] = colors[g, 0]
        p[k, 8] = colors[g, 1]
        p[k, 9] = colors[g, 2]
    return p


@njit(parallel=True, cache=True)
def _forward(tile_offsets, tile_gauss, means2d, conics, colors, opacities, background,
             width, height, tiles_w, max_alpha):  # fmt: skip
    n_tiles = tile_offsets.shape[0] - 1
    image = np.empty((height, width, 3), dtype=np.float32)
    t_final = np.empty((height, width), dtype=np.float64)
    n_used = np.empty((height, width), dtype=np.int32)
    # (No whole-array expressions such as np.zeros in parallel kernels: numba would turn them
    # into parallel loops, scheduled one element at a time under chunk size 1.)
    for t in prange(n_tiles):
        start = tile_offsets[t]
        m = tile_offsets[t + 1] - start
        p = _load_tile(start, start + m, tile_gauss, means2d, conics, colors, opacities)
        i0 = (t // tiles_w) * TILE_SIZE
        j0 = (t % tiles_w) * TILE_SIZE
        for i in range(i0, min(i0 + TILE_SIZE, height)):
            py = i + 0.5
            for j in range(j0, min(j0 + TILE_SIZE, width)):
                px = j + 0.5
                T = 1.0
                r = 0.0
                gr = 0.0
                b = 0.0
                last = 0
                for k in range(m):
                    dx = p[k, 0] - px
                    dy = p[k, 1] - py
                    sigma = 0.5 * (p[k, 2] * dx * dx + p[k, 4] * dy * dy) + p[k, 3] * dx * dy
                    if sigma < 0.0 or sigma > p[k, 6]:
                        continue
                    alpha = min(max_alpha, p[k, 5] * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_t = T * (1.0 - alpha)
                    if next_t <= TRANSMITTANCE_THRESHOLD:
                        break
                    w = alpha * T
                    r += w * p[k, 7]
                    gr += w * p[k, 8]
                    b += w * p[k, 9]
                    T = next_t
                    last = k + 1
                image[i, j, 0] = r + T * background[0]
                image[i, j, 1] = gr + T * background[1]
                image[i, j, 2] = b + T * background[2]
                t_final[i, j] = T
                n_used[i, j] = last
    return image, t_final, n_used


@njit(parallel=True, cache=True)
def _backward(tile_offsets, tile_gauss, means2d, conics, colors, opacities, background,
              width, height, tiles_w, max_alpha, t_final, n_used, v_image, v_alpha):  # fmt: skip
    """Per-intersection gradients ``[n_isects, 11]`` (tile-major order)."""
    n_tiles = tile_offsets.shape[0] - 1
    grads = np.empty((tile_gauss.shape[0], _G_COLS), dtype=np.float64)
    for t in prange(n_tiles):
        start = tile_offsets[t]
        m = tile_offsets[t + 1] - start
        if m == 0:
            continue
        p = _load_tile(start, start + m, tile_gauss, means2d, conics, colors, opacities)
        g = grads[start : start + m]
        for k in range(m):
            for c in range(_G_COLS):
                g[k, c] = 0.0
        i0 = (t // tiles_w) * TILE_SIZE
        j0 = (t % tiles_w) * TILE_SIZE
        for i in range(i0, min(i0 + TILE_SIZE, height)):
            py = i + 0.5
            for j in range(j0, min(j0 + TILE_SIZE, width)):
                px = j + 0.5
                T_fin = t_final[i, j]
                T = T_fin
                vr = np.float64(v_image[i, j, 0])
                vg = np.float64(v_image[i, j, 1])
                vb = np.float64(v_image[i, j, 2])
                va = np.float64(v_alpha[i, j])
                v_bg = background[0] * vr + background[1] * vg + background[2] * vb
                buf_r = 0.0
                buf_g = 0.0
                buf_b = 0.0
                for k in range(n_used[i, j] - 1, -1, -1):
                    dx = p[k, 0] - px
                    dy = p[k, 1] - py
                    ca = p[k, 2]
                    cb = p[k, 3]
                    cc = p[k, 4]
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > p[k, 6]:
                        continue
                    vis = math.exp(-sigma)
                    raw = p[k, 5] * vis
                    alpha = min(max_alpha, raw)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    T *= ra
                    fac = alpha * T
                    g[k, _G_RGB] += fac * vr
                    g[k, _G_RGB + 1] += fac * vg
                    g[k, _G_RGB + 2] += fac * vb
                    v_a = (
                        (p[k, 7] * T - buf_r * ra) * vr
                        + (p[k, 8] * T - buf_g * ra) * vg
                        + (p[k, 9] * T - buf_b * ra) * vb
                        + T_fin * ra * (va - v_bg)
                    )
                    if raw <= max_alpha:
                        v_sigma = -raw * v_a
                        g[k, _G_CONIC] += 0.5 * v_sigma * dx * dx
                        g[k, _G_CONIC + 1] += v_sigma * dx * dy
                        g[k, _G_CONIC + 2] += 0.5 * v_sigma * dy * dy
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        g[k, _G_XY] += gx
                        g[k, _G_XY + 1] += gy
                        g[k, _G_ABS] += abs(gx)
                        g[k, _G_ABS + 1] += abs(gy)
                        g[k, _G_OPAC] += vis * v_a
                    buf_r += p[k, 7] * fac
                    buf_g += p[k, 8] * fac
                    buf_b += p[k, 9] * fac
    return grads


@njit(cache=True)
def _zeros2d(n, m):
    return np.zeros((n, m), dtype=np.float64)


@njit(parallel=True, cache=True)
def _reduce(order, g_offsets, perm, grads, n):
    """Sum each Gaussian's intersection gradients in Gaussian-major (fixed) order."""
    out = _zeros2d(n, _G_COLS)
    for k in prange(order.shape[0]):
        g = order[k]
        for q in range(g_offsets[k], g_offsets[k + 1]):
            row = perm[q]
            for c in range(_G_COLS):
                out[g, c] += grads[row, c]
    return out


# ----------------------------------------------------------------------------- autograd


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _with_dynamic_schedule(fn, *args):
    """Hand tiles to threads one at a time (their costs differ a lot); results do not depend
    on the schedule."""
    old = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(1)
    try:
        return fn(*args)
    finally:
        numba.set_parallel_chunksize(old)


class _RasterizeTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, depths, width, height,
                background, max_alpha, absgrad):  # fmt: skip
        N = means2d.shape[0]
        tiles_w = (width + TILE_SIZE - 1) // TILE_SIZE
        tiles_h = (height + TILE_SIZE - 1) // TILE_SIZE
        m2d, con, col, op = (_np(x.float()) for x in (means2d, conics, colors, opacities))
        rad = _np(radii.to(torch.int32))
        visible = np.nonzero((rad > 0).all(axis=1))[0]
        order = visible[np.argsort(_np(depths.float())[visible], kind="stable")].astype(np.int64)
        bg = np.asarray(background, dtype=np.float64)
        boxes, counts = _tile_boxes(order, m2d, rad, tiles_w, tiles_h, TILE_SIZE)
        tile_offsets, tile_gauss, g_offsets, perm = _bin(
            order, boxes, counts, tiles_w * tiles_h, tiles_w
        )
        args = (tile_offsets, tile_gauss, m2d, con, col, op, bg, width, height, tiles_w,
                float(max_alpha))  # fmt: skip
        image, t_final, n_used = _with_dynamic_schedule(_forward, *args)
        ctx.args = args
        ctx.bin = (order, g_offsets, perm, N)
        ctx.fwd = (t_final, n_used)
        ctx.absgrad = absgrad
        ctx.means2d = means2d if absgrad else None
        alpha = (1.0 - t_final).astype(np.float32)[..., None]
        return torch.from_numpy(image), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, v_image, v_alpha):
        order, g_offsets, perm, N = ctx.bin
        t_final, n_used = ctx.fwd
        vi = _np(v_image.float())
        va = _np(v_alpha.float())[..., 0]
        grads = _with_dynamic_schedule(_backward, *ctx.args, t_final, n_used, vi, va)
        out = torch.from_numpy(_reduce(order, g_offsets, perm, grads, N).astype(np.float32))
        if ctx.absgrad and ctx.means2d is not None:
            ctx.means2d.absgrad = out[:, _G_ABS : _G_ABS + 2].clone()
        return (
            out[:, _G_XY : _G_XY + 2],
            out[:, _G_CONIC : _G_CONIC + 3],
            out[:, _G_RGB : _G_RGB + 3],
            out[:, _G_OPAC],
            None, None, None, None, None, None, None,
        )  # fmt: skip


def rasterize_tiles(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    radii: Tensor,  # [N, 2] int
    depths: Tensor,  # [N]
    width: int,
    height: int,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    max_alpha: float = 0.99,
    absgrad: bool = False,
) -> tuple[Tensor, Tensor]:
    """Tile rasterizer; returns ``(image [H, W, 3], alpha [H, W, 1])`` float32, differentiable in
    means2d, conics, colors and opacities. With ``absgrad``, backward stores the per-pixel sum of
    ``|d loss / d means2d|`` in ``means2d.absgrad`` ``[N, 2]`` (gsplat's convention)."""
    return _RasterizeTiles.apply(
        means2d, conics, colors, opacities, radii, depths, int(width), int(height),
        tuple(float(c) for c in background), float(max_alpha), bool(absgrad),
    )  # fmt: skip


def render(
    splats: Splats, view: View, settings: RenderSettings, absgrad: bool = False
) -> RenderOutput:
    """Render in float32 on the CPU. ``RenderOutput.means2d`` is part of the autograd graph
    (call ``.retain_grad()`` on it before backward to read its gradient)."""
    sp = splats.to(torch.float32) if splats.means.dtype != torch.float32 else splats
    w2c = view.world_to_cam.to(torch.float32)
    K = view.K.to(torch.float32)
    covars = quat_scale_to_covar(sp.quats, sp.scales)
    opacities = sp.opacities
    means2d, conics, depths, radii, comp = project(
        sp.means, covars, w2c, K, view.width, view.height,
        eps2d=settings.eps2d, near=settings.near_plane, far=settings.far_plane,
        opacities=opacities, antialiased=settings.antialiased,
    )  # fmt: skip
    if comp is not None:
        opacities = opacities * comp
    degree = min(settings.sh_degree, sp.sh_degree)
    colors = sh_to_color(degree, sp.means - camera_centre(w2c), sp.sh)
    image, alpha = rasterize_tiles(
        means2d, conics, colors, opacities, radii, depths, view.width, view.height,
        background=settings.background, max_alpha=settings.max_alpha, absgrad=absgrad,
    )  # fmt: skip
    return RenderOutput(image=image, alpha=alpha, means2d=means2d, radii=radii, depths=depths)
