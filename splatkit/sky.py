"""The sky: what lies at infinity, as a panorama behind the splats (the contract every stage
shares: training learns it, evaluation and the report render it, the export writes it).

A :class:`SkyMap` is an equirectangular colour image (:mod:`splatkit.panorama`'s
convention) in its own frame, reached from the scene's world (COLMAP) frame by a rotation
``d_sky = rotation @ d_world``; the sky frame is +X forward, +Y left, +Z up. A pixel whose ray
has direction ``d`` is shown as ``C = C_splats + T_final * sky(d)``: the splats composited
front to back, then the sky where their alpha leaves room (``T_final = 1 - alpha``).

On disk (``OUT/sky.npz``, :func:`save` / :func:`load`): ``colors`` float32 ``[H, W, 3]`` in
[0, 1] (linear in the photos' 8-bit sRGB values, as the splats' colours are), ``seen`` float32
``[H, W]`` (how much training-pixel weight reached each texel late in training: below
:data:`SEEN_MIN` where no photo saw sky there),
``rotation`` float64 ``[3, 3]``, ``share`` (the fraction of training pixels that showed the
sky). ``OUT/sky.png`` is the same panorama with unseen texels filled, to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import panorama as P
from .render import View

#: A texel counts as seen when the training pixels that showed it add up to this much weight
#: (bilinear weight x transmittance: about one pixel's worth of clear view).
SEEN_MIN = 1.0


def pixel_directions(view: View) -> Tensor:
    """Unit world directions ``[H, W, 3]`` of the rays through the pixel centres of ``view``
    (OpenCV camera, pinhole ``K``; ``(j + 0.5, i + 0.5)`` as the renderers sample)."""
    K, w2c = view.K, view.world_to_cam
    dt, dev = w2c.dtype, w2c.device
    xs = (torch.arange(view.width, dtype=dt, device=dev) + 0.5 - K[0, 2]) / K[0, 0]
    ys = (torch.arange(view.height, dtype=dt, device=dev) + 0.5 - K[1, 2]) / K[1, 1]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    cam = torch.stack([xx - K[0, 1] / K[0, 0] * yy, yy, torch.ones_like(xx)], dim=-1)
    world = cam @ w2c[:3, :3].to(dt)  # R^T d, row vectors
    return world / world.norm(dim=-1, keepdim=True)


def composite(image: Tensor, alpha: Tensor, background: Tensor) -> Tensor:
    """``image + (1 - alpha) * background`` (image rendered over black; ``[H, W, 3]``,
    ``[H, W, 1]``, ``[H, W, 3]``): the renderers' own rule with a per-pixel background."""
    return image + (1.0 - alpha) * background


@dataclass
class SkyMap:
    """A learned sky (see the module docstring)."""

    colors: Tensor  # [H, W, 3] in [0, 1]
    seen: Tensor  # [H, W]
    rotation: Tensor  # [3, 3] world -> sky frame
    share: float = float("nan")

    @property
    def width(self) -> int:
        return int(self.colors.shape[1])

    @property
    def height(self) -> int:
        return int(self.colors.shape[0])

    def background(self, dirs_world: Tensor) -> Tensor:
        """The sky's colour ``[..., 3]`` in world directions ``dirs_world [..., 3]``."""
        R = self.rotation.to(dirs_world.device, dirs_world.dtype)
        return P.sample(self.colors.to(dirs_world.device, dirs_world.dtype), dirs_world @ R.T)

    def render_behind(self, image: Tensor, alpha: Tensor, view: View) -> Tensor:
        """A render (over black) with this sky composited behind it."""
        return composite(image, alpha, self.background(pixel_directions(view)).to(image.dtype))

    def filled(self) -> Tensor:
        """``colors`` with the texels no photo saw filled from the seen ones (pull-push)."""
        return fill_unseen(self.colors, self.seen >= SEEN_MIN)


def fill_unseen(colors: Tensor, known: Tensor) -> Tensor:
    """Pull-push: each unknown texel takes the mean of the known ones at the finest level of
    a 2x pyramid where its cell has any; known texels are returned unchanged."""
    if bool(known.all()) or not bool(known.any()):
        return colors.clone()
    c = colors.permute(2, 0, 1)[None].double()
    w = known[None, None].double()
    levels = [(c * w, w)]
    while min(levels[-1][1].shape[-2:]) > 1:
        cw, ww = levels[-1]
        levels.append((F.avg_pool2d(cw, 2, ceil_mode=True), F.avg_pool2d(ww, 2, ceil_mode=True)))
    cw, ww = levels[-1]
    est = cw / ww.clamp(min=1e-12)
    for cw, ww in reversed(levels[:-1]):
        up = F.interpolate(est, size=cw.shape[-2:], mode="nearest")
        est = torch.where(ww > 0, cw / ww.clamp(min=1e-12), up)
    out = est[0].permute(1, 2, 0).to(colors.dtype)
    return torch.where(known[..., None], colors, out)


def save(sky: SkyMap, npz_path: Path, png_path: Path | None = None) -> None:
    """Write ``sky.npz`` (and the filled panorama as an 8-bit PNG), atomically."""
    from PIL import Image

    from .fileio import atomic_path

    with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, colors=sky.colors.detach().cpu().float().numpy(),
                 seen=sky.seen.detach().cpu().float().numpy(),
                 rotation=sky.rotation.detach().cpu().double().numpy(), share=np.float64(sky.share))
    if png_path is not None:
        with atomic_path(png_path) as tmp:
            Image.fromarray(to_u8(sky.filled())).save(tmp, format="PNG")


def load(npz_path: Path) -> SkyMap:
    with np.load(npz_path) as z:
        return SkyMap(colors=torch.from_numpy(z["colors"]), seen=torch.from_numpy(z["seen"]),
                      rotation=torch.from_numpy(z["rotation"]), share=float(z["share"]))


def to_u8(colors: Tensor) -> np.ndarray:
    """``[H, W, 3]`` in [0, 1] -> uint8 (rounded)."""
    return (colors.detach().cpu().double().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
