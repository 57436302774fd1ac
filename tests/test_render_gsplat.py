"""The gsplat backend (CUDA) against splatkit's CPU backend, forward and backward.

Marked ``gpu``: skipped where PyTorch sees no CUDA GPU or gsplat is missing. Scenes are those of
``scripts/make_golden.py``; tolerances are its (1e-3 absolute on image/alpha, 1e-3 of the max
|gradient| per tensor, a 0.2% allowance for 1/255-threshold flips).
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

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _needs_gsplat_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("gsplat")


@pytest.mark.parametrize("spec", mg.SCENES, ids=lambda s: s.name)
def test_gsplat_backend_matches_cpu(spec):
    scene = mg.make_scene(spec)
    want = mg.render_splatkit("gsplat", *scene, device="cuda")
    got = mg.render_splatkit("cpu", *scene)
    problems = mg.compare_results(got, want)
    print(spec.name, mg.diff_summary(got, want))
    assert not problems, "\n".join(problems)


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


def test_max_alpha_warning():
    import splatkit.render.gsplat_backend as gb

    splats, view, settings, _, _ = mg.make_scene(mg.SCENES[0])
    settings.max_alpha = 0.99
    gb._warned_max_alpha = False
    with pytest.warns(UserWarning, match="0.999"):
        gb.render(splats.to("cuda"), view, settings)
    settings.max_alpha = 0.999
    gb._warned_max_alpha = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gb.render(splats.to("cuda"), view, settings)


def test_cpu_splats_rejected():
    from splatkit.render.gsplat_backend import render

    splats, view, settings, _, _ = mg.make_scene(mg.SCENES[0])
    with pytest.raises(ValueError, match="CUDA"):
        render(splats, view, settings)
