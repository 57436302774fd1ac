"""Image similarity scores of the held-out evaluation (INRIA 3DGS protocol), shared by the
evaluation and the training loop's colour-corrected checks.

- PSNR = 10 log10(1 / MSE) per image on [0, 1] values, MSE over all pixels and channels; when the
  MSE is below 1e-10 the PSNR is capped at :data:`PSNR_CAP` (100 dB), so identical images give
  100, never inf, and means stay finite.
- SSIM: torchmetrics ``structural_similarity_index_measure`` (Gaussian window 11, sigma 1.5,
  data range 1.0), per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

#: PSNR reported when the images are (numerically) identical.
PSNR_CAP = 100.0
_MIN_MSE = 10.0 ** (-PSNR_CAP / 10.0)


def psnr(img: Tensor, gt: Tensor) -> float:
    """PSNR in dB of two images with values in [0, 1]; capped at :data:`PSNR_CAP`."""
    mse = float(((img.double() - gt.double()) ** 2).mean())
    return PSNR_CAP if mse <= _MIN_MSE else -10.0 * math.log10(mse)


def ssim(img: Tensor, gt: Tensor) -> float:
    """SSIM of two ``[H, W, 3]`` images in [0, 1] (torchmetrics, window 11, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x = img.permute(2, 0, 1)[None].float()
    y = gt.permute(2, 0, 1)[None].float()
    return float(
        structural_similarity_index_measure(
            x, y, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11
        )
    )


@dataclass(frozen=True)
class ViewScore:
    """One held-out photo's scores: its name, PSNR (dB) and SSIM."""

    name: str
    psnr: float
    ssim: float

    def to_json(self) -> dict:
        return {"name": self.name, "psnr": self.psnr, "ssim": self.ssim}
