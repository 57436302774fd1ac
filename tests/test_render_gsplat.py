"""The gsplat backend (CUDA) against splatkit's CPU backend, forward and backward.

Tests marked ``gpu`` are skipped where PyTorch sees no CUDA GPU or gsplat is missing. Scenes are
those of ``scripts/make_golden.py``; tolerances are its (1e-3 absolute on image/alpha, 1e-3 of
the max |gradient| per tensor, a 0.2% allowance for 1/255-threshold flips). The packed layout's
scatter (``to_full``, ``mirror_grad``) is plain PyTorch and is tested on the CPU with tensors in
gsplat's packed layout, against gsplat's own packed path of its densification strategy.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_golden", REPO / "scripts" / "make_golden.py")
mg = sys.modules.setdefault("make_golden", importlib.util.module_from_spec(_spec))
if not hasattr(mg, "SCENES"):
    _spec.loader.exec_module(mg)


@pytest.fixture(autouse=True)
def _needs_gsplat_cuda(request):
    if request.node.get_closest_marker("gpu") is None:
        return
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("gsplat")


@pytest.mark.gpu
@pytest.mark.parametrize("spec", mg.SCENES, ids=lambda s: s.name)
def test_gsplat_backend_matches_cpu(spec):
    scene = mg.make_scene(spec)
    want = mg.render_splatkit("gsplat", *scene, device="cuda")
    got = mg.render_splatkit("cpu", *scene)
    problems = mg.compare_results(got, want)
    print(spec.name, mg.diff_summary(got, want))
    assert not problems, "\n".join(problems)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", mg.SCENES[:2], ids=lambda s: s.name)
def test_backend_is_raw_rasterization(spec):
    """splatkit's gsplat backend maps settings exactly as make_golden's direct call does."""
    scene = mg.make_scene(spec)
    a = mg.render_splatkit("gsplat", *scene, device="cuda")
    b = mg.render_gsplat(*scene)
    for k in ("image", "alpha", "radii"):
        assert torch.equal(a["outputs"][k], b["outputs"][k]), k
    # gsplat leaves means2d/depths of culled splats (radii == 0) unwritten: compare visible ones.
    visible = (b["outputs"]["radii"] > 0).all(dim=-1)
    for k in ("means2d", "depths"):
        assert torch.equal(a["outputs"][k][visible], b["outputs"][k][visible]), k
    for k in list(mg.PARAMS) + ["means2d"]:
        torch.testing.assert_close(a["grads"][k], b["grads"][k], rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
def test_means2d_grad_mirrored_and_absgrad():
    from splatkit.render.gsplat_backend import render

    splats, view, settings, w_img, _ = mg.make_scene(mg.SCENES[3])
    settings.absgrad = True  # optional switch read with getattr
    sp = mg._leaves(splats, "cuda")
    out = render(sp, view, settings)
    assert out.means2d.shape == (len(sp), 2) and out.radii.shape == (len(sp), 2)
    assert out.depths.shape == (len(sp),) and out.image.shape == (view.height, view.width, 3)
    out.means2d.retain_grad()
    out.extras["info"]["means2d"].retain_grad()
    (out.image * w_img.cuda()).sum().backward()
    g = out.means2d.grad
    assert g is not None and g.shape == (len(sp), 2)
    torch.testing.assert_close(g, out.extras["info"]["means2d"].grad[0])
    assert g.abs().sum() > 0
    assert out.means2d.absgrad.shape == (len(sp), 2)
    assert (out.means2d.absgrad >= g.abs() * (1 - 1e-4) - 1e-6).all()


@pytest.mark.gpu
def test_max_alpha_is_gsplats_and_silent():
    """gsplat's kernels clamp at 0.999 whatever the settings say; the backend warns nobody."""
    from splatkit.render.gsplat_backend import render

    splats, view, settings, _, _ = mg.make_scene(mg.SCENES[0])
    images = []
    for a in (0.99, 0.999):
        settings.max_alpha = a
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            images.append(render(splats.to("cuda"), view, settings).image)
    assert torch.equal(images[0], images[1])


@pytest.mark.gpu
def test_cpu_splats_rejected():
    from splatkit.render.gsplat_backend import render

    splats, view, settings, _, _ = mg.make_scene(mg.SCENES[0])
    with pytest.raises(ValueError, match="CUDA"):
        render(splats, view, settings)


# -- packed mode ------------------------------------------------------------------------------


class _SetsAbsgrad(torch.autograd.Function):
    """Stands for gsplat's rasterizer backward, which sets ``means2d.absgrad`` on its input."""

    @staticmethod
    def forward(ctx, means2d):
        ctx.means2d = means2d
        return means2d.view_as(means2d)

    @staticmethod
    def backward(ctx, grad):
        ctx.means2d.absgrad = 3.0 * grad.abs()
        return grad


def _packed_case(n=50, nnz=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(n, generator=g)[:nnz].sort().values
    packed = torch.randn(nnz, 2, generator=g).mul(40).add(60).requires_grad_(True)
    radii = torch.randint(1, 9, (nnz, 2), generator=g, dtype=torch.int32)
    weights = torch.randn(nnz, 2, generator=g)
    return ids, packed, radii, weights


def test_packed_layout_scattered_to_full_with_gradients():
    from splatkit.render.gsplat_backend import mirror_grad, to_full

    n = 50
    ids, packed, radii, w = _packed_case(n)
    full = to_full(packed, n, ids)
    full_radii = to_full(radii, n, ids)
    assert full.shape == (n, 2) and full_radii.shape == (n, 2) and full_radii.dtype == torch.int32
    assert torch.equal(full[ids], packed.detach()) and torch.equal(full_radii[ids], radii)
    culled = torch.ones(n, dtype=torch.bool)
    culled[ids] = False
    assert (full[culled] == 0).all() and (full_radii[culled] == 0).all()
    mirror_grad(packed, full, absgrad=True, ids=ids)
    for _ in range(2):  # two backward passes accumulate, as retain_grad does
        (_SetsAbsgrad.apply(packed) * w).sum().backward()
    assert torch.equal(full.grad[ids], 2 * w) and (full.grad[culled] == 0).all()
    assert torch.equal(full.absgrad[ids], 3 * w.abs()) and (full.absgrad[culled] == 0).all()
    # the batched (non-packed) layout: [1, N, 2] -> its row
    batched = torch.randn(1, n, 2, requires_grad=True)
    view = to_full(batched, n, None)
    mirror_grad(batched, view)
    (batched * 2).sum().backward()
    assert torch.equal(view.grad, torch.full((n, 2), 2.0))


def test_scattered_packed_info_updates_strategy_as_gsplats_packed_path():
    """The loop hands gsplat's strategy the scattered [N] layout (packed=False); its state must
    equal what gsplat's own packed path computes from the [nnz] tensors."""
    from splatkit.train.optim import SplatDefaultStrategy, strategy_info

    n, W, H = 50, 120, 80
    ids, packed, radii, w = _packed_case(n, seed=3)
    grad = w * 1e-3
    params = {"means": torch.zeros(n, 3)}
    full = torch.zeros(n, 2)
    full.grad = torch.zeros(n, 2).index_copy(0, ids, grad)
    full_radii = torch.zeros(n, 2, dtype=torch.int32).index_copy(0, ids, radii)
    ours = SplatDefaultStrategy(refine_scale2d_stop_iter=1)
    s_ours = ours.initialize_state(scene_scale=1.0)
    ours._update_state(params, s_ours, strategy_info(full, full_radii, W, H), packed=False)
    theirs = SplatDefaultStrategy(refine_scale2d_stop_iter=1)
    s_theirs = theirs.initialize_state(scene_scale=1.0)
    packed.grad = grad.clone()
    info = {"means2d": packed, "radii": radii, "gaussian_ids": ids, "width": W, "height": H,
            "n_cameras": 1}
    theirs._update_state(params, s_theirs, info, packed=True)
    for k in ("grad2d", "count", "radii"):
        torch.testing.assert_close(s_ours[k], s_theirs[k], rtol=1e-6, atol=0, msg=k)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", mg.SCENES[:3], ids=lambda s: s.name)
def test_packed_render_equals_unpacked(spec):
    """Packed mode on CUDA: the same image, and after the scatter the same [N] means2d, radii
    and gradients (densification inputs included) as the non-packed path."""
    from splatkit.render.gsplat_backend import render

    splats, view, settings, w_img, _ = mg.make_scene(spec)
    settings.absgrad = True
    results = []
    for packed in (False, True):
        settings.packed = packed
        sp = mg._leaves(splats, "cuda")
        out = render(sp, view, settings)
        if out.means2d.requires_grad:
            out.means2d.retain_grad()
        (out.image * w_img.cuda()).sum().backward()
        results.append((out, sp))
    (a, sa), (b, sb) = results
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=1e-5)
    assert torch.equal(a.radii, b.radii)
    vis = (a.radii > 0).all(dim=-1)
    torch.testing.assert_close(a.means2d[vis], b.means2d[vis])
    torch.testing.assert_close(a.means2d.grad, b.means2d.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a.means2d.absgrad, b.means2d.absgrad, rtol=1e-4, atol=1e-7)
    for k in ("means", "log_scales", "quats", "opacity_logits", "sh0"):
        ga, gb = getattr(sa, k).grad, getattr(sb, k).grad
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6 * float(ga.abs().max()) + 1e-9, msg=k)


@pytest.mark.gpu
def test_pose_gradient_reaches_viewmat_on_cuda():
    from splatkit.render.gsplat_backend import render

    splats, view, settings, w_img, _ = mg.make_scene(mg.SCENES[1])
    w2c = view.world_to_cam.clone().cuda().requires_grad_(True)
    out = render(splats.to("cuda"), type(view)(w2c, view.K, view.width, view.height), settings)
    (out.image * w_img.cuda()).sum().backward()
    assert w2c.grad is not None and w2c.grad[:3].abs().sum() > 0
