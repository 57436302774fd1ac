"""SH evaluation against gsplat's PyTorch reference."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics

from splatkit.render.sh import SH_C0, SH_C1, eval_sh, sh_to_color


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=torch.float64) * 3  # not normalised
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=torch.float64)
    ours = eval_sh(degree, dirs, coeffs)
    theirs = _spherical_harmonics(degree, dirs, coeffs)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_eval_sh_gradients_match_gsplat():
    g = torch.Generator().manual_seed(7)
    dirs = torch.randn(50, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    coeffs = torch.randn(50, 16, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(50, 3, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((eval_sh(3, dirs, coeffs) * w).sum(), (dirs, coeffs))
    gb = torch.autograd.grad((_spherical_harmonics(3, dirs, coeffs) * w).sum(), (dirs, coeffs))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_convention_sh_layout_and_constants():
    """Basis k: 0 -> C0; 1, 2, 3 -> -C1 y, C1 z, -C1 x (gsplat / INRIA signs); coefficients
    are [..., K, 3] coefficient-major; colour = 0.5 + sum, clamped at 0."""
    assert SH_C0 == pytest.approx(1 / (2 * math.sqrt(math.pi)))
    assert SH_C1 == pytest.approx(math.sqrt(3 / (4 * math.pi)))
    d = torch.tensor([[0.2, -0.3, 0.9]], dtype=torch.float64)
    u = d / d.norm()
    for k, expect in [(0, SH_C0), (1, -SH_C1 * u[0, 1]), (2, SH_C1 * u[0, 2]),
                      (3, -SH_C1 * u[0, 0])]:  # fmt: skip
        coeffs = torch.zeros(1, 4, 3, dtype=torch.float64)
        coeffs[0, k, 1] = 1.0  # green channel only
        out = eval_sh(1, d, coeffs)
        torch.testing.assert_close(out, torch.tensor([[0.0, float(expect), 0.0]], dtype=out.dtype))


def test_convention_colour_offset_half_and_clamp_at_zero():
    coeffs = torch.zeros(1, 1, 3)
    coeffs[0, 0] = torch.tensor([0.0, -10.0, 1.0])
    c = sh_to_color(0, torch.tensor([[0.0, 0.0, 1.0]]), coeffs)
    torch.testing.assert_close(c, torch.tensor([[0.5, 0.0, 0.5 + SH_C0]]))
