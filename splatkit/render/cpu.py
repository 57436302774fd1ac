"""Fast CPU backend: fused numba projection + SH (:mod:`.fused`) and the numba tile
rasterizer (:mod:`.raster`, gsplat's tile algorithm), as autograd functions.

The large scratch arrays (per-intersection table, the pair records the backward replays,
gradient rows) come from :data:`.buffers.POOL`: a forward takes them, its backward gives them
back, so steady-state steps touch no fresh pages. Renders without gradients record nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import Tensor

from ..splats import Splats
from . import TILE_SIZE, RenderOutput, RenderSettings, View
from . import raster as R
from .buffers import POOL
from .fused import project_and_shade
from .projection import camera_centre, project_splats
from .sh import sh_to_color

# ----------------------------------------------------------------------------- autograd


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


_EMPTY = (np.empty(0, np.uint8), np.empty(0, np.float32), np.empty(0, np.float32))


def visible_indices(radii: Tensor) -> Tensor:
    """Indices (int64, increasing) of the splats whose two radii are positive, the ones a view
    saw: by :func:`.raster._visible` on the CPU, torch ops elsewhere."""
    if radii.device.type == "cpu":
        return torch.from_numpy(R._visible(_np(radii.to(torch.int32))))
    return (radii > 0).all(dim=-1).nonzero().flatten()


def _depth_order(idx: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """``idx`` (increasing, int64) stably sorted by ``depths[idx]`` (float32)."""
    return R._depth_sort(idx.astype(np.int64, copy=False), depths.view(np.uint32))


@dataclass
class _Pass:
    """What one forward pass of the tile rasterizer leaves for a backward or a weight count:
    ``args`` (the kernels' common arguments), the pair records, the binning and the backward's
    per-tile record counts."""

    args: tuple
    recs: tuple
    rec_off: np.ndarray
    rec_n: np.ndarray
    order: np.ndarray
    g_offsets: np.ndarray
    perm: np.ndarray
    n: int
    tile_rec: np.ndarray
    lists: np.ndarray


def _forward_pass(means2d, conics, colors, opacities, radii, depths, width, height, background,
                  max_alpha, record):  # fmt: skip
    """Bin, prepare and composite; returns ``(image [H, W, 3], alpha [H, W, 1], pass)`` where
    ``pass`` (a :class:`_Pass`, None unless ``record``) holds the pair records and the per-
    intersection table, taken from :data:`.buffers.POOL` (give them back when done)."""
    N = means2d.shape[0]
    tiles_w = (width + TILE_SIZE - 1) // TILE_SIZE
    tiles_h = (height + TILE_SIZE - 1) // TILE_SIZE
    m2d, con, col, op = (_np(x.float()) for x in (means2d, conics, colors, opacities))
    rad = _np(radii.to(torch.int32))
    order = _depth_order(R._visible(rad), _np(depths.float()))
    bg = np.asarray(background, dtype=np.float64)
    boxes, counts = R._tile_boxes(order, m2d, rad, tiles_w, tiles_h, TILE_SIZE)
    workers = numba.get_num_threads()
    tile_offsets, tile_gauss, g_offsets, perm = R._bin(
        order, boxes, counts, tiles_w * tiles_h, tiles_w, workers
    )
    p = POOL.take((N, R._P_COLS), np.float64)
    R._prepare(order, m2d, con, col, op, p)
    table = POOL.take((tile_gauss.shape[0], R._P_COLS), np.float64)
    rec_base = R._tile_table(tile_offsets, tile_gauss, p, width, height, tiles_w, table)
    POOL.give(p)
    lists = np.diff(tile_offsets)
    schedule = R._schedule(R.forward_costs(np.diff(rec_base), lists), workers)
    if record:
        n_rec = int(rec_base[-1])
        recs = (POOL.take((n_rec,), np.uint8), POOL.take((n_rec,), np.float32),
                POOL.take((n_rec,), np.float32))  # fmt: skip
    else:
        rec_base, recs = np.zeros_like(rec_base), _EMPTY
    n_isects = tile_gauss.shape[0]
    rec_off, rec_n = np.empty(n_isects, np.int64), np.empty(n_isects, np.int32)
    t_final = POOL.take((height, width), np.float64)
    tile_rec = np.empty(lists.shape[0], np.int64)
    args = (tile_offsets, tile_gauss, table, bg, width, height, tiles_w, float(max_alpha))
    image = R._forward(schedule, *args, rec_base, *recs, rec_off, rec_n, record, t_final,
                       tile_rec)  # fmt: skip
    alpha = (1.0 - t_final).astype(np.float32)[..., None]
    POOL.give(t_final)
    if not record:
        POOL.give(table)
        return image, alpha, None
    return image, alpha, _Pass(args, recs, rec_off, rec_n, order, g_offsets, perm, N, tile_rec, lists)


class _RasterizeTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, depths, width, height,
                background, max_alpha, absgrad):  # fmt: skip
        record = any(ctx.needs_input_grad[:4])
        image, alpha, ps = _forward_pass(means2d, conics, colors, opacities, radii, depths, width,
                                         height, background, max_alpha, record)  # fmt: skip
        if record:
            ctx.args = ps.args
            ctx.recs = (ps.recs, ps.rec_off, ps.rec_n)
            ctx.bin = (ps.order, ps.g_offsets, ps.perm, ps.n)
            ctx.schedule = R._schedule(R.backward_costs(ps.tile_rec, ps.lists), numba.get_num_threads())
            ctx.means2d = means2d if absgrad else None
        return torch.from_numpy(image), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, v_image, v_alpha):
        order, g_offsets, perm, N = ctx.bin
        recs, rec_off, rec_n = ctx.recs
        vi = _np(v_image.float())
        va = _np(v_alpha.float())[..., 0]
        table = ctx.args[2]
        grads = POOL.take((table.shape[0], R._G_COLS), np.float64)
        R._backward(ctx.schedule, *ctx.args, *recs, rec_off, rec_n, vi, va,
                    ctx.means2d is not None, grads)  # fmt: skip
        POOL.give(table, *recs)
        ctx.recs = ctx.args = None
        summed = POOL.take((N, R._G_COLS), np.float64)
        R._reduce(order, g_offsets, perm, grads, summed)
        out = torch.from_numpy(summed.astype(np.float32))
        POOL.give(grads, summed)
        if ctx.means2d is not None:
            ctx.means2d.absgrad = out[:, R._G_ABS : R._G_ABS + 2].clone()
        return (
            out[:, R._G_XY : R._G_XY + 2],
            out[:, R._G_CONIC : R._G_CONIC + 3],
            out[:, R._G_RGB : R._G_RGB + 3],
            out[:, R._G_OPAC],
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
    splats: Splats, view: View, settings: RenderSettings, absgrad: bool = False,
    fused: bool = True,
) -> RenderOutput:
    """Render in float32 on the CPU. ``RenderOutput.means2d`` is part of the autograd graph
    (call ``.retain_grad()`` on it before backward to read its gradient).

    ``fused`` (the default) projects and shades in one numba pass per splat
    (:mod:`.fused`); ``fused=False``, or a view whose pose or intrinsics require gradients
    (camera-pose refinement), uses the PyTorch twin (:mod:`.projection`, :mod:`.sh`), which
    autograd differentiates w.r.t. the camera too.
    """
    sp = splats.to(torch.float32) if splats.means.dtype != torch.float32 else splats
    degree = min(settings.sh_degree, sp.sh_degree)
    # The fused kernels give no gradient w.r.t. the camera: pose refinement takes the twin.
    if fused and not (view.world_to_cam.requires_grad or view.K.requires_grad):
        means2d, conics, colors, opacities, depths, radii = project_and_shade(
            sp, view, settings, degree
        )
    else:
        means2d, conics, depths, radii, opacities, colors = _project_torch(sp, view, settings, degree)
    image, alpha = rasterize_tiles(
        means2d, conics, colors, opacities, radii, depths, view.width, view.height,
        background=settings.background, max_alpha=settings.max_alpha,
        absgrad=absgrad or settings.absgrad,
    )  # fmt: skip
    return RenderOutput(image=image, alpha=alpha, means2d=means2d, radii=radii, depths=depths)


def _project_torch(sp: Splats, view: View, settings: RenderSettings, degree: int):
    """Projection and SH colours with PyTorch ops (autograd through every step)."""
    means2d, conics, depths, radii, opacities, w2c = project_splats(sp, view, settings)
    # Colours only for the Gaussians the rasterizer reads (radii > 0); the others get 0, and so
    # do their colour gradients, exactly as when the rasterizer ignores them.
    vis = visible_indices(radii)
    if vis.numel() == radii.shape[0]:
        colors = sh_to_color(degree, sp.means - camera_centre(w2c), _sh(sp, degree))
    else:
        sh = torch.cat([sp.sh0[vis], sp.shN[vis, : (degree + 1) ** 2 - 1]], dim=1)
        colors_vis = sh_to_color(degree, sp.means[vis] - camera_centre(w2c), sh)
        colors = colors_vis.new_zeros(radii.shape[0], 3).index_copy(0, vis, colors_vis)
    return means2d, conics, depths, radii, opacities, colors


@torch.no_grad()
def splat_weights(splats: Splats, view: View, settings: RenderSettings, w_max: Tensor | None = None,
                  w_sum: Tensor | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each splat's largest and summed blending weight (``alpha T``, its share of a pixel's
    colour) over the pixels of ``view``: ``(w_max [N], w_sum [N])`` float64. Given ``w_max`` and
    ``w_sum`` it accumulates into them (the maximum and the sum over several views: LightGaussian's
    global significance without its volume factor). Splats the view does not reach get 0."""
    sp = splats.to(torch.float32) if splats.means.dtype != torch.float32 else splats
    n = len(sp)
    w_max = torch.zeros(n, dtype=torch.float64) if w_max is None else w_max
    w_sum = torch.zeros(n, dtype=torch.float64) if w_sum is None else w_sum
    degree = min(settings.sh_degree, sp.sh_degree)
    means2d, conics, colors, opacities, depths, radii = project_and_shade(sp, view, settings, degree)
    _, _, ps = _forward_pass(means2d, conics, colors, opacities, radii, depths, view.width,
                             view.height, settings.background, settings.max_alpha, True)  # fmt: skip
    table = ps.args[2]
    R._pair_weights(ps.args[1], table, ps.recs[1], ps.recs[2], ps.rec_off, ps.rec_n,
                    float(settings.max_alpha), w_max.numpy(), w_sum.numpy())  # fmt: skip
    POOL.give(table, *ps.recs)
    return w_max, w_sum
