"""The ``Scene`` contract: cameras, sparse points and the train/test split.

Conventions (docs/conventions.md): world-to-camera matrices in COLMAP/OpenCV convention
(camera x right, y down, z forward; ``x_cam = R @ x_world + t``); pinhole intrinsics in pixels
with the pixel centre of pixel (i, j) at (j + 0.5, i + 0.5); images undistorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

#: The INRIA / Mip-NeRF 360 hold-out rule: images sorted by name, every 8th one is a test view.
LLFF_HOLD = 8


@dataclass
class Cameras:
    """Pinhole cameras of one scene, one row per image.

    Attributes:
        names: image file names (relative to ``image_dir`` of the scene), length C.
        K: intrinsics, float32 ``[C, 3, 3]``, pixels, for images of size (width, height).
        world_to_cam: float32 ``[C, 4, 4]``, OpenCV/COLMAP axes (x right, y down, z forward).
        width: image widths in pixels, int64 ``[C]``.
        height: image heights in pixels, int64 ``[C]``.
    """

    names: list[str]
    K: Tensor
    world_to_cam: Tensor
    width: Tensor
    height: Tensor

    def __len__(self) -> int:
        return len(self.names)

    def __post_init__(self) -> None:
        C = len(self.names)
        assert self.K.shape == (C, 3, 3), self.K.shape
        assert self.world_to_cam.shape == (C, 4, 4), self.world_to_cam.shape
        assert self.width.shape == (C,) and self.height.shape == (C,)

    @property
    def cam_to_world(self) -> Tensor:
        """``[C, 4, 4]`` camera-to-world matrices (OpenCV axes)."""
        return torch.linalg.inv(self.world_to_cam.double()).float()

    @property
    def centers(self) -> Tensor:
        """``[C, 3]`` camera centres in world coordinates."""
        R = self.world_to_cam[:, :3, :3]
        t = self.world_to_cam[:, :3, 3]
        return -(R.transpose(1, 2) @ t[:, :, None])[:, :, 0]

    def subset(self, idx: list[int]) -> Cameras:
        return Cameras(
            names=[self.names[i] for i in idx],
            K=self.K[idx],
            world_to_cam=self.world_to_cam[idx],
            width=self.width[idx],
            height=self.height[idx],
        )

    def scaled(self, factor: float) -> Cameras:
        """The same cameras for images resized by ``factor`` (e.g. 0.5 halves width and height)."""
        K = self.K.clone()
        K[:, :2, :] *= factor
        w = torch.round(self.width.double() * factor).long()
        h = torch.round(self.height.double() * factor).long()
        return Cameras(self.names, K, self.world_to_cam.clone(), w, h)


def inria_split(names: list[str], hold: int = LLFF_HOLD) -> tuple[list[int], list[int]]:
    """Train and test indices by the INRIA protocol: sort by name, every ``hold``-th is test.

    Indices refer to positions in ``names`` (which need not be sorted).
    """
    order = sorted(range(len(names)), key=lambda i: names[i])
    test = [i for k, i in enumerate(order) if k % hold == 0] if len(names) > 1 else []
    test_set = set(test)
    train = [i for i in order if i not in test_set]
    return train, sorted(test, key=lambda i: names[i])


@dataclass
class Scene:
    """What SfM hands to training.

    Attributes:
        cameras: all registered cameras (undistorted, pinhole).
        image_dir: folder holding the undistorted images named by ``cameras.names``.
        points: sparse SfM points, float32 ``[P, 3]``, world frame.
        point_colors: their colours, float32 ``[P, 3]`` in [0, 1].
        train_idx: indices into ``cameras`` used for training.
        test_idx: indices held out for evaluation (never trained on).
        unregistered: names of input images that SfM could not place.
    """

    cameras: Cameras
    image_dir: Path
    points: Tensor
    point_colors: Tensor
    train_idx: list[int] = field(default_factory=list)
    test_idx: list[int] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.train_idx and not self.test_idx:
            self.train_idx, self.test_idx = inria_split(self.cameras.names)

    @property
    def extent(self) -> float:
        """Scene scale as in 3DGS: 1.1 x the largest camera distance from the cameras' mean centre."""
        c = self.cameras.centers
        return float(1.1 * (c - c.mean(0)).norm(dim=1).max().clamp(min=1e-6))
