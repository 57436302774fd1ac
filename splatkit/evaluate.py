"""Held-out evaluation by the INRIA 3DGS protocol, and side-by-side previews.

- Views: ``scene.test_idx`` (every 8th photo by name, :func:`splatkit.scene.inria_split`).
- Resolution: the training resolution (longest side ``resolution``, never enlarged).
- Renders are clamped to [0, 1]; photos are the 8-bit files divided by 255.
- PSNR and SSIM per image: :mod:`splatkit.scores` (PSNR capped at 100 dB; torchmetrics SSIM,
  Gaussian window 11, sigma 1.5, data range 1.0).
- Reported means are plain averages over the test images (INRIA's ``metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .fileio import atomic_path
from .render import RenderSettings, get_renderer
from .scene import Scene
from .scores import ViewScore, psnr, ssim
from .splats import Splats
from .views import WorldNorm, load_images, make_view, scaled_cameras


def _subset(idx: list[int], max_views: int | None) -> list[int]:
    if not max_views or len(idx) <= max_views:
        return list(idx)
    pick = np.linspace(0, len(idx) - 1, max_views).round().astype(int)
    return [idx[i] for i in sorted(set(pick.tolist()))]


@dataclass(frozen=True)
class HeldOutRender:
    """A held-out photo and the render of its view, uint8 ``[H, W, 3]`` (for the previews)."""

    name: str
    photo: np.ndarray
    render: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """The held-out views rendered and scored (:func:`evaluate`). With no test views the means
    are NaN and the lists empty."""

    psnr: float
    ssim: float
    per_image: list[ViewScore] = field(default_factory=list)
    resolution: tuple[int, int] = (0, 0)
    """Width and height of the first evaluated view (all share the working resolution)."""
    renders: list[HeldOutRender] = field(default_factory=list)
    """Present when :func:`evaluate` was asked to keep the images."""

    @property
    def num_views(self) -> int:
        return len(self.per_image)


@torch.no_grad()
def evaluate(
    splats: Splats,
    scene: Scene,
    resolution: int,
    backend: str,
    device: str = "cpu",
    settings: RenderSettings | None = None,
    *,
    max_views: int | None = None,
    keep_images: bool = True,
    sky=None,
) -> Evaluation:
    """Render the held-out views and score them (:class:`Evaluation`; ``renders`` for
    :func:`write_previews` when ``keep_images``). ``max_views`` scores an evenly spaced subset
    (cheap checks during training).
    ``sky`` (:class:`splatkit.sky.SkyMap`): composited behind the splats (rendered over black).
    """
    if settings is None:
        settings = RenderSettings(sh_degree=splats.sh_degree)
    render = get_renderer(backend)
    idx = _subset(scene.test_idx, max_views)
    cams = scaled_cameras(scene.cameras, resolution)
    photos = load_images(scene, idx, cams, device)
    s = splats.detach().to(device)
    ident = WorldNorm.identity()
    per_image, renders = [], []
    for i, gt in zip(idx, photos, strict=True):
        view = make_view(cams, i, ident, device)
        out = render(s, view, settings)
        img = out.image if sky is None else sky.render_behind(out.image, out.alpha, view)
        img = img.float().clamp(0.0, 1.0)
        per_image.append(ViewScore(cams.names[i], psnr(img, gt), ssim(img, gt)))
        if keep_images:
            renders.append(HeldOutRender(cams.names[i], _u8(gt), _u8(img)))
    n = len(per_image)
    w, h = (int(cams.width[idx[0]]), int(cams.height[idx[0]])) if idx else (0, 0)
    return Evaluation(
        psnr=sum(r.psnr for r in per_image) / n if n else float("nan"),
        ssim=sum(r.ssim for r in per_image) / n if n else float("nan"),
        per_image=per_image, resolution=(w, h), renders=renders,
    )


def _u8(img: Tensor) -> np.ndarray:
    return (img.detach().cpu().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def preview_image(photo: np.ndarray, render: np.ndarray, gap: int = 4) -> Image.Image:
    """The held-out photo (left) beside the render (right), on a white strip."""
    h = max(photo.shape[0], render.shape[0])
    w = photo.shape[1] + gap + render.shape[1]
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    canvas[: photo.shape[0], : photo.shape[1]] = photo
    canvas[: render.shape[0], photo.shape[1] + gap :] = render
    return Image.fromarray(canvas)


def write_previews(result: Evaluation, folder: Path) -> list[Path]:
    """Save ``folder/<image stem>.png`` (photo beside render) for each evaluated view, atomically.

    ``result`` is what :func:`evaluate` returned (with ``keep_images``).
    """
    folder = Path(folder)
    paths = []
    for r in result.renders:
        path = folder / f"{Path(r.name).stem}.png"
        with atomic_path(path) as tmp:
            preview_image(r.photo, r.render).save(tmp, format="PNG")
        paths.append(path)
    return paths
