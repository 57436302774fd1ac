"""SSIM for the training loss on the CPU: separable Gaussian filtering, forward and backward fused
in numba kernels.

The definition is the one of ``pytorch_msssim.ssim`` (and gsplat's fused-ssim with
``padding="valid"``): Gaussian window of 11 taps, sigma 1.5, K1 0.01, K2 0.03, data range 1,
only the pixels whose whole window lies inside the image, mean over pixels and channels. On an
image smaller than the window, the window shrinks to the largest odd size that fits (the same
definition, so that tiny test images still train).

Forward: a horizontal pass makes the five windowed sums (x, y, x^2, y^2, xy) per row, a
vertical pass finishes them and evaluates SSIM and its derivatives w.r.t. the three local
statistics (mean, second moment, cross moment) of the rendered image. Backward: the transposed
filter (vertical, then horizontal) of those three maps, combined per pixel. All arithmetic is
float64; every output value is made by one task in a fixed order (results do not depend on the
thread count). Tested against ``pytorch_msssim`` (values and gradients).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..render.buffers import POOL

WINDOW = 11
SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2


def window_size(height: int, width: int) -> int:
    """11, or the largest odd size that fits an image smaller than that."""
    size = min(WINDOW, height, width)
    return size if size % 2 == 1 else size - 1


def gaussian_window(size: int, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps (float64), centred as in pytorch_msssim."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _forward(x, y, w):
    """x, y ``[H, W, C]`` float32. Returns (sum of the SSIM map, |x - y| summed per channel
    row, the three derivative maps ``[C, 3, Hv, Wv]``: d SSIM / d mean_x, d / d E[x^2],
    d / d E[xy]); the maps come from :data:`POOL` (give them back when done)."""
    H, W, nc = x.shape
    hv, wv = H - w.shape[0] + 1, W - w.shape[0] + 1
    h = POOL.take((nc, 5, H, wv), np.float64)
    maps = POOL.take((nc, 3, hv, wv), np.float64)
    l1 = _horizontal(x, y, w, h)
    sums = _vertical(h, w, maps)
    POOL.give(h)
    return sums.sum(), l1, maps


@njit(parallel=True, cache=True)
def _horizontal(x, y, w, h):
    """Fills ``h`` with the windowed row sums ``[C, 5, H, Wv]`` of x, y, x^2, y^2, xy; returns
    the sums of ``|x - y|`` per channel row ``[C * H]``."""
    H, W, nc = x.shape
    l1 = np.empty(nc * H)
    for task in prange(nc * H):
        c, i = task // H, task % H
        f = np.empty((5, W))
        total = 0.0
        for j in range(W):
            a = np.float64(x[i, j, c])
            b = np.float64(y[i, j, c])
            total += abs(a - b)
            f[0, j] = a
            f[1, j] = b
            f[2, j] = a * a
            f[3, j] = b * b
            f[4, j] = a * b
        l1[task] = total
        for k in range(5):
            _conv_valid(h[c, k, i], f[k], w)
    return l1


@njit(parallel=True, cache=True)
def _vertical(h, w, maps):
    """Per output row: the vertical pass, SSIM (returned, summed per row) and its derivative
    maps (into ``maps``)."""
    nc, hv = maps.shape[0], maps.shape[2]
    sums = np.empty(nc * hv)
    for task in prange(nc * hv):
        c, i = task // hv, task % hv
        sums[task] = _ssim_row(h[c], w, i, maps[c])
    return sums


@njit(cache=True)
def _conv_valid(out, src, w):
    """``out[j] = sum_t w[t] src[j + t]`` (one contiguous row; the j loop vectorizes)."""
    n = out.shape[0]
    for j in range(n):
        out[j] = 0.0
    for t in range(w.shape[0]):
        wt = w[t]
        for j in range(n):
            out[j] += wt * src[j + t]


@njit(cache=True)
def _ssim_row(h, w, i, maps):
    """Output row ``i`` of one channel: vertical pass over the windowed sums ``h [5, H, Wv]``,
    SSIM and its derivative maps; returns the row's SSIM sum."""
    wv = h.shape[2]
    mu = np.zeros((5, wv))
    for t in range(w.shape[0]):
        wt = w[t]
        for k in range(5):
            dst = mu[k]
            src = h[k, i + t]
            for j in range(wv):
                dst[j] += wt * src[j]
    total = 0.0
    for j in range(wv):
        mx, my = mu[0, j], mu[1, j]
        sxx = mu[2, j] - mx * mx
        syy = mu[3, j] - my * my
        sxy = mu[4, j] - mx * my
        a2 = mx * mx + my * my + C1
        b2 = sxx + syy + C2
        A = (2.0 * mx * my + C1) / a2
        B = (2.0 * sxy + C2) / b2
        total += A * B
        maps[0, i, j] = 2.0 * B * (my - A * mx) / a2 + 2.0 * A * (B * mx - my) / b2
        maps[1, i, j] = -A * B / b2
        maps[2, i, j] = 2.0 * A / b2
    return total


@njit(parallel=True, cache=True)
def _backward(x, y, w, maps, scale, l1_scale):
    """``d (scale * sum SSIM + l1_scale * sum |x - y|) / d x`` ``[H, W, C]`` float32."""
    H, W, nc = x.shape
    r = w.shape[0]
    hv, wv = maps.shape[2], maps.shape[3]
    grad = np.empty((H, W, nc), dtype=np.float32)
    for task in prange(nc * H):
        c, i = task // H, task % H
        u = np.zeros((3, wv))
        for t in range(max(0, i - hv + 1), min(r, i + 1)):
            wt = w[t]
            for k in range(3):
                dst = u[k]
                src = maps[c, k, i - t]
                for j in range(wv):
                    dst[j] += wt * src[j]
        v = np.zeros((3, W))
        for t in range(r):
            wt = w[t]
            for k in range(3):
                dst = v[k, t:]
                src = u[k]
                for j in range(wv):
                    dst[j] += wt * src[j]
        for j in range(W):
            a = np.float64(x[i, j, c])
            b = np.float64(y[i, j, c])
            sign = 1.0 if a > b else (-1.0 if a < b else 0.0)
            grad[i, j, c] = scale * (v[0, j] + 2.0 * a * v[1, j] + b * v[2, j]) + l1_scale * sign
    return grad


def _forward_pass(img: Tensor, gt: Tensor):
    """The fused forward on ``[H, W, C]`` float32 CPU images: ``(x, y, window, SSIM sum, L1 sums,
    the derivative maps for the backward, the number of SSIM values summed)``."""
    H, W, nc = img.shape
    w = gaussian_window(window_size(H, W))
    x = img.detach().contiguous().numpy()
    y = gt.detach().float().contiguous().numpy()
    total, l1, maps = _forward(x, y, w)
    count = nc * (H - w.shape[0] + 1) * (W - w.shape[0] + 1)
    return x, y, w, total, l1, maps, count


class _SSIM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, img: Tensor, gt: Tensor) -> Tensor:
        x, y, w, total, _, maps, count = _forward_pass(img, gt)
        ctx.saved = (x, y, w, maps, count)
        return torch.tensor(total / count, dtype=img.dtype)

    @staticmethod
    def backward(ctx, v: Tensor):
        x, y, w, maps, count = ctx.saved
        grad = _backward(x, y, w, maps, float(v) / count, 0.0)
        POOL.give(maps)
        ctx.saved = None
        return torch.from_numpy(grad), None


class _Photometric(torch.autograd.Function):
    """``(1 - lam) * mean |x - y| + lam * (1 - SSIM)`` in one pass (the L1 term rides along)."""

    @staticmethod
    def forward(ctx, img: Tensor, gt: Tensor, lam: float) -> Tensor:
        x, y, w, total, l1, maps, count = _forward_pass(img, gt)
        ctx.saved = (x, y, w, maps, count, lam)
        loss = (1.0 - lam) * l1.sum() / x.size + lam * (1.0 - total / count)
        return torch.tensor(loss, dtype=img.dtype)

    @staticmethod
    def backward(ctx, v: Tensor):
        x, y, w, maps, count, lam = ctx.saved
        grad = _backward(x, y, w, maps, -float(v) * lam / count, float(v) * (1.0 - lam) / x.size)
        POOL.give(maps)
        ctx.saved = None
        return torch.from_numpy(grad), None, None


def fused_photometric_loss(img: Tensor, gt: Tensor, lam: float) -> Tensor | None:
    """The fused CPU loss, or None where it does not apply (other devices/dtypes)."""
    if img.device.type == "cpu" and img.dtype == torch.float32 and lam > 0:
        return _Photometric.apply(img, gt, float(lam))
    return None


def ssim(img: Tensor, gt: Tensor) -> Tensor:
    """Mean SSIM of two ``[H, W, C]`` images in [0, 1]; differentiable in ``img``.

    float32 CPU tensors take the fused kernels; other devices or dtypes take
    ``pytorch_msssim`` (same definition).
    """
    H, W = img.shape[0], img.shape[1]
    if img.device.type == "cpu" and img.dtype == torch.float32:
        return _SSIM.apply(img, gt)
    from pytorch_msssim import ssim as ms_ssim

    x = img.permute(2, 0, 1)[None]
    y = gt.to(img.dtype).permute(2, 0, 1)[None]
    size = window_size(H, W)
    return ms_ssim(x, y, data_range=1.0, size_average=True, win_size=size, win_sigma=SIGMA)

