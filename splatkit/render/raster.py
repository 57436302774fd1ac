"""The CPU tile rasterizer's numba kernels (gsplat's tile algorithm,
``RasterizeToPixels3DGS{Fwd,Bwd}.cu``).

1. binning: each visible Gaussian goes to the 16x16 tiles its ``[mean - radius, mean + radius]``
   box overlaps (gsplat's ``isect_tiles``); Gaussians are first sorted by depth (stable radix), then
   counting-sorted by tile (stable), so every tile's list is in depth order;
2. forward: tiles shared among the threads by estimated cost (:func:`_schedule`); each pixel
   composites its tile's list front to back (the rules of ``reference.py``). The walk is
   Gaussian-outer: each Gaussian visits
   only the pixels of its conservative sigma box (:func:`_prepare`), which skips most
   pixel-Gaussian pairs without changing any result. Per Gaussian the pixels that pass the
   sigma test are first compacted (branch-free), their ``exp(-sigma)`` taken in one batch
   (an inlined, vectorizable exp; libm's is a call), then composited in row-major order. Every
   pair that contributes is recorded (pixel, ``exp(-sigma)``, the transmittance in front of it)
   in the tile's slice of a record buffer, Gaussian after Gaussian;
3. backward: each tile replays its records back to front. With the stored transmittance the
   gradient needs no division and no exp: ``dL/d alpha_k = T_k (c_k . v - D)`` with ``v`` the
   pixel's colour gradient and ``D = S . v - P v_alpha`` (``S``: colour composited behind k,
   background included; ``P``: transmittance behind k), one number per pixel updated back to
   front as ``D <- alpha_k c_k . v + (1 - alpha_k) D``. A Gaussian's contributions are
   summed in registers in record order and written once to a per-*intersection* buffer (a tile
   is one task: no races); per-Gaussian gradients are then summed over that Gaussian's
   intersections in a fixed order. Results are bitwise the same whatever the thread count.

Arithmetic is float64 (records store the two per-pair values as float32); inputs and outputs
are float32. ``fastmath=False`` keeps the decisions (skip, stop) exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import ALPHA_THRESHOLD, TILE_SIZE, TRANSMITTANCE_THRESHOLD

#: Columns of the per-intersection gradient buffer.
_G_XY, _G_CONIC, _G_RGB, _G_OPAC, _G_ABS, _G_COLS = 0, 2, 5, 8, 9, 11
#: A Gaussian is skipped without evaluating exp() once sigma exceeds log(opacity * 255) + this
#: margin; within the margin the exact alpha test decides, so the rule stays exact.
_SIGMA_MARGIN = 1e-6


# ----------------------------------------------------------------------------- binning


@njit(cache=True)
def _visible(radii):
    """Indices (increasing) of the Gaussians whose two radii are positive (numpy's ``all`` over
    the short axis of ``[N, 2]`` took 0.4 ms at 23k splats, this 0.02 ms)."""
    n = radii.shape[0]
    out = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        out[m] = i
        m += (radii[i, 0] > 0) & (radii[i, 1] > 0)
    return out[:m]


@njit(cache=True)
def _depth_sort(idx, bits):
    """``idx`` (increasing) stably sorted by the float32 depths whose bits are ``bits``: an LSD
    radix sort, four 8-bit passes over order-preserving keys (negative floats' bits inverted,
    positive ones' sign bit set), 4x faster than numpy's sort of 64-bit (depth, index) keys at 23k
    splats. Stable, so equal depths keep their index order."""
    n = idx.shape[0]
    keys = np.empty(n, np.uint32)
    for i in range(n):
        b = bits[idx[i]]
        keys[i] = b ^ (np.uint32(0xFFFFFFFF) if b >> np.uint32(31) else np.uint32(0x80000000))
    src_k, src_i = keys, idx.copy()
    dst_k, dst_i = np.empty_like(keys), np.empty_like(src_i)
    count = np.empty(257, np.int64)
    for shift in range(0, 32, 8):
        count[:] = 0
        for i in range(n):
            count[((src_k[i] >> np.uint32(shift)) & np.uint32(255)) + 1] += 1
        for c in range(256):
            count[c + 1] += count[c]
        for i in range(n):
            d = (src_k[i] >> np.uint32(shift)) & np.uint32(255)
            p = count[d]
            count[d] = p + 1
            dst_k[p] = src_k[i]
            dst_i[p] = src_i[i]
        src_k, dst_k = dst_k, src_k
        src_i, dst_i = dst_i, src_i
    return src_i


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


@njit(parallel=True, cache=True)
def _bin(order, boxes, counts, n_tiles, tiles_w, n_workers):
    """Stable counting sort of the intersections by tile, in ``n_workers`` contiguous blocks of
    ``order``: each block counts its tiles, the blocks' runs are laid out in block order within
    each tile, then each block scatters its own; so every tile's run is in ``order``'s (depth)
    order, exactly as one serial pass would make it.

    Returns ``tile_offsets [n_tiles + 1]``, ``tile_gauss [n_isects]`` (Gaussian ids, each tile's
    run in depth order), ``g_offsets [n + 1]`` (intersections of ``order[k]`` are
    ``g_offsets[k]:g_offsets[k + 1]`` in Gaussian-major order) and ``perm`` (Gaussian-major
    position -> tile-major position).
    """
    n = order.shape[0]
    g_offsets = np.empty(n + 1, dtype=np.int64)
    g_offsets[0] = 0
    for k in range(n):
        g_offsets[k + 1] = g_offsets[k] + counts[k]
    n_isects = g_offsets[n]
    hist = np.empty((n_workers, n_tiles), dtype=np.int64)
    for w in prange(n_workers):
        for t in range(n_tiles):
            hist[w, t] = 0
        for k in range(w * n // n_workers, (w + 1) * n // n_workers):
            for ty in range(boxes[k, 2], boxes[k, 3]):
                for tx in range(boxes[k, 0], boxes[k, 1]):
                    hist[w, ty * tiles_w + tx] += 1
    tile_offsets = np.empty(n_tiles + 1, dtype=np.int64)
    tile_offsets[0] = 0
    for t in range(n_tiles):  # hist becomes each block's first slot in each tile
        q = tile_offsets[t]
        for w in range(n_workers):
            c = hist[w, t]
            hist[w, t] = q
            q += c
        tile_offsets[t + 1] = q
    tile_gauss = np.empty(n_isects, dtype=np.int32)
    perm = np.empty(n_isects, dtype=np.int64)
    for w in prange(n_workers):
        for k in range(w * n // n_workers, (w + 1) * n // n_workers):
            g = order[k]
            p = g_offsets[k]
            for ty in range(boxes[k, 2], boxes[k, 3]):
                for tx in range(boxes[k, 0], boxes[k, 1]):
                    t = ty * tiles_w + tx
                    q = hist[w, t]
                    hist[w, t] = q + 1
                    tile_gauss[q] = g
                    perm[p] = q
                    p += 1
    return tile_offsets, tile_gauss, g_offsets, perm


# ----------------------------------------------------------------------------- kernels


#: Widening of the sigma boxes of :func:`_prepare`: relative, relative per unit of the conic's
#: conditioning ``a c / det``, and absolute (pixels).
_BOX_REL, _BOX_COND, _BOX_ABS = 1e-9, 1e-12, 1e-3

#: Columns of the per-Gaussian table built by :func:`_prepare`.
_P_X, _P_Y, _P_A, _P_B, _P_C, _P_OP, _P_SMAX, _P_RGB, _P_EX, _P_EY, _P_COLS = (
    0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12
)


@njit(parallel=True, cache=True)
def _prepare(order, means2d, conics, colors, opacities, p):
    """Per-Gaussian table ``p [N, _P_COLS]`` float64 (rows of ``order`` only): mean, conic, opacity,
    the sigma cut-off and colour, plus the half-extents (pixels) of the box that holds every
    pixel centre with ``sigma <= cut-off``.

    The extents of the ellipse ``0.5 d^T Q d <= s`` are ``sqrt(2 s (Q^-1)_xx)`` and
    ``sqrt(2 s (Q^-1)_yy)``. They are widened by more than any rounding, so that the box is only
    a conservative pre-filter: the exact per-pixel tests still decide, and the results are
    bitwise those of a walk over the whole tile. The per-pixel sigma (three terms, ``|b dx dy|
    <= (a dx^2 + c dy^2) / 2``) is within ``12 u (a c / det)`` of the true one, relative, with
    ``u = 1.1e-16``; ``det`` and the extents carry errors of the same order; half of that in the
    extents, which scale as ``sqrt(s)``. The margins below are ~1000x that, plus 1e-3 pixel for
    the pixel-centre arithmetic (a whole pixel before: on this scene's small splats that made
    the boxes ~1.7x larger, each extra pixel tested and failed).
    """
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
            widen = 1.0 + _BOX_REL + _BOX_COND * (a * c / det)
            ex = math.sqrt(2.0 * smax * c / det) * widen + _BOX_ABS
            ey = math.sqrt(2.0 * smax * a / det) * widen + _BOX_ABS
        else:  # not positive definite (rounding): the whole tile
            ex = 1e9
            ey = 1e9
        p[g, _P_EX] = ex
        p[g, _P_EY] = ey


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


#: exp(-s) = 2^(-n/32) exp(-f) with n = floor(32 s / ln 2) and 0 <= f < ln 2 / 32: a table of
#: 2^(-n/32) for 0 <= s <= 8 (sigma never exceeds log(255) + 1e-6 where exp is taken).
_EXP_STEP = math.log(2.0) / 32.0
_EXP_TABLE = np.exp2(-np.arange(int(8.0 / _EXP_STEP) + 2) / 32.0)


@njit(cache=True, inline="always")
def _exp_neg(s):
    """``exp(-s)`` for ``0 <= s <= 8`` within 1e-15 relative: a table step and a degree-6
    Taylor polynomial (error below f^7 / 7! = 5e-16). Inlined (no call: libm's exp is a call
    that spills every register) and branch-free, so a batch of them vectorizes."""
    n = int(s * (1.0 / _EXP_STEP))
    f = s - n * _EXP_STEP
    p = 1.0 - f * (1.0 - f * (0.5 - f * (1.0 / 6.0 - f * (1.0 / 24.0 - f * (1.0 / 120.0
                                                                         - f * (1.0 / 720.0))))))  # fmt: skip
    return _EXP_TABLE[n] * p


@njit(cache=True, inline="always")
def _gaussian(p, g):
    """Conic (a, b, c), opacity and colour of row ``g`` of a table."""
    return (p[g, _P_A], p[g, _P_B], p[g, _P_C], p[g, _P_OP], p[g, _P_RGB], p[g, _P_RGB + 1],
            p[g, _P_RGB + 2])  # fmt: skip


@njit(cache=True)
def _tile_state(rows, cols):
    return np.empty((rows, cols), dtype=np.float64), np.empty(rows, dtype=np.int32)


@njit(cache=True)
def _batch(n):
    return np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)


@njit(parallel=True, cache=True)
def _tile_table(tile_offsets, tile_gauss, p, width, height, tiles_w, table):
    """Each intersection's copy of its Gaussian's row of ``p``, in tile-major order (the kernels
    then read their tile's Gaussians sequentially instead of gathering them from all over
    ``p``: a cache miss per Gaussian and tile, measured 25 % of the forward), and the record
    slots per tile: the pixels of its Gaussians' boxes inside it, an upper bound on the pairs
    that can contribute. Fills ``table [n_isects, _P_COLS]``; returns the record offsets
    ``[n_tiles + 1]``."""
    n_tiles = tile_offsets.shape[0] - 1
    cap = np.empty(n_tiles + 1, dtype=np.int64)
    cap[0] = 0
    for t in prange(n_tiles):
        i0 = (t // tiles_w) * TILE_SIZE
        j0 = (t % tiles_w) * TILE_SIZE
        hh = min(TILE_SIZE, height - i0)
        ww = min(TILE_SIZE, width - j0)
        total = 0
        for k in range(tile_offsets[t], tile_offsets[t + 1]):
            g = tile_gauss[k]
            for c in range(_P_COLS):
                table[k, c] = p[g, c]
            ja, jb = _span(p[g, _P_X], p[g, _P_EX], j0, ww)
            ia, ib = _span(p[g, _P_Y], p[g, _P_EY], i0, hh)
            if ja < jb and ia < ib:
                total += (jb - ja) * (ib - ia)
        cap[t + 1] = total
    return np.cumsum(cap)


#: Estimated cost of a tile, in units of one box pixel tested by the forward (or one record
#: replayed by the backward): per Gaussian in its list and per tile (measured, see forward_costs).
_COST_GAUSS_F, _COST_TILE_F, _COST_GAUSS_B, _COST_TILE_B = 8.0, 256.0, 2.0, 64.0


def forward_costs(box_pixels: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Estimated forward cost per tile from the pixels of its Gaussians' boxes (the record slots
    of :func:`_tile_table`) and the length of its list."""
    return box_pixels + _COST_GAUSS_F * lists + _COST_TILE_F


def backward_costs(records: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Estimated backward cost per tile from the records the forward wrote in it."""
    return records + _COST_GAUSS_B * lists + _COST_TILE_B


@njit(cache=True)
def _schedule(costs, n_workers):
    """Tiles to workers: longest first, each to the least-loaded worker so far (LPT, within 4/3 of
    the best makespan). Returns ``offsets [n_workers + 1]`` and ``tiles``: worker ``w`` runs
    ``tiles[offsets[w]:offsets[w + 1]]`` (decreasing cost).

    The kernels run one ``prange`` iteration per worker. numba's parallel loops split their range
    into contiguous equal blocks, one per thread (its chunk size does not make them dynamic under
    OpenMP), so a longest-first tile list handed to ``prange`` gave one thread the heavy half."""
    n = costs.shape[0]
    order = np.argsort(-costs, kind="mergesort")
    owner = np.empty(n, dtype=np.int64)
    load = np.zeros(n_workers, dtype=np.float64)
    offsets = np.zeros(n_workers + 1, dtype=np.int64)
    for i in range(n):
        w = np.argmin(load)
        owner[i] = w
        load[w] += costs[order[i]]
        offsets[w + 1] += 1
    offsets = np.cumsum(offsets)
    cursor = offsets[:-1].copy()
    tiles = np.empty(n, dtype=np.int64)
    for i in range(n):
        w = owner[i]
        tiles[cursor[w]] = order[i]
        cursor[w] += 1
    return offsets, tiles


@njit(parallel=True, cache=True)
def _forward(schedule, tile_offsets, tile_gauss, p, background, width, height, tiles_w,
             max_alpha, rec_base, rec_q, rec_vis, rec_t, rec_off, rec_n, record, t_final,
             tile_rec):  # fmt: skip
    """``schedule``: :func:`_schedule`'s ``(offsets, tiles)``; ``p``: the per-intersection table of
    :func:`_tile_table`.

    Gaussian-outer walk of each tile: for each Gaussian (depth order) only the pixels of its
    box are visited; each pixel sees the same operations, in the same order, as a per-pixel walk
    of the tile's list, so the results are those of gsplat's per-pixel loop. Contributing pairs
    are recorded when ``record`` (``rec_*``; intersection ``s`` owns
    ``rec_off[s] : rec_off[s] + rec_n[s]``).
    Returns the image ``[H, W, 3]``; fills the final transmittance ``t_final [H, W]``."""
    image = np.empty((height, width, 3), dtype=np.float32)
    npix = TILE_SIZE * TILE_SIZE
    # (No whole-array expressions such as np.zeros in parallel kernels: numba would turn them
    # into nested parallel loops.)
    w_offsets, w_tiles = schedule
    for wk in prange(w_offsets.shape[0] - 1):
        st, _ = _tile_state(npix, 5)  # T, r, g, b, done
        qs, ss, vs = _batch(npix)
        for ti in range(w_offsets[wk], w_offsets[wk + 1]):
            t = w_tiles[ti]
            start = tile_offsets[t]
            m = tile_offsets[t + 1] - start
            i0 = (t // tiles_w) * TILE_SIZE
            j0 = (t % tiles_w) * TILE_SIZE
            hh = min(TILE_SIZE, height - i0)
            ww = min(TILE_SIZE, width - j0)
            for q in range(npix):
                st[q, 0] = 1.0
                st[q, 1] = 0.0
                st[q, 2] = 0.0
                st[q, 3] = 0.0
                st[q, 4] = 0.0
            active = hh * ww
            r = rec_base[t]
            for k in range(m):
                rec_off[start + k] = r
                rec_n[start + k] = 0
                if active == 0:
                    continue
                g = start + k
                mx = p[g, _P_X]
                my = p[g, _P_Y]
                ja, jb = _span(mx, p[g, _P_EX], j0, ww)
                ia, ib = _span(my, p[g, _P_EY], i0, hh)
                if ja >= jb or ia >= ib:
                    continue
                ca, cb, cc, op, cr, cg, cbl = _gaussian(p, g)
                smax = p[g, _P_SMAX]
                r0 = r
                # 1. the box's pixels that pass the sigma test, compacted branch-free (finished
                # pixels are skipped in 3.: testing their flag here cost more than it saved)
                n = 0
                for li in range(ia, ib):
                    dy = my - (i0 + li + 0.5)
                    for lj in range(ja, jb):
                        q = li * TILE_SIZE + lj
                        dx = mx - (j0 + lj + 0.5)
                        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        qs[n] = q
                        ss[n] = sigma
                        n += (sigma >= 0.0) & (sigma <= smax)
                # 2. their exp(-sigma), one batch; 3. compositing in the same (row-major) order
                for i in range(n):
                    vs[i] = _exp_neg(ss[i])
                for i in range(n):
                    q = qs[i]
                    vis = vs[i]
                    alpha = min(max_alpha, op * vis)
                    if alpha < ALPHA_THRESHOLD or st[q, 4] != 0.0:
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
                    if record:
                        rec_q[r] = q
                        rec_vis[r] = vis
                        rec_t[r] = T
                        r += 1
                rec_n[start + k] = r - r0
            tile_rec[t] = r - rec_base[t]
            for li in range(hh):
                for lj in range(ww):
                    q = li * TILE_SIZE + lj
                    T = st[q, 0]
                    image[i0 + li, j0 + lj, 0] = st[q, 1] + T * background[0]
                    image[i0 + li, j0 + lj, 1] = st[q, 2] + T * background[1]
                    image[i0 + li, j0 + lj, 2] = st[q, 3] + T * background[2]
                    t_final[i0 + li, j0 + lj] = T
    return image


@njit(parallel=True, cache=True)
def _backward(schedule, tile_offsets, tile_gauss, p, background, width, height, tiles_w,
              max_alpha, rec_q, rec_vis, rec_t, rec_off, rec_n, v_image, v_alpha, absgrad,
              grads):  # fmt: skip
    """Per-intersection gradients ``grads [n_isects, 11]`` (tile-major order) from the forward's
    records, each tile back to front (see the module docstring); ``schedule`` and ``p`` as in
    :func:`_forward`.
    The absolute-gradient columns are summed only when ``absgrad`` (0 otherwise)."""
    npix = TILE_SIZE * TILE_SIZE
    w_offsets, w_tiles = schedule
    for wk in prange(w_offsets.shape[0] - 1):
        st, _ = _tile_state(npix, 4)
        for ti in range(w_offsets[wk], w_offsets[wk + 1]):
            t = w_tiles[ti]
            start = tile_offsets[t]
            m = tile_offsets[t + 1] - start
            if m == 0:
                continue
            i0 = (t // tiles_w) * TILE_SIZE
            j0 = (t % tiles_w) * TILE_SIZE
            hh = min(TILE_SIZE, height - i0)
            ww = min(TILE_SIZE, width - j0)
            # Per pixel: d loss / d colour (r, g, b) and D = S . v_colour - P v_alpha, with S the colour
            # composited behind the current Gaussian (background included) and P the transmittance
            # behind it: then d loss / d alpha_k = T_k (c_k . v_colour - D), and D follows
            # D <- alpha_k c_k . v_colour + (1 - alpha_k) D back to front.
            for li in range(hh):
                for lj in range(ww):
                    q = li * TILE_SIZE + lj
                    vr = np.float64(v_image[i0 + li, j0 + lj, 0])
                    vg = np.float64(v_image[i0 + li, j0 + lj, 1])
                    vb = np.float64(v_image[i0 + li, j0 + lj, 2])
                    st[q, 0] = vr
                    st[q, 1] = vg
                    st[q, 2] = vb
                    st[q, 3] = (background[0] * vr + background[1] * vg + background[2] * vb
                                - v_alpha[i0 + li, j0 + lj])  # fmt: skip
            for k in range(m - 1, -1, -1):
                row = grads[start + k]
                g = start + k
                mx = p[g, _P_X] - (j0 + 0.5)
                my = p[g, _P_Y] - (i0 + 0.5)
                ca, cb, cc, op, cr, cg, cbl = _gaussian(p, g)
                # Sums over the records of v_sigma * (dx, dy, dx^2, dx dy, dy^2): the conic and mean
                # gradients follow after the loop (fewer live values in it than summing them there).
                s_x = s_y = s_xx = s_xy = s_yy = g_r = g_g = g_bl = g_op = g_ax = g_ay = 0.0
                r0 = rec_off[start + k]
                for r in range(r0, r0 + rec_n[start + k]):
                    q = np.int64(rec_q[r])
                    vis = np.float64(rec_vis[r])
                    T = np.float64(rec_t[r])
                    dx = mx - (q & (TILE_SIZE - 1))
                    dy = my - (q // TILE_SIZE)
                    raw = op * vis
                    alpha = min(max_alpha, raw)
                    fac = alpha * T
                    vr = st[q, 0]
                    vg = st[q, 1]
                    vb = st[q, 2]
                    g_r += fac * vr
                    g_g += fac * vg
                    g_bl += fac * vb
                    cv = cr * vr + cg * vg + cbl * vb
                    d = st[q, 3]
                    v_a = T * (cv - d)
                    # No gradient through alpha where it is clamped at max_alpha.
                    unclamped = raw <= max_alpha
                    v_sigma = -raw * v_a if unclamped else 0.0
                    g_op += vis * v_a if unclamped else 0.0
                    a_x = v_sigma * dx
                    a_y = v_sigma * dy
                    s_x += a_x
                    s_y += a_y
                    s_xx += a_x * dx
                    s_xy += a_x * dy
                    s_yy += a_y * dy
                    if absgrad:
                        g_ax += abs(ca * a_x + cb * a_y)
                        g_ay += abs(cb * a_x + cc * a_y)
                    st[q, 3] = alpha * cv + (1.0 - alpha) * d
                row[_G_XY] = ca * s_x + cb * s_y
                row[_G_XY + 1] = cb * s_x + cc * s_y
                row[_G_CONIC] = 0.5 * s_xx
                row[_G_CONIC + 1] = s_xy
                row[_G_CONIC + 2] = 0.5 * s_yy
                row[_G_RGB] = g_r
                row[_G_RGB + 1] = g_g
                row[_G_RGB + 2] = g_bl
                row[_G_OPAC] = g_op
                row[_G_ABS] = g_ax
                row[_G_ABS + 1] = g_ay


@njit(parallel=True, cache=True)
def _reduce(order, g_offsets, perm, grads, out):
    """``out [N, 11]``: each Gaussian's intersection gradients summed in Gaussian-major (fixed)
    order; rows of Gaussians not in ``order`` are 0."""
    for g in prange(out.shape[0]):
        for c in range(_G_COLS):
            out[g, c] = 0.0
    for k in prange(order.shape[0]):
        g = order[k]
        for q in range(g_offsets[k], g_offsets[k + 1]):
            row = perm[q]
            for c in range(_G_COLS):
                out[g, c] += grads[row, c]




@njit(cache=True)
def _pair_weights(tile_gauss, table, rec_vis, rec_t, rec_off, rec_n, max_alpha, w_max, w_sum):
    """Each Gaussian's largest and summed blending weight ``alpha T`` over the pixels of one
    forward's records (the pairs that contributed), accumulated into ``w_max`` and ``w_sum``
    ``[N]`` float64 (Gaussian ids). Serial: a Gaussian's intersections span tiles."""
    for s in range(tile_gauss.shape[0]):
        g = tile_gauss[s]
        op = table[s, _P_OP]
        r0 = rec_off[s]
        for r in range(r0, r0 + rec_n[s]):
            w = min(max_alpha, op * np.float64(rec_vis[r])) * np.float64(rec_t[r])
            if w > w_max[g]:
                w_max[g] = w
            w_sum[g] += w
