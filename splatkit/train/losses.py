"""The 3DGS photometric loss: ``(1 - lambda) * L1 + lambda * (1 - SSIM)``.

SSIM is :func:`splatkit.train.ssim.ssim`: pytorch_msssim's definition (Gaussian window 11,
sigma 1.5, K1 0.01, K2 0.03, data range 1, "valid" borders, as gsplat's fused-ssim with
``padding="valid"``), computed on the CPU by fused numba kernels (forward + backward of a
134x239 image: 4.3 ms against pytorch_msssim's 9.5 ms on one thread of the 2-core VM) and on
other devices by pytorch_msssim itself. Evaluation uses torchmetrics (``splatkit.evaluate``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ssim import fused_photometric_loss, ssim


def l1(img: Tensor, gt: Tensor) -> Tensor:
    return (img - gt).abs().mean()


def photometric_loss(img: Tensor, gt: Tensor, ssim_lambda: float) -> Tensor:
    """``(1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)`` on ``[H, W, 3]`` images (one fused
    numba pass, forward and backward, for float32 CPU images)."""
    fused = fused_photometric_loss(img, gt, ssim_lambda)
    if fused is not None:
        return fused
    loss = (1.0 - ssim_lambda) * l1(img, gt)
    if ssim_lambda > 0:
        loss = loss + ssim_lambda * (1.0 - ssim(img, gt))
    return loss


def regularisers(params, opacity_reg: float, scale_reg: float) -> Tensor | float:
    """MCMC's regularisers: mean opacity and mean scale (gsplat simple_trainer, 0.01 each)."""
    reg: Tensor | float = 0.0
    if opacity_reg > 0:
        reg = reg + opacity_reg * torch.sigmoid(params["opacities"]).mean()
    if scale_reg > 0:
        reg = reg + scale_reg * torch.exp(params["scales"]).mean()
    return reg
