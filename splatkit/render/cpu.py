"""Fast CPU backend: PyTorch projection + SH (autograd) and a numba tile rasterizer.

The rasterizer follows gsplat's tile algorithm (``RasterizeToPixels3DGS{Fwd,Bwd}.cu``):

1. binning: each visible Gaussian goes to the 16x16 tiles its ``[mean - radius, mean + radius]``
   box overlaps (gsplat's ``isect_tiles``); Gaussians are first sorted by depth (stable), then
   counting-sorted by tile (stable), so every tile's list is in depth order;
2. forward: one task per tile (longest lists first); each pixel composites its tile's list front
   to back (the rules of ``reference.py``) and stores its final transmittance and how many list
   entries it used. The walk is Gaussian-outer: each Gaussian visits only the pixels of its
   conservative sigma box (:func:`_prepare`), which skips most pixel-Gaussian pairs (80-90% on
   the fox scene) without changing any result;
3. backward: each pixel walks its list back to front, recovering T by dividing by (1 - alpha) as
   gsplat does; each Gaussian's contributions over its box's pixels are summed in registers in
   row-major pixel order and written once to a per-*intersection* buffer (a tile is processed by
   one thread, so there are no races); per-Gaussian gradients are then summed over that
   Gaussian's intersections in a fixed order. The result is bitwise deterministic whatever the
   thread count or scheduling (and bitwise equal to a per-pixel walk of the whole list).

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
from .projection import camera_centre, project_splats
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


#: Columns of the per-Gaussian table built by :func:`_prepare`.
_P_X, _P_Y, _P_A, _P_B, _P_C, _P_OP, _P_SMAX, _P_RGB, _P_EX, _P_EY, _P_COLS = (
    0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12
)


@njit(parallel=True, cache=True)
def _prepare(order, means2d, conics, colors, opacities):
    """Per-Gaussian table ``[N, _P_COLS]`` float64 (rows of ``order`` only): mean, conic, opacity,
    the sigma cut-off and colour, plus the half-extents (pixels) of the box that holds every
    pixel centre with ``sigma <= cut-off``.

    The extents of the ellipse ``0.5 d^T Q d <= s`` are ``sqrt(2 s (Q^-1)_xx)`` and
    ``sqrt(2 s (Q^-1)_yy)``; they are widened by one pixel (and 1e-6 relative), far more than any
    rounding, so that the box is only a conservative pre-filter: the exact per-pixel tests still
    decide, and the results are bitwise those of a walk over the whole tile.
    """
    n = means2d.shape[0]
    p = np.empty((n, _P_COLS), dtype=np.float64)
    for k in prange(order.shape[0]):
        g = order[k]
        a = np.float64(conics[g, 0])
        b = np.float64(conics[g, 1])
        c = np.float64(conics[g, 2])
        op = np.float64(opacities[g])
        smax = math.log(op / ALPHA_THRESHOLD) + _SIGMA_MARGIN if op > 0 else -1.0
        p[g, _P_X] = means2d[g, 0]
        p[g, _P_Y] = means2d[g, 1]
        p[g, _P_A] = a
        p[g, _P_B] = b
        p[g, _P_C] = c
        p[g, _P_OP] = op
        p[g, _P_SMAX] = smax
        p[g, _P_RGB] = colors[g, 0]
        p[g, _P_RGB + 1] = colors[g, 1]
        p[g, _P_RGB + 2] = colors[g, 2]
        det = a * c - b * b
        if smax < 0.0:  # never passes the sigma test: empty box
            ex = -2.0
            ey = -2.0
        elif det > 0.0 and a > 0.0 and c > 0.0:
            ex = math.sqrt(2.0 * smax * c / det) * (1.0 + 1e-6) + 1.0
            ey = math.sqrt(2.0 * smax * a / det) * (1.0 + 1e-6) + 1.0
        else:  # not positive definite (rounding): the whole tile
            ex = 1e9
            ey = 1e9
        p[g, _P_EX] = ex
        p[g, _P_EY] = ey
    return p


@njit(cache=True, inline="always")
def _span(centre, extent, origin, size):
    """Local pixel indices ``[lo, hi)`` in ``[0, size)`` whose centres ``origin + l + 0.5`` lie
    within ``centre +- extent``."""
    lo_f = centre - extent - 0.5 - origin
    hi_f = centre + extent - 0.5 - origin
    if hi_f < 0.0 or lo_f >= size:
        return 0, 0
    lo = 0 if lo_f <= 0.0 else int(math.ceil(lo_f))
    hi = size if hi_f >= size - 1 else int(math.floor(hi_f)) + 1
    return lo, hi


@njit(cache=True)
def _tile_state(rows, cols):
    return np.empty((rows, cols), dtype=np.float64), np.empty(rows, dtype=np.int32)


@njit(parallel=True, cache=True)
def _forward(tile_order, tile_offsets, tile_gauss, p, background, width, height, tiles_w,
             max_alpha):  # fmt: skip
    """Gaussian-outer walk of each tile: for each Gaussian (depth order) only the pixels of its
    box are visited; each pixel sees the same operations, in the same order, as a per-pixel walk
    of the tile's list, so the results are those of gsplat's per-pixel loop."""
    image = np.empty((height, width, 3), dtype=np.float32)
    t_final = np.empty((height, width), dtype=np.float64)
    n_used = np.empty((height, width), dtype=np.int32)
    npix = TILE_SIZE * TILE_SIZE
    # (No whole-array expressions such as np.zeros in parallel kernels: numba would turn them
    # into parallel loops, scheduled one element at a time under chunk size 1.)
    for ti in prange(tile_order.shape[0]):
        t = tile_order[ti]
        start = tile_offsets[t]
        m = tile_offsets[t + 1] - start
        i0 = (t // tiles_w) * TILE_SIZE
        j0 = (t % tiles_w) * TILE_SIZE
        hh = min(TILE_SIZE, height - i0)
        ww = min(TILE_SIZE, width - j0)
        st, last = _tile_state(npix, 5)  # T, r, g, b, done
        for q in range(npix):
            st[q, 0] = 1.0
            st[q, 1] = 0.0
            st[q, 2] = 0.0
            st[q, 3] = 0.0
            st[q, 4] = 0.0
            last[q] = 0
        active = hh * ww
        for k in range(m):
            if active == 0:
                break
            g = tile_gauss[start + k]
            mx = p[g, _P_X]
            my = p[g, _P_Y]
            ja, jb = _span(mx, p[g, _P_EX], j0, ww)
            ia, ib = _span(my, p[g, _P_EY], i0, hh)
            if ja >= jb or ia >= ib:
                continue
            ca = p[g, _P_A]
            cb = p[g, _P_B]
            cc = p[g, _P_C]
            op = p[g, _P_OP]
            smax = p[g, _P_SMAX]
            cr = p[g, _P_RGB]
            cg = p[g, _P_RGB + 1]
            cbl = p[g, _P_RGB + 2]
            for li in range(ia, ib):
                dy = my - (i0 + li + 0.5)
                for lj in range(ja, jb):
                    q = li * TILE_SIZE + lj
                    if st[q, 4] != 0.0:
                        continue
                    dx = mx - (j0 + lj + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > smax:
                        continue
                    alpha = min(max_alpha, op * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    T = st[q, 0]
                    next_t = T * (1.0 - alpha)
                    if next_t <= TRANSMITTANCE_THRESHOLD:
                        st[q, 4] = 1.0
                        active -= 1
                        continue
                    w = alpha * T
                    st[q, 1] += w * cr
                    st[q, 2] += w * cg
                    st[q, 3] += w * cbl
                    st[q, 0] = next_t
                    last[q] = k + 1
        for li in range(hh):
            for lj in range(ww):
                q = li * TILE_SIZE + lj
                T = st[q, 0]
                image[i0 + li, j0 + lj, 0] = st[q, 1] + T * background[0]
                image[i0 + li, j0 + lj, 1] = st[q, 2] + T * background[1]
                image[i0 + li, j0 + lj, 2] = st[q, 3] + T * background[2]
                t_final[i0 + li, j0 + lj] = T
                n_used[i0 + li, j0 + lj] = last[q]
    return image, t_final, n_used


@njit(parallel=True, cache=True)
def _backward(tile_order, tile_offsets, tile_gauss, p, background, width, height, tiles_w,
              max_alpha, t_final, n_used, v_image, v_alpha):  # fmt: skip
    """Per-intersection gradients ``[n_isects, 11]`` (tile-major order).

    Gaussian-outer, back to front: each pixel recovers T by dividing by (1 - alpha) as gsplat
    does; a Gaussian's gradient sums over its box's pixels in row-major order (the order of a
    per-pixel walk), in registers, and is written once."""
    grads = np.empty((tile_gauss.shape[0], _G_COLS), dtype=np.float64)
    npix = TILE_SIZE * TILE_SIZE
    for ti in prange(tile_order.shape[0]):
        t = tile_order[ti]
        start = tile_offsets[t]
        m = tile_offsets[t + 1] - start
        if m == 0:
            continue
        i0 = (t // tiles_w) * TILE_SIZE
        j0 = (t % tiles_w) * TILE_SIZE
        hh = min(TILE_SIZE, height - i0)
        ww = min(TILE_SIZE, width - j0)
        # T, buf r/g/b, v r/g/b, T_fin * (v_alpha - v_bg) factor parts: T_fin, va - v_bg
        st, used = _tile_state(npix, 9)
        kmax = 0
        for q in range(npix):
            used[q] = 0
        for li in range(hh):
            for lj in range(ww):
                q = li * TILE_SIZE + lj
                i = i0 + li
                j = j0 + lj
                vr = np.float64(v_image[i, j, 0])
                vg = np.float64(v_image[i, j, 1])
                vb = np.float64(v_image[i, j, 2])
                va = np.float64(v_alpha[i, j])
                v_bg = background[0] * vr + background[1] * vg + background[2] * vb
                st[q, 0] = t_final[i, j]
                st[q, 1] = 0.0
                st[q, 2] = 0.0
                st[q, 3] = 0.0
                st[q, 4] = vr
                st[q, 5] = vg
                st[q, 6] = vb
                st[q, 7] = t_final[i, j]
                st[q, 8] = va - v_bg
                used[q] = n_used[i, j]
                kmax = max(kmax, used[q])
        for k in range(m - 1, kmax - 1, -1):
            for c in range(_G_COLS):
                grads[start + k, c] = 0.0
        for k in range(kmax - 1, -1, -1):
            g = tile_gauss[start + k]
            mx = p[g, _P_X]
            my = p[g, _P_Y]
            ja, jb = _span(mx, p[g, _P_EX], j0, ww)
            ia, ib = _span(my, p[g, _P_EY], i0, hh)
            ca = p[g, _P_A]
            cb = p[g, _P_B]
            cc = p[g, _P_C]
            op = p[g, _P_OP]
            smax = p[g, _P_SMAX]
            cr = p[g, _P_RGB]
            cg = p[g, _P_RGB + 1]
            cbl = p[g, _P_RGB + 2]
            g_x = g_y = g_a = g_b = g_c = g_r = g_g = g_bl = g_op = g_ax = g_ay = 0.0
            for li in range(ia, ib):
                dy = my - (i0 + li + 0.5)
                for lj in range(ja, jb):
                    q = li * TILE_SIZE + lj
                    if k >= used[q]:
                        continue
                    dx = mx - (j0 + lj + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > smax:
                        continue
                    vis = math.exp(-sigma)
                    raw = op * vis
                    alpha = min(max_alpha, raw)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    T = st[q, 0] * ra
                    st[q, 0] = T
                    fac = alpha * T
                    vr = st[q, 4]
                    vg = st[q, 5]
                    vb = st[q, 6]
                    g_r += fac * vr
                    g_g += fac * vg
                    g_bl += fac * vb
                    v_a = (
                        (cr * T - st[q, 1] * ra) * vr
                        + (cg * T - st[q, 2] * ra) * vg
                        + (cbl * T - st[q, 3] * ra) * vb
                        + st[q, 7] * ra * st[q, 8]
                    )
                    if raw <= max_alpha:
                        v_sigma = -raw * v_a
                        g_a += 0.5 * v_sigma * dx * dx
                        g_b += v_sigma * dx * dy
                        g_c += 0.5 * v_sigma * dy * dy
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        g_x += gx
                        g_y += gy
                        g_ax += abs(gx)
                        g_ay += abs(gy)
                        g_op += vis * v_a
                    st[q, 1] += cr * fac
                    st[q, 2] += cg * fac
                    st[q, 3] += cbl * fac
            row = grads[start + k]
            row[_G_XY] = g_x
            row[_G_XY + 1] = g_y
            row[_G_CONIC] = g_a
            row[_G_CONIC + 1] = g_b
            row[_G_CONIC + 2] = g_c
            row[_G_RGB] = g_r
            row[_G_RGB + 1] = g_g
            row[_G_RGB + 2] = g_bl
            row[_G_OPAC] = g_op
            row[_G_ABS] = g_ax
            row[_G_ABS + 1] = g_ay
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
        p = _prepare(order, m2d, con, col, op)
        # Longest lists first: with one-tile chunks, threads finish together.
        tile_order = np.argsort(-np.diff(tile_offsets), kind="stable")
        args = (tile_order, tile_offsets, tile_gauss, p, bg, width, height, tiles_w,
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


def _sh(sp: Splats, degree: int) -> Tensor:
    """The first ``(degree + 1)^2`` SH coefficients ``[N, K, 3]`` (no copy of unused bands)."""
    return torch.cat([sp.sh0, sp.shN[:, : (degree + 1) ** 2 - 1]], dim=1)


def render(
    splats: Splats, view: View, settings: RenderSettings, absgrad: bool = False
) -> RenderOutput:
    """Render in float32 on the CPU. ``RenderOutput.means2d`` is part of the autograd graph
    (call ``.retain_grad()`` on it before backward to read its gradient)."""
    sp = splats.to(torch.float32) if splats.means.dtype != torch.float32 else splats
    means2d, conics, depths, radii, opacities, w2c = project_splats(sp, view, settings)
    degree = min(settings.sh_degree, sp.sh_degree)
    # Colours only for the Gaussians the rasterizer reads (radii > 0); the others get 0, and so
    # do their colour gradients, exactly as when the rasterizer ignores them.
    vis = torch.nonzero((radii > 0).all(dim=-1)).squeeze(-1)
    if vis.numel() == radii.shape[0]:
        colors = sh_to_color(degree, sp.means - camera_centre(w2c), _sh(sp, degree))
    else:
        sh = torch.cat([sp.sh0[vis], sp.shN[vis, : (degree + 1) ** 2 - 1]], dim=1)
        colors_vis = sh_to_color(degree, sp.means[vis] - camera_centre(w2c), sh)
        colors = colors_vis.new_zeros(radii.shape[0], 3).index_copy(0, vis, colors_vis)
    image, alpha = rasterize_tiles(
        means2d, conics, colors, opacities, radii, depths, view.width, view.height,
        background=settings.background, max_alpha=settings.max_alpha,
        absgrad=absgrad or settings.absgrad,
    )  # fmt: skip
    return RenderOutput(image=image, alpha=alpha, means2d=means2d, radii=radii, depths=depths)
