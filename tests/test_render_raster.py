"""The tile rasterizer's scheduling pieces: the depth sort, the tile schedule, and results that do
not depend on how tiles are shared among workers."""

import numpy as np
import pytest
import torch

from splatkit.render import RenderSettings
from splatkit.render import cpu as C
from splatkit.render import raster as R
from splatkit.render.reference import make_test_scene
from tests.test_render_cpu import NAMES, run


def test_depth_sort_is_numpys_stable_sort_with_ties_and_signs():
    rng = np.random.default_rng(3)
    depths = rng.choice(np.float32([-2.5, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0, 7e5]), 5000)
    depths[::7] = rng.normal(size=depths[::7].shape).astype(np.float32)
    idx = np.sort(rng.choice(5000, 3000, replace=False)).astype(np.int64)
    got = R._depth_sort(idx, depths.view(np.uint32))
    want = idx[np.argsort(depths[idx], kind="stable")]
    # -0.0 and 0.0 compare equal for numpy but not as bits: compare the depths, then the order
    # within each run of equal bit patterns.
    assert np.array_equal(depths[got], depths[want])
    keys = depths.view(np.uint32)[got]
    for k in np.unique(keys):
        run_ = got[keys == k]
        assert np.all(np.diff(run_) > 0), "equal depths must keep their index order"


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_schedule_runs_every_tile_once_and_balances_the_load(workers):
    rng = np.random.default_rng(workers)
    costs = np.concatenate([rng.pareto(1.2, 300) * 1000, np.zeros(20)])  # heavy tail, empty tiles
    offsets, tiles = R._schedule(costs, workers)
    assert offsets.shape == (workers + 1,) and offsets[0] == 0 and offsets[-1] == costs.shape[0]
    assert np.array_equal(np.sort(tiles), np.arange(costs.shape[0]))
    loads = np.array([costs[tiles[offsets[w] : offsets[w + 1]]].sum() for w in range(workers)])
    # Longest-first greedy: no worker ends more than one tile's cost after the least loaded one.
    assert loads.max() - loads.min() <= costs.max() + 1e-9
    for w in range(workers):
        mine = costs[tiles[offsets[w] : offsets[w + 1]]]
        assert np.all(np.diff(mine) <= 0), "each worker runs its tiles longest first"


def test_a_sorted_tile_list_is_not_given_to_one_worker():
    """The failure the schedule replaced: a longest-first list split into contiguous halves."""
    costs = np.arange(100, 0, -1, dtype=np.float64) ** 2
    offsets, tiles = R._schedule(costs, 2)
    loads = [costs[tiles[offsets[w] : offsets[w + 1]]].sum() for w in range(2)]
    halves = [costs[:50].sum(), costs[50:].sum()]
    assert max(loads) / min(loads) < 1.01 < max(halves) / min(halves)


@pytest.mark.parametrize("workers", [1, 3, 7])
def test_results_do_not_depend_on_the_number_of_workers(monkeypatch, workers):
    splats, view = make_test_scene(11, n=2500, sh_degree=2, width=90, height=70)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(background=(0.5, 0.1, 0.9))
    a, ga = run(C.render, sp32, view, settings)
    monkeypatch.setattr(C.numba, "get_num_threads", lambda: workers)
    b, gb = run(C.render, sp32, view, settings)
    assert torch.equal(a.image, b.image) and torch.equal(a.alpha, b.alpha)
    for k in NAMES:
        assert torch.equal(ga[k], gb[k]), k


def test_visible_are_the_gaussians_with_both_radii_positive():
    rad = np.array([[0, 0], [3, 0], [0, 2], [1, 1], [5, 7], [-1, 4]], dtype=np.int32)
    assert R._visible(rad).tolist() == [3, 4]
    assert R._visible(np.zeros((0, 2), np.int32)).shape == (0,)


def _thin_ellipses(n=400, seed=0, width=70, height=50):
    """Rasterizer inputs of splats from round to needle-thin (eigenvalue ratios up to 1e6), at
    every angle, opacities from just over 1/255 to 1."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=g) * torch.pi
    major = 0.3 + 6.0 * torch.rand(n, generator=g)
    minor = major / 10 ** (6.0 * torch.rand(n, generator=g))
    c, s = torch.cos(angle), torch.sin(angle)
    cov = torch.stack([c * c * major**2 + s * s * minor**2, c * s * (major**2 - minor**2),
                       s * s * major**2 + c * c * minor**2], 1).double()  # fmt: skip
    det = cov[:, 0] * cov[:, 2] - cov[:, 1] ** 2
    conics = torch.stack([cov[:, 2] / det, -cov[:, 1] / det, cov[:, 0] / det], 1).float()
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    radii = (3 * major).ceil().int().clamp(min=1)[:, None].expand(n, 2).contiguous()
    opac = 1 / 255 + torch.rand(n, generator=g) * (1 - 1 / 255)
    colors = torch.rand(n, 3, generator=g)
    depths = torch.rand(n, generator=g) + 1
    return means2d, conics, colors, opac, radii, depths, width, height


def test_sigma_boxes_are_conservative_on_thin_ellipses(monkeypatch):
    """The boxes only pre-filter: the same images and gradients bitwise as whole-tile walks."""
    args = _thin_ellipses()

    def run_(upstream_seed=1):
        ins = [a.clone().requires_grad_(i < 4) if torch.is_tensor(a) else a
               for i, a in enumerate(args)]  # fmt: skip
        image, alpha = C.rasterize_tiles(*ins, background=(0.2, 0.4, 0.6))
        g = torch.Generator().manual_seed(upstream_seed)
        torch.autograd.backward([image, alpha], [torch.randn(image.shape, generator=g),
                                                 torch.randn(alpha.shape, generator=g)])  # fmt: skip
        return [image.detach(), alpha.detach()] + [x.grad for x in ins[:4]]

    boxed = run_()
    real = R._prepare

    def whole_tiles(order, means2d, conics, colors, opacities, p):
        real(order, means2d, conics, colors, opacities, p)
        rows = p[order]
        live = rows[:, R._P_EX] > -1.0
        rows[live, R._P_EX] = rows[live, R._P_EY] = 1e9
        p[order] = rows

    monkeypatch.setattr(R, "_prepare", whole_tiles)
    walked = run_()
    assert boxed[0].std() > 0.05  # the scene covers the image
    for x, y in zip(boxed, walked, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_binning_in_blocks_is_the_serial_counting_sort(workers):
    rng = np.random.default_rng(workers)
    n, tiles_w, tiles_h = 700, 9, 6
    order = rng.permutation(1000)[:n].astype(np.int64)
    x0 = rng.integers(0, tiles_w, n)
    y0 = rng.integers(0, tiles_h, n)
    boxes = np.stack([x0, np.minimum(x0 + rng.integers(0, 4, n), tiles_w), y0,
                      np.minimum(y0 + rng.integers(0, 3, n), tiles_h)], 1).astype(np.int64)  # fmt: skip
    counts = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    serial = R._bin(order, boxes, counts, tiles_w * tiles_h, tiles_w, 1)
    blocks = R._bin(order, boxes, counts, tiles_w * tiles_h, tiles_w, workers)
    for a, b in zip(serial, blocks, strict=True):
        assert np.array_equal(a, b)
    offsets, gauss, g_offsets, perm = serial
    rank = np.empty(1000, np.int64)
    rank[order] = np.arange(n)
    for t in range(tiles_w * tiles_h):  # each tile's run in depth (order) order
        assert np.all(np.diff(rank[gauss[offsets[t] : offsets[t + 1]]]) > 0)
    assert np.array_equal(np.sort(perm), np.arange(counts.sum()))
    assert np.array_equal(gauss[perm], np.repeat(order, counts))
