"""Exposure and colour compensation (``--appearance bilagrid``): a bilateral grid per photo.

Phone captures change exposure, white balance and tone from photo to photo (auto exposure, the
phone's image processing). Without compensation the splats absorb those changes as floaters and
view-dependent colour. The method is Wang et al., "Bilateral Guided Radiance Field Processing"
(ACM TOG / SIGGRAPH 2024), as gsplat's ``simple_trainer.py --use_bilateral_grid`` applies it:

- each training photo has a 3D bilateral grid of 3x4 affine colour transforms, 16 x 16 cells over
  the image and 8 over the guidance (the luminance of the rendered colour, BT.601 weights),
  initialised to the identity;
- the rendered image is "sliced": per pixel, the affine transform is trilinearly interpolated at
  (x, y, luminance) and applied to the pixel's colour; the loss compares that with the photo;
- a total-variation term (weight 10) keeps each grid smooth, so it can model the camera's
  processing but not scene content;
- Adam at 2e-3 (eps 1e-15), linear warm-up from 1 % over the first 1000 steps, then
  exponential decay to 1 % at the last step.

The grids touch only the rendered image, never the splats: exported scenes are unchanged in
form, and held-out views (which have no grid) are rendered plainly. Evaluation reports plain
PSNR and, as simple_trainer and Zip-NeRF do for such runs, the colour-corrected PSNR
(:func:`color_correct`: a per-image quadratic colour fit of render to photo), which measures the
geometry and texture without the held-out photo's unknown exposure.

Per-photo appearance embeddings (simple_trainer's ``--app_opt``) were not chosen: they replace SH
colour by a per-splat feature and an MLP, which splatkit's exports (PLY/SPZ, Unreal) cannot
carry; the bilateral grid paper also reports it ahead of embeddings on photo-processing changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from ..evaluate import Evaluation

#: Grid cells along x, y and the luminance guidance (the paper's and simple_trainer's 16, 16, 8).
GRID_SHAPE = (16, 16, 8)
#: BT.601 luminance weights used as the guidance.
LUMA = (0.299, 0.587, 0.114)
TV_WEIGHT = 10.0
LR = 2e-3
WARMUP_STEPS = 1000


def identity_grids(n: int, shape: tuple[int, int, int] = GRID_SHAPE) -> Tensor:
    """``[n, 12, L, Gy, Gx]`` grids holding the identity affine transform ``[I | 0]`` everywhere."""
    gx, gy, gl = shape
    eye = torch.eye(3, 4).reshape(12)
    return eye[None, :, None, None, None].expand(n, 12, gl, gy, gx).clone()


def slice_grid(grid: Tensor, rgb: Tensor) -> Tensor:
    """Apply one grid ``[12, L, Gy, Gx]`` to an image ``[H, W, 3]``: trilinear affine per pixel."""
    h, w = rgb.shape[:2]
    ys = (torch.arange(h, device=rgb.device, dtype=rgb.dtype) + 0.5) / h
    xs = (torch.arange(w, device=rgb.device, dtype=rgb.dtype) + 0.5) / w
    gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
    luma = rgb @ rgb.new_tensor(LUMA) * 2 - 1  # guidance in [-1, 1]
    coords = torch.stack([gx, gy, luma], dim=-1)[None, None]  # [1, 1, H, W, 3] (x, y, z)
    a = F.grid_sample(grid[None].to(rgb.dtype), coords, mode="bilinear", padding_mode="border",
                      align_corners=True)  # [1, 12, 1, H, W]
    a = a[0, :, 0].permute(1, 2, 0).reshape(h, w, 3, 4)
    return (a[..., :3] @ rgb[..., None])[..., 0] + a[..., 3]


def total_variation(grids: Tensor) -> Tensor:
    """Mean squared difference between neighbouring cells along the 3 grid axes, summed."""
    return sum(((grids.narrow(d, 1, grids.shape[d] - 1) - grids.narrow(d, 0, grids.shape[d] - 1)) ** 2)
               .mean() for d in (2, 3, 4))


class BilateralGrids:
    """The training photos' grids, their Adam and its learning-rate schedule."""

    def __init__(self, n_images: int, steps: int, device: str | torch.device = "cpu") -> None:
        self.grids = torch.nn.Parameter(identity_grids(n_images).to(device))
        self.steps = max(int(steps), 1)
        self.optimizer = torch.optim.Adam([self.grids], lr=LR * self.lr_factor(0), eps=1e-15)

    def lr_factor(self, step: int) -> float:
        warm = 0.01 + 0.99 * min(step, WARMUP_STEPS) / WARMUP_STEPS
        return warm * 0.01 ** (min(step, self.steps) / self.steps)

    def apply(self, image: Tensor, k: int) -> Tensor:
        """Training photo ``k``'s rendered image as its camera's processing would show it."""
        return slice_grid(self.grids[k], image)

    def loss(self) -> Tensor:
        return TV_WEIGHT * total_variation(self.grids)

    def step(self, step: int) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] = LR * self.lr_factor(step + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"grids": self.grids.detach().cpu().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        with torch.no_grad():
            self.grids.copy_(d["grids"].to(self.grids.device))
        self.optimizer.load_state_dict(d["optimizer"])


@torch.no_grad()
def color_correct(img: Tensor, ref: Tensor, iters: int = 5, eps: float = 0.5 / 255) -> Tensor:
    """``img [..., 3]`` with its colours fitted to ``ref``'s (Zip-NeRF's evaluation correction).

    Per output channel, least squares over the pixels of a quadratic expansion of the input
    colour (the 6 products c_i c_j, the 3 channels, 1); pixels saturated (outside
    [eps, 1 - eps]) in the input, the reference or the current estimate are left out of the fit;
    the fit is repeated ``iters`` times on the corrected colours.
    """
    x = img.reshape(-1, 3).double()
    y = ref.reshape(-1, 3).double()

    def unclipped(z: Tensor) -> Tensor:
        return (z >= eps) & (z <= 1 - eps)

    ok0 = unclipped(x)
    for _ in range(iters):
        quad = [x[:, i : i + 1] * x[:, i:] for i in range(3)]
        a = torch.cat([*quad, x, torch.ones_like(x[:, :1])], dim=1)  # [P, 10]
        cols = []
        for c in range(3):
            m = (ok0[:, c] & unclipped(x[:, c]) & unclipped(y[:, c]))[:, None]
            w = torch.linalg.lstsq(a * m, y[:, c : c + 1] * m).solution
            cols.append(a @ w)
        x = torch.cat(cols, dim=1).clamp(0.0, 1.0)
    return x.reshape(img.shape).to(img.dtype)


def corrected_scores(result: Evaluation) -> dict[str, float]:
    """Colour-corrected PSNR/SSIM (means over views) from :func:`splatkit.evaluate.evaluate`'s
    ``renders`` (uint8 photos and renders)."""
    from ..scores import psnr, ssim

    ps, ss = [], []
    for r in result.renders:
        photo = torch.from_numpy(r.photo).float() / 255.0
        render = torch.from_numpy(r.render).float() / 255.0
        cc = color_correct(render, photo)
        ps.append(psnr(cc, photo))
        ss.append(ssim(cc, photo))
    n = max(len(ps), 1)
    return {"cc_psnr": sum(ps) / n if ps else float("nan"), "cc_ssim": sum(ss) / n if ss else float("nan")}
