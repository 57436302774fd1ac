"""The fused numba projection + SH kernels against their PyTorch twin (projection.py, sh.py).

Both get the same float32 parameters; the twin runs in float64 (autograd), the kernels in
float64 inside with float32 outputs and gradients, so they agree to float32 rounding: outputs
within 1e-6 relative, each gradient within 1e-6 of its tensor's largest value. The scenes have
splats behind the camera, at the near plane, off-screen (clamped Jacobian), huge, tiny and flat.
"""

import numba
import pytest
import torch

from splatkit.render import RenderSettings
from splatkit.render.fused import project_and_shade
from splatkit.render.projection import camera_centre, project_splats
from splatkit.render.reference import make_test_scene
from splatkit.render.sh import sh_to_color
from splatkit.splats import Splats

NAMES = ["means", "log_scales", "quats", "opacity_logits", "sh0", "shN"]


def twin(splats: Splats, view, settings, degree):
    means2d, conics, depths, radii, opac, w2c = project_splats(splats, view, settings)
    colors = sh_to_color(degree, splats.means - camera_centre(w2c), splats.sh)
    vis = (radii > 0).all(-1, keepdim=True)
    colors = torch.where(vis, colors, torch.zeros_like(colors))
    return means2d, conics, colors, opac, depths, radii


def outputs_and_grads(fn, splats, view, settings, degree, dtype):
    params = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in splats.as_dict().items()}
    out = fn(Splats.from_dict(params), view, settings, degree)
    g = torch.Generator().manual_seed(3)
    # Weights on the visible splats only: no gradient reaches a culled one through a rasterizer.
    vis = (out[5] > 0).all(-1)
    loss = sum((o.double()[vis] * torch.randn(o[vis].shape, generator=g, dtype=torch.float64)).sum()
               for o in out[:4])  # fmt: skip
    loss.backward()
    return out, {k: params[k].grad for k in NAMES}


@pytest.mark.parametrize("seed,degree,aa", [(0, 0, False), (1, 1, True), (2, 2, False), (3, 3, True)])
def test_fused_matches_torch_twin(seed, degree, aa):
    splats, view = make_test_scene(seed, n=200, sh_degree=3, width=48, height=36)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(sh_degree=degree, antialiased=aa)
    ref, g_ref = outputs_and_grads(twin, sp32, view, settings, degree, torch.float64)
    out, g_out = outputs_and_grads(project_and_shade, sp32, view, settings, degree, torch.float32)
    assert torch.equal(out[5], ref[5])  # radii: the same culling and extents
    vis = (ref[5] > 0).all(-1)
    assert 60 < vis.sum() < 200
    for o, r in zip(out[:5], ref[:5], strict=True):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o.double(), r, rtol=1e-6, atol=1e-6)
    for k in NAMES:
        scale = g_ref[k].abs().max()
        if k != "shN" or degree > 0:
            assert scale > 0, k
        torch.testing.assert_close(g_out[k].double(), g_ref[k], rtol=0, atol=1e-6 * float(scale),
                                   msg=k)  # fmt: skip
        culled = ~vis
        assert (g_out[k][culled] == 0).all(), k


def test_fused_is_bitwise_deterministic_across_threads():
    splats, view = make_test_scene(5, n=2000, sh_degree=3, width=64, height=48)
    sp32 = splats.to(torch.float32)
    settings = RenderSettings(sh_degree=3, antialiased=True)
    a, ga = outputs_and_grads(project_and_shade, sp32, view, settings, 3, torch.float32)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        b, gb = outputs_and_grads(project_and_shade, sp32, view, settings, 3, torch.float32)
    finally:
        numba.set_num_threads(old)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(torch.equal(ga[k], gb[k]) for k in NAMES)
