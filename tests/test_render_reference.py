"""The dense reference renderer: gradcheck, gsplat's tile rule, and the compositing conventions
(each convention is checked on both the reference and the fast CPU rasterizer)."""

import pytest
import torch
from gsplat.cuda._torch_impl import _isect_tiles

from splatkit.render import MAX_ALPHA, RenderSettings, View
from splatkit.render.cpu import rasterize_tiles
from splatkit.render.reference import make_test_scene, rasterize_dense, render, tile_ranges
from splatkit.splats import Splats

BACKENDS = ["reference", "cpu"]


def raster(backend, means2d, conics, colors, opac, radii, depths, W, H, bg=(0, 0, 0),
           max_alpha=MAX_ALPHA):  # fmt: skip
    """Rasterize float64 2D inputs with either backend; returns float64 (image, alpha)."""
    d = torch.float64
    t = [torch.as_tensor(x, dtype=d) for x in (means2d, conics, colors, opac, depths)]
    radii = torch.as_tensor(radii, dtype=torch.int32)
    if backend == "reference":
        return rasterize_dense(t[0], t[1], t[2], t[3], radii, W, H,
                               torch.tensor(bg, dtype=d), max_alpha, depths=t[4])  # fmt: skip
    f = [x.float() for x in t]
    img, a = rasterize_tiles(f[0], f[1], f[2], f[3], radii, f[4], W, H, bg, max_alpha)
    return img.double(), a.double()


def test_reference_gradcheck():
    splats, view = make_test_scene(3, n=10, sh_degree=2, width=20, height=14)
    # Keep every Gaussian in front and moderate so that finite differences stay off the
    # piecewise-constant rules (thresholds, integer radii).
    splats.means[:2] = splats.means[2:4]
    splats.log_scales.clamp_(-2.5, -1.0)
    settings = RenderSettings(sh_degree=2, background=(0.1, 0.2, 0.3))
    names = ["means", "log_scales", "quats", "opacity_logits", "sh0", "shN"]
    base = splats.as_dict()
    w = torch.randn(14, 20, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(*params):
        d = dict(base, **dict(zip(names, params, strict=True)))
        out = render(Splats.from_dict(d), view, settings)
        return (torch.cat([out.image, out.alpha], -1) * w).sum()

    inputs = tuple(base[k].clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_tile_ranges_match_gsplat_isect_tiles():
    g = torch.Generator().manual_seed(0)
    n, W, H = 200, 100, 70
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([140.0, 110.0]) - 20
    radii = torch.randint(0, 40, (n, 2), generator=g, dtype=torch.int32)
    depths = torch.rand(n, generator=g) + 1
    tiles_per_gauss, _, _ = _isect_tiles(means2d[None], radii[None], depths[None], 16, 7, 5)
    lo, hi = tile_ranges(means2d, radii, W, H)
    assert torch.equal((hi - lo).prod(-1), tiles_per_gauss[0].long())


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_pixel_centre_is_half_integer(backend):
    """Pixel (row i, column j) is sampled at (j + 0.5, i + 0.5): a Gaussian centred there has
    sigma = 0 at that pixel and alpha = opacity."""
    img, a = raster(backend, [[5.5, 3.5]], [[1.0, 0.0, 1.0]], [[1.0, 1.0, 1.0]], [0.5],
                    [[3, 3]], [1.0], 16, 16)  # fmt: skip
    assert a[3, 5, 0].item() == pytest.approx(0.5, abs=1e-7)
    assert a[3, 4, 0].item() == pytest.approx(0.5 * torch.exp(torch.tensor(-0.5)).item(), abs=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_alpha_threshold_skip(backend):
    """alpha < 1/255 contributes nothing (not even a tiny amount); alpha >= 1/255 does."""
    _, a = raster(backend, [[4.5, 4.5], [10.5, 4.5]], [[1.0, 0, 1.0]] * 2, [[1.0, 1, 1]] * 2,
                  [0.99 / 255, 1.02 / 255], [[3, 3]] * 2, [1.0, 2.0], 16, 16)  # fmt: skip
    assert a[4, 4, 0].item() == 0.0
    assert a[4, 10, 0].item() == pytest.approx(1.02 / 255, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_alpha", [0.99, 0.999])
def test_convention_alpha_clamped_at_max_alpha(backend, max_alpha):
    _, a = raster(backend, [[4.5, 4.5]], [[1.0, 0, 1.0]], [[1.0, 1, 1]], [1.0], [[3, 3]], [1.0],
                  16, 16, max_alpha=max_alpha)  # fmt: skip
    assert a[4, 4, 0].item() == pytest.approx(max_alpha, abs=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_transmittance_stop_is_exclusive(backend):
    """Front to back: A (0.99) then B (0.99) leave T = 0.01^2 (just above 1e-4 in floating
    point); C would take T below 1e-4, so C and everything behind it are dropped entirely."""
    bg = (0.0, 0.0, 1.0)
    img, a = raster(backend, [[4.5, 4.5]] * 3, [[1.0, 0, 1.0]] * 3,
                    [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 7.0]], [1.0, 1.0, 1.0], [[3, 3]] * 3,
                    [3.0, 1.0, 2.0], 16, 16, bg=bg)  # fmt: skip
    # Depth order: index 1 (green) is A, index 2 (blue x7) is B, index 0 (red) is C.
    t1 = 1 - 0.99
    T = t1 * t1
    expect = torch.tensor([0.0, 0.99, 0.99 * t1 * 7.0 + T * 1.0], dtype=torch.float64)
    torch.testing.assert_close(img[4, 4], expect, atol=1e-6, rtol=1e-6)
    assert a[4, 4, 0].item() == pytest.approx(1 - T, abs=1e-7)  # float32 output


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_background_weighted_by_final_transmittance(backend):
    bg = (0.2, 0.4, 0.8)
    img, a = raster(backend, [[4.5, 4.5]], [[1.0, 0, 1.0]], [[1.0, 0.5, 0.0]], [0.6], [[3, 3]],
                    [1.0], 16, 16, bg=bg)  # fmt: skip
    expect = 0.6 * torch.tensor([1.0, 0.5, 0.0]) + 0.4 * torch.tensor(bg)
    torch.testing.assert_close(img[4, 4], expect.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(img[15, 15], torch.tensor(bg).double(), atol=1e-7, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_tile_culling_matches_isect_tiles(backend):
    """A Gaussian only reaches the 16x16 tiles its [mean - radius, mean + radius] box overlaps,
    even where its alpha would pass the threshold: x in [8.5, 12.5] -> tile column 0 only."""
    _, a = raster(backend, [[10.5, 4.5]], [[0.01, 0, 0.01]], [[1.0, 1, 1]], [0.9], [[2, 2]],
                  [1.0], 32, 16)  # fmt: skip
    assert a[4, 15, 0].item() > 0.5
    assert a[4, 16, 0].item() == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_convention_depth_order_front_to_back(backend):
    """The nearer Gaussian is composited first whatever its index."""
    img, _ = raster(backend, [[4.5, 4.5]] * 2, [[1.0, 0, 1.0]] * 2, [[1.0, 0, 0], [0, 1.0, 0]],
                    [0.5, 0.5], [[3, 3]] * 2, [2.0, 1.0], 16, 16)  # fmt: skip
    torch.testing.assert_close(img[4, 4], torch.tensor([0.25, 0.5, 0.0]).double(), atol=1e-7,
                               rtol=0)  # fmt: skip


def test_reference_empty_and_culled():
    settings = RenderSettings(background=(0.3, 0.2, 0.1))
    splats, view = make_test_scene(0, n=8, sh_degree=1, width=20, height=10)
    empty = splats.index(torch.zeros(8, dtype=torch.bool))
    out = render(empty, view, settings)
    assert torch.allclose(out.image, torch.tensor(settings.background, dtype=torch.float64))
    assert out.radii.shape == (0, 2) and out.alpha.abs().max() == 0
    behind = View(view.world_to_cam.clone(), view.K, 20, 10)
    behind.world_to_cam[2, 3] -= 100.0
    out = render(splats, behind, settings)
    assert (out.radii == 0).all() and out.alpha.abs().max() == 0
