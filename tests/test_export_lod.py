"""Levels of detail: moment matching, ordering, and each level rendered from its distance."""

from __future__ import annotations

import math

import pytest
import torch

from splatkit.export.lod import build_levels, covariances, merge_cells
from splatkit.render import RenderSettings, View, make_renderer
from splatkit.splats import Splats, rgb_to_sh0

FOCAL, W, H = 240.0, 320, 240


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def textured_wall(n_side: int = 120, size: float = 12.0) -> Splats:
    """A wall (the z=0 plane) of flat splats on a grid, its colour a smooth pattern plus grain."""
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(-size / 2, size / 2, n_side)
    x, y = torch.meshgrid(u, u, indexing="ij")
    means = torch.stack([x.flatten(), y.flatten(), torch.zeros(n_side * n_side)], 1)
    n = len(means)
    step = size / (n_side - 1)
    log_scales = torch.log(torch.tensor([step * 0.7, step * 0.7, step * 0.05])).repeat(n, 1)
    rgb = torch.stack([0.5 + 0.4 * torch.sin(means[:, 0]), 0.5 + 0.4 * torch.cos(0.7 * means[:, 1]),
                       0.5 + 0.2 * torch.sin(means[:, 0] + means[:, 1])], 1)
    rgb = (rgb + 0.05 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(n, 1)
    return Splats(means, log_scales, quats, torch.full((n,), 3.0), rgb_to_sh0(rgb)[:, None, :],
                  torch.zeros(n, 0, 3))


def _view_from(distance: float) -> View:
    """Looking at the wall's centre along -z from ``distance`` (OpenCV axes)."""
    M = torch.eye(4, dtype=torch.float64)
    M[1, 1], M[2, 2] = -1.0, -1.0  # camera y down, z towards the wall
    M[2, 3] = distance
    K = torch.tensor([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]], dtype=torch.float64)
    return View(M.float(), K.float(), W, H)


def test_a_splat_alone_in_its_cell_is_unchanged():
    s = Splats.random(50, sh_degree=1, seed=3)
    s.means[:] = torch.arange(50, dtype=torch.float32)[:, None] * 10  # far apart: one per cell
    m = merge_cells(s, cell=1.0)
    order = torch.argsort(m.means[:, 0])
    assert len(m) == 50
    assert torch.allclose(m.means[order], s.means, atol=1e-5)
    assert torch.allclose(covariances(m)[order], covariances(s), rtol=1e-4, atol=1e-9)
    assert torch.allclose(m.opacities[order], s.opacities.clamp(1e-4, 1 - 1e-4), atol=1e-5)
    assert torch.allclose(m.sh0[order], s.sh0, atol=1e-5) and torch.allclose(m.shN[order], s.shN, atol=1e-5)


def test_two_splats_merge_to_their_weighted_moments():
    s = Splats(torch.tensor([[0.1, 0.1, 0.1], [0.5, 0.1, 0.1]]), torch.log(torch.full((2, 3), 0.1)),
               torch.tensor([[1.0, 0, 0, 0]] * 2), torch.zeros(2), torch.zeros(2, 1, 3), torch.zeros(2, 0, 3))
    m = merge_cells(s, cell=1.0)
    assert len(m) == 1
    assert torch.allclose(m.means[0].double(), torch.tensor([0.3, 0.1, 0.1], dtype=torch.float64), atol=1e-6)
    cov = covariances(m)[0]
    # equal weights: 0.01 per axis plus the spread (0.2^2) along x
    assert math.isclose(float(cov[0, 0]), 0.01 + 0.04, rel_tol=1e-4)
    assert math.isclose(float(cov[1, 1]), 0.01, rel_tol=1e-4)


def test_levels_are_ordered_and_each_renders_close_to_the_full_set_from_its_distance():
    wall = textured_wall()
    levels = build_levels(wall, levels=3, focal_px=FOCAL, pixel_error=2.0)
    assert len(levels) == 3
    counts = [len(lv.splats) for lv in levels]
    assert counts == sorted(counts, reverse=True)
    assert counts[1] <= counts[0] / 4 and counts[2] <= counts[1] / 4
    dists = [lv.distance for lv in levels]
    assert dists == sorted(dists) and dists[0] == 0
    render = make_renderer("cpu")
    settings = RenderSettings(sh_degree=0)
    for lv in levels[1:]:
        view = _view_from(max(lv.distance, 1.0))
        full = render(wall, view, settings).image.clamp(0, 1)
        coarse = render(lv.splats, view, settings).image.clamp(0, 1)
        psnr = -10 * math.log10(float(((full - coarse) ** 2).mean()) + 1e-12)
        print(f"level {lv.index}: {len(lv.splats)} splats, cell {lv.cell:.3f}, from {lv.distance:.1f}: "
              f"{psnr:.2f} dB")
        assert psnr >= 28.0, (lv.index, psnr)
