"""Camera views and photos at a working resolution: what training, evaluation and benchmarks share.

Images are resized so that their longest side is at most ``resolution`` (never enlarged) and held
by a :class:`TrainImages`: as uint8 ``[H, W, 3]`` (a quarter of the float32 size), on the training
device when they all fit in its byte budget, else loaded lazily through a bounded LRU cache in CPU
memory; each is converted to float32 in [0, 1] when it is used. The intrinsics are scaled to
match with :meth:`Cameras.scaled` (:func:`scaled_cameras`).

Training happens in a normalised world (:class:`WorldNorm`: cameras centred on their mean,
largest camera distance 1): thresholds like the near plane behave the same whatever units SfM
picked. The transform is a translation and a uniform scale, so splats map back exactly (rotations
and SH are unchanged). :func:`make_view` is the renderer's :class:`~splatkit.render.View` of a
camera in such a world (the identity for evaluation).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import UserError
from .render import View
from .scene import Cameras, Scene
from .splats import Splats


def resolution_factor(width: int, height: int, resolution: int) -> float:
    """Scale factor that brings the longest side to ``resolution`` (at most 1: never upsample)."""
    if resolution <= 0:
        return 1.0
    return min(1.0, resolution / max(int(width), int(height)))


def scaled_cameras(cameras: Cameras, resolution: int) -> Cameras:
    """Cameras for images whose longest side is at most ``resolution`` (per-camera factor)."""
    parts = []
    for i in range(len(cameras)):
        f = resolution_factor(int(cameras.width[i]), int(cameras.height[i]), resolution)
        parts.append(cameras.subset([i]).scaled(f))
    return Cameras(
        names=list(cameras.names),
        K=torch.cat([c.K for c in parts]),
        world_to_cam=torch.cat([c.world_to_cam for c in parts]),
        width=torch.cat([c.width for c in parts]),
        height=torch.cat([c.height for c in parts]),
    )


#: bytes of uint8 training images held at once (``SPLATKIT_IMAGE_BUDGET_MB`` overrides): above
#: it, images are read from disk when used, through an LRU cache of this size
IMAGE_BUDGET_BYTES = int(float(os.environ.get("SPLATKIT_IMAGE_BUDGET_MB", 4096)) * 2**20)


def read_image_u8(path: Path, width: int, height: int) -> Tensor:
    """A photo as uint8 ``[H, W, 3]``, resized to (width, height) if needed."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError as e:
        raise UserError(
            f"Image {path} listed by the scene is missing.",
            "Check the scene folder, or rerun the SfM stage.",
        ) from e
    return torch.from_numpy(arr.copy())


def load_image(path: Path, width: int, height: int) -> Tensor:
    """A photo as float32 ``[H, W, 3]`` in [0, 1], resized to (width, height) if needed."""
    return to_float(read_image_u8(path, width, height))


def to_float(img: Tensor) -> Tensor:
    """uint8 ``[H, W, 3]`` -> float32 in [0, 1] (on the tensor's device)."""
    return img.to(torch.float32).div_(255.0)


class TrainImages(Sequence):
    """Training photos: ``images[k]`` is photo ``k`` as float32 ``[H, W, 3]`` in [0, 1] on ``device``.

    Held as uint8. When all of them fit in ``budget_bytes`` they are read once and kept (on
    ``device``); otherwise (``lazy``) each is read from disk when used and the most recently used
    ones are kept in CPU memory, at most ``budget_bytes`` of them.
    """

    def __init__(self, paths: list[Path], sizes: list[tuple[int, int]], device="cpu",
                 budget_bytes: int = IMAGE_BUDGET_BYTES) -> None:  # fmt: skip
        self.paths, self.sizes, self.device = list(paths), list(sizes), torch.device(device)
        self.budget_bytes = int(budget_bytes)
        self.total_bytes = sum(3 * w * h for w, h in self.sizes)
        self.lazy = self.total_bytes > self.budget_bytes
        self._held: OrderedDict[int, Tensor] = OrderedDict()
        if not self.lazy:
            for k in range(len(self.paths)):
                self._held[k] = self._read(k).to(self.device)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> Tensor:
        return to_float(self.uint8(k).to(self.device, non_blocking=True))

    def uint8(self, k: int) -> Tensor:
        """Photo ``k`` as held: uint8 ``[H, W, 3]``."""
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        img = self._held.get(k)
        if img is not None:
            self._held.move_to_end(k)
            return img
        img = self._read(k)
        self._held[k] = img
        while self.held_bytes > self.budget_bytes and len(self._held) > 1:
            self._held.popitem(last=False)
        return img

    @property
    def held_bytes(self) -> int:
        return sum(t.numel() for t in self._held.values())

    def _read(self, k: int) -> Tensor:
        w, h = self.sizes[k]
        return read_image_u8(self.paths[k], w, h)


def load_images(scene: Scene, idx: list[int], cams: Cameras, device="cpu",
                budget_bytes: int = IMAGE_BUDGET_BYTES) -> TrainImages:  # fmt: skip
    """Images ``idx`` of the scene at the sizes of ``cams`` (already scaled), used on ``device``."""
    paths = [Path(scene.image_dir) / cams.names[i] for i in idx]
    sizes = [(int(cams.width[i]), int(cams.height[i])) for i in idx]
    return TrainImages(paths, sizes, device, budget_bytes)


@dataclass
class WorldNorm:
    """``x_norm = scale * (x_world - center)``."""

    center: Tensor  # [3]
    scale: float

    @classmethod
    def identity(cls) -> WorldNorm:
        return cls(torch.zeros(3), 1.0)

    @classmethod
    def from_scene(cls, scene: Scene) -> WorldNorm:
        c = scene.cameras.centers.double()
        center = c.mean(0)
        radius = float((c - center).norm(dim=1).max()) if len(c) > 1 else 0.0
        if not math.isfinite(radius) or radius < 1e-9:
            return cls(center.float(), 1.0)
        return cls(center.float(), 1.0 / radius)

    def world_to_cam(self, w2c: Tensor) -> Tensor:
        """World-to-camera matrices of the normalised world (camera coordinates scaled too)."""
        w2c = w2c.double().clone()
        R, t = w2c[..., :3, :3], w2c[..., :3, 3]
        c = self.center.double()
        w2c[..., :3, 3] = self.scale * (t + (R @ c[:, None])[..., 0])
        return w2c.float()

    def points_to_norm(self, x: Tensor) -> Tensor:
        """World points ``[..., 3]`` in the normalised world (in ``x``'s dtype)."""
        return (x - self.center.to(x)) * self.scale

    def splats_to_norm(self, s: Splats) -> Splats:
        d = s.as_dict()
        d["means"] = self.points_to_norm(s.means)
        d["log_scales"] = s.log_scales + math.log(self.scale)
        return Splats(**d)

    def splats_to_world(self, s: Splats) -> Splats:
        d = s.detach().as_dict()
        d["means"] = d["means"] / self.scale + self.center.to(d["means"])
        d["log_scales"] = d["log_scales"] - math.log(self.scale)
        return Splats(**d)


def make_view(cams: Cameras, i: int, norm: WorldNorm, device="cpu") -> View:
    return View(
        world_to_cam=norm.world_to_cam(cams.world_to_cam[i]).to(device),
        K=cams.K[i].to(device),
        width=int(cams.width[i]),
        height=int(cams.height[i]),
    )
