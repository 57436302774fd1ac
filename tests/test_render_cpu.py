"""The fast numba backend against the float64 reference; determinism; edge cases.

Tolerance: the fast renderer gets the float32 parameters, the reference the same values cast to
float64. Projection and SH run in float32 (relative error ~1e-6 of O(1) quantities), and the
kernels accumulate in float64, so image, alpha and the gradients of the loss used here (a
per-pixel mean, which keeps every gradient below ~1) agree to ~1e-6 absolute: 1e-5 leaves a
margin of ten. A pixel could in principle differ by a whole splat if a float32 rounding moved a
Gaussian across a rule threshold (alpha = 1/255, T = 1e-4, a tile edge); that has probability
~1e-7 per pixel-Gaussian pair and does not happen with these fixed seeds.
"""

import numba
import pytest
import torch

from splatkit.render import RenderSettings, View, get_renderer
from splatkit.render.cpu import render as render_cpu
from splatkit.render.reference import make_test_scene
from splatkit.render.reference import render as render_ref
from splatkit.splats import Splats

NAMES = ["means", "log_scales", "quats", "opacity_logits", "sh0", "shN"]


def run(render, splats, view, settings, seed=5):
    params = {k: v.detach().clone().requires_grad_(True) for k, v in splats.as_dict().items()}
    out = render(Splats.from_dict(params), view, settings)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out.image.shape, generator=g, dtype=torch.float64)
    wa = torch.randn(out.alpha.shape, generator=g, dtype=torch.float64)
    out.means2d.retain_grad()
    loss = ((out.image.double() * w).sum() + (out.alpha.double() * wa).sum()) / w[..., 0].numel()
    loss.backward()
    return out, {k: params[k].grad for k in NAMES}


CASES = [  # seed, sh degree (settings), background, antialiased, max_alpha
    (0, 0, (0.0, 0.0, 0.0), False, 0.99),
    (1, 1, (0.3, 0.6, 0.9), False, 0.99),
    (2, 2, (1.0, 1.0, 1.0), True, 0.99),
    (3, 3, (0.3, 0.6, 0.9), False, 0.999),
    (4, 3, (0.5, 0.1, 0.2), True, 0.999),
]


@pytest.mark.parametrize("seed,degree,bg,aa,max_alpha", CASES)
def test_fast_matches_reference(seed, degree, bg, aa, max_alpha):
    splats, view = make_test_scene(seed, n=160, sh_degree=3, width=50, height=37)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(sh_degree=degree, background=bg, antialiased=aa, max_alpha=max_alpha)
    ref, g_ref = run(render_ref, sp32.to(torch.float64), view, settings)
    out, g_out = run(render_cpu, sp32, view, settings)
    assert out.image.dtype == torch.float32 and out.image.shape == (37, 50, 3)
    assert out.radii.dtype == torch.int32 and torch.equal(out.radii, ref.radii)
    vis = (ref.radii > 0).all(-1)
    assert 40 < vis.sum() < 160  # some culled (behind, near, off-screen), most visible
    assert (ref.alpha > 0.5).float().mean() > 0.3  # a scene with real occlusion
    torch.testing.assert_close(out.image.double(), ref.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.alpha.double(), ref.alpha, atol=1e-5, rtol=0)
    for k in NAMES:
        if k != "shN" or degree > 0:
            assert g_ref[k].abs().max() > 1e-4, k  # the gradient is exercised
        torch.testing.assert_close(g_out[k].double(), g_ref[k], atol=1e-5, rtol=0, msg=k)
    torch.testing.assert_close(out.means2d.grad.double(), ref.means2d.grad, atol=1e-5, rtol=0)


def test_means2d_is_graph_tensor_and_absgrad():
    splats, view = make_test_scene(1, n=100, sh_degree=1, width=40, height=30)
    params = {k: v.float().requires_grad_(True) for k, v in splats.as_dict().items()}
    out = render_cpu(Splats.from_dict(params), view, RenderSettings(), absgrad=True)
    assert out.means2d.shape == (100, 2) and not out.means2d.is_leaf
    assert out.radii.shape == (100, 2) and out.radii.dtype == torch.int32
    out.means2d.retain_grad()
    out.image.sum().backward()
    grad, absgrad = out.means2d.grad, out.means2d.absgrad
    assert grad.shape == absgrad.shape == (100, 2)
    assert (absgrad >= grad.abs() - 1e-6).all() and absgrad.max() > 0
    culled = (out.radii == 0).any(-1)
    assert culled.any() and (grad[culled] == 0).all() and (absgrad[culled] == 0).all()


def test_fast_is_bitwise_deterministic_across_runs_and_threads():
    splats, view = make_test_scene(7, n=3000, sh_degree=3, width=96, height=64)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(background=(0.2, 0.3, 0.4))
    a, ga = run(render_cpu, sp32, view, settings)
    b, gb = run(render_cpu, sp32, view, settings)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        c, gc = run(render_cpu, sp32, view, settings)
    finally:
        numba.set_num_threads(old)
    for x in (b, c):
        assert torch.equal(a.image, x.image) and torch.equal(a.alpha, x.alpha)
    for k in NAMES:
        assert torch.equal(ga[k], gb[k]) and torch.equal(ga[k], gc[k]), k


@pytest.mark.parametrize("n", [0, 5])
def test_empty_and_all_culled_scenes(n):
    splats, view = make_test_scene(0, n=max(n, 1), sh_degree=2, width=33, height=17)
    splats = splats.index(torch.arange(n)).to(torch.float32)
    bg = (0.1, 0.7, 0.4)
    behind = View(view.world_to_cam.clone(), view.K, view.width, view.height)
    behind.world_to_cam[2, 3] -= 100.0  # everything behind the camera
    out, grads = run(render_cpu, splats, behind, RenderSettings(background=bg))
    assert out.image.shape == (17, 33, 3)
    assert torch.equal(out.image, torch.tensor(bg).expand(17, 33, 3))
    assert (out.alpha == 0).all() and (out.radii == 0).all() and out.radii.shape == (n, 2)
    for k in NAMES:
        assert grads[k].shape == splats.as_dict()[k].shape and (grads[k] == 0).all()


def test_get_renderer_cpu():
    assert get_renderer("cpu") is render_cpu


def test_depth_order_is_a_stable_sort():
    import numpy as np

    from splatkit.render.cpu import _depth_order

    rng = np.random.default_rng(1)
    d = (rng.standard_normal(5000) * 3).astype(np.float32)
    d[::7] = d[3]  # ties, and negative depths
    idx = np.sort(rng.choice(5000, 3000, replace=False))
    assert (_depth_order(idx, d) == idx[np.argsort(d[idx], kind="stable")]).all()


def test_visible_indices_are_the_splats_with_both_radii_positive():
    from splatkit.render.cpu import visible_indices

    g = torch.Generator().manual_seed(2)
    for dtype in (torch.int32, torch.int64):
        radii = torch.randint(-1, 3, (500, 2), generator=g).to(dtype)
        got = visible_indices(radii)
        assert got.dtype == torch.int64
        assert torch.equal(got, (radii > 0).all(dim=-1).nonzero().flatten())


@pytest.mark.parametrize("seed,max_alpha", [(0, 0.99), (3, 0.999)])
def test_splat_weights_match_reference(seed, max_alpha):
    """Each splat's largest and summed blending weight over the image (cleanup's significance)
    against the float64 dense reference; splats the view never reaches get exactly 0."""
    from splatkit.render.cpu import splat_weights
    from splatkit.render.reference import splat_weights as splat_weights_ref

    splats, view = make_test_scene(seed, n=160, sh_degree=3, width=50, height=37)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(sh_degree=3, max_alpha=max_alpha)
    ref_max, ref_sum = splat_weights_ref(sp32.to(torch.float64), view, settings)
    w_max, w_sum = splat_weights(sp32, view, settings)
    assert w_max.dtype == torch.float64 and w_max.shape == (160,)
    assert (ref_max == 0).sum() > 10 and (ref_max > 0.1).sum() > 10  # both kinds are present
    torch.testing.assert_close(w_max, ref_max, atol=1e-5, rtol=0)
    torch.testing.assert_close(w_sum, ref_sum, atol=1e-4, rtol=1e-5)
    assert torch.equal(w_max == 0, ref_max == 0)
    # Accumulating over two views: the max of the maxima, the sum of the sums.
    w_max2, w_sum2 = splat_weights(sp32, view, settings, w_max.clone(), w_sum.clone())
    torch.testing.assert_close(w_max2, w_max)
    torch.testing.assert_close(w_sum2, 2 * w_sum)
    # The weights of a pixel are its colour's shares: they sum to its alpha.
    out = render_cpu(sp32, view, settings)
    assert abs(float(w_sum.sum()) - float(out.alpha.double().sum())) < 1e-3
