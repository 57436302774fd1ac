"""The loss SSIM's fused CPU kernels against pytorch_msssim (values and gradients)."""

import numba
import pytest
import torch
from pytorch_msssim import ssim as ms_ssim

from splatkit.train.ssim import gaussian_window, ssim, window_size


def images(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(h, w, 3, generator=g)
    img = (gt + 0.15 * torch.randn(h, w, 3, generator=g)).clamp(0, 1)
    return img, gt


def msssim_value_and_grad(img, gt):
    x = img.double().clone().requires_grad_(True)
    size = window_size(*img.shape[:2])
    v = ms_ssim(x.permute(2, 0, 1)[None], gt.double().permute(2, 0, 1)[None], data_range=1.0,
                win_size=size, win_sigma=1.5)  # fmt: skip
    v.backward()
    return v, x.grad


@pytest.mark.parametrize("h,w", [(37, 61), (134, 80), (9, 14)])
def test_fused_ssim_matches_pytorch_msssim(h, w):
    img, gt = images(h, w)
    ref, g_ref = msssim_value_and_grad(img, gt)
    x = img.clone().requires_grad_(True)
    v = ssim(x, gt)
    v.backward()
    v, ref = float(v.detach()), float(ref.detach())
    assert 0.2 < v < 0.99
    assert v == pytest.approx(ref, abs=1e-6)
    torch.testing.assert_close(x.grad.double(), g_ref, rtol=0, atol=1e-6 * float(g_ref.abs().max()))


def test_window_and_identity():
    assert window_size(100, 50) == 11 and window_size(9, 30) == 9 and window_size(10, 30) == 9
    assert gaussian_window(11).sum() == pytest.approx(1.0, abs=1e-15)
    img, _ = images(20, 24)
    assert float(ssim(img, img)) == pytest.approx(1.0, abs=1e-6)


def test_fused_ssim_is_bitwise_deterministic_across_threads():
    img, gt = images(64, 90, seed=3)
    grads = []
    old = numba.get_num_threads()
    try:
        for threads in (old, 1):
            numba.set_num_threads(threads)
            x = img.clone().requires_grad_(True)
            v = ssim(x, gt)
            v.backward()
            grads.append((v, x.grad))
    finally:
        numba.set_num_threads(old)
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_other_dtypes_use_pytorch_msssim():
    img, gt = images(30, 30, seed=1)
    assert float(ssim(img.double(), gt)) == pytest.approx(float(ssim(img, gt)), abs=1e-6)


def test_fused_photometric_loss_matches_l1_plus_ssim_in_torch():
    from splatkit.train.ssim import fused_photometric_loss

    img, gt = images(40, 52, seed=2)
    ref_x = img.double().clone().requires_grad_(True)
    size = window_size(40, 52)
    ref = 0.8 * (ref_x - gt.double()).abs().mean() + 0.2 * (1 - ms_ssim(
        ref_x.permute(2, 0, 1)[None], gt.double().permute(2, 0, 1)[None], data_range=1.0,
        win_size=size, win_sigma=1.5))  # fmt: skip
    ref.backward()
    x = img.clone().requires_grad_(True)
    loss = fused_photometric_loss(x, gt, 0.2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), abs=1e-6)
    torch.testing.assert_close(x.grad.double(), ref_x.grad, rtol=0, atol=1e-6 * float(ref_x.grad.abs().max()))
    assert fused_photometric_loss(img.double(), gt, 0.2) is None
