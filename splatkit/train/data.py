"""Training data: the scene's photos at the training resolution, and an internal world frame.

Images are loaded once, resized so that their longest side is at most ``resolution`` (never
enlarged), and cached as float32 ``[H, W, 3]`` tensors in [0, 1] on the training device. The
intrinsics are scaled to match with :meth:`Cameras.scaled`.

Training happens in a normalised world (cameras centred on their mean, largest camera distance
1): thresholds like the near plane behave the same whatever units SfM picked. The transform is a
translation and a uniform scale, so splats map back exactly (rotations and SH are unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import UserError
from ..render import View
from ..scene import Cameras, Scene
from ..splats import Splats


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


def load_image(path: Path, width: int, height: int) -> Tensor:
    """A photo as float32 ``[H, W, 3]`` in [0, 1], resized to (width, height) if needed."""
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
    return torch.from_numpy(arr.astype(np.float32) / 255.0)


def load_images(scene: Scene, idx: list[int], cams: Cameras, device="cpu") -> list[Tensor]:
    """Images ``idx`` of the scene at the sizes of ``cams`` (already scaled), on ``device``."""
    out = []
    for i in idx:
        w, h = int(cams.width[i]), int(cams.height[i])
        out.append(load_image(Path(scene.image_dir) / cams.names[i], w, h).to(device))
    return out


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

    def splats_to_norm(self, s: Splats) -> Splats:
        d = s.as_dict()
        d["means"] = (s.means - self.center.to(s.means)) * self.scale
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


class ViewOrder:
    """Random order of training views: a fresh permutation per epoch from a seeded generator."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm: list[int] = []
        self.pos = 0

    def next(self) -> int:
        if self.pos >= len(self.perm):
            self.perm = torch.randperm(self.n, generator=self.gen).tolist()
            self.pos = 0
        self.pos += 1
        return self.perm[self.pos - 1]

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": list(self.perm), "pos": self.pos, "n": self.n}

    def load_state_dict(self, d: dict) -> None:
        self.gen.set_state(d["gen"])
        self.perm, self.pos, self.n = list(d["perm"]), int(d["pos"]), int(d["n"])
