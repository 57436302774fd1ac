"""Equirectangular (360-degree) frames: their pixel <-> ray maths and the pinhole views cut from them.

Conventions (docs/conventions.md, pinned by ``tests/test_pano_equirect.py``), those of COLMAP's
``panorama_sfm.py`` example:

* the panorama's frame has OpenCV axes at its centre: +x right, +y down, +z at the centre column;
* a ray ``(x, y, z)`` has yaw ``atan2(x, z)`` and pitch ``-atan2(y, hypot(x, z))`` (up is +);
* pixel ``(u, v)`` (``u`` the column, continuous, pixel centres at ``+0.5``) of a ``W x H``
  panorama (``W = 2 H``) is ``u = (1 + yaw / pi) W / 2``, ``v = (1 - 2 pitch / pi) H / 2``:
  column 0 looks backwards (yaw -180 degrees), row 0 straight up;
* a view ``k`` has the rotation ``R_k`` (``cam_from_pano``): a ray in the view's camera is
  ``R_k @ ray_pano``; its pose is ``world_to_cam = [R_k | 0] @ pano_to_world^-1``.

The views of a :class:`ViewLayout` share one square PINHOLE camera. None looks below
``ViewLayout.min_pitch_deg``: the bottom of the sphere (the tripod or pole, the hand, the person
holding it) never reaches a view (:func:`lowest_pitch_deg`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewLayout:
    """Which pinhole views are cut from each panorama (a small named preset, :data:`LAYOUTS`).

    ``yaws`` per ring (degrees, 0 = the panorama's centre column, + to the right), ``pitches`` one
    per ring (degrees, + up), one square field of view for all.
    """

    name: str
    rings: tuple[tuple[float, tuple[float, ...]], ...]
    """``(pitch, yaws)`` per ring."""
    fov_deg: float = 90.0
    min_pitch_deg: float = -50.0
    """No ray of any view points lower than this (the tripod, pole and operator stay out)."""

    def rotations(self) -> list[np.ndarray]:
        """``cam_from_pano`` 3x3 rotations, ring by ring."""
        return [view_rotation(yaw, pitch) for pitch, yaws in self.rings for yaw in yaws]

    def __len__(self) -> int:
        return sum(len(y) for _, y in self.rings)


def _ring(n: int, offset: float = 0.0) -> tuple[float, ...]:
    return tuple(offset + k * 360.0 / n for k in range(n))


#: The layouts measured in docs/benchmarks.md (issue 30); ``cube5`` is the default: on the rendered
#: walk every frame registered with each, cube4 and cube5 within 0.33 degrees against ring8's 0.45,
#: in a half to a quarter of ring8's time; cube5 keeps the upward view for training.
LAYOUTS: dict[str, ViewLayout] = {
    # COLMAP's "non-overlapping" cube without top and bottom faces
    "cube4": ViewLayout("cube4", ((0.0, _ring(4)),)),
    # the cube without its bottom face (the sky or ceiling as a fifth view)
    "cube5": ViewLayout("cube5", ((0.0, _ring(4)), (90.0, (0.0,)))),
    # 8 views around the horizon, each overlapping its neighbours by half, and 4 looking up
    "ring8": ViewLayout("ring8", ((0.0, _ring(8)), (45.0, _ring(4, 45.0)))),
}
DEFAULT_LAYOUT = "cube5"


def view_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """``cam_from_pano`` of a view looking at (yaw, pitch): yaw turns right, pitch up; no roll."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    # the view's axes in the panorama frame: forward, right, down
    fwd = np.array([math.sin(y) * math.cos(p), -math.sin(p), math.cos(y) * math.cos(p)])
    right = np.array([math.cos(y), 0.0, -math.sin(y)])
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])  # rows: camera axes in pano coordinates


def view_intrinsics(pano_height: int, fov_deg: float) -> tuple[int, float]:
    """``(size, focal)`` of the square views: as many pixels per degree as the panorama."""
    size = max(16, int(round(pano_height * fov_deg / 180.0)))
    return size, size / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def pixels_from_rays(rays: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[..., 3]`` rays in the panorama frame -> ``[..., 2]`` continuous pixel (u, v)."""
    x, y, z = rays[..., 0], rays[..., 1], rays[..., 2]
    yaw = np.arctan2(x, z)
    pitch = -np.arctan2(y, np.hypot(x, z))
    return np.stack([(1.0 + yaw / np.pi) * width / 2.0, (1.0 - 2.0 * pitch / np.pi) * height / 2.0], -1)


def rays_from_pixels(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[..., 2]`` continuous pixel (u, v) -> ``[..., 3]`` unit rays in the panorama frame."""
    yaw = (2.0 * uv[..., 0] / width - 1.0) * np.pi
    pitch = (1.0 - 2.0 * uv[..., 1] / height) * np.pi / 2.0
    c = np.cos(pitch)
    return np.stack([c * np.sin(yaw), -np.sin(pitch), c * np.cos(yaw)], -1)


def view_rays(size: int, focal: float) -> np.ndarray:
    """``[size, size, 3]`` unit rays of a square PINHOLE view (camera frame), pixel centres."""
    c = (np.arange(size) + 0.5 - size / 2.0) / focal
    x, y = np.meshgrid(c, c)
    r = np.stack([x, y, np.ones_like(x)], -1)
    return r / np.linalg.norm(r, axis=-1, keepdims=True)


def lowest_pitch_deg(layout: ViewLayout) -> float:
    """The lowest pitch any pixel of any view of ``layout`` sees (degrees)."""
    t = math.tan(math.radians(layout.fov_deg) / 2.0)
    s = np.linspace(-t, t, 257)
    one = np.ones_like(s)
    border = np.concatenate([np.stack(e, -1) for e in ((s, one * t, one), (s, -one * t, one),
                                                       (one * t, s, one), (-one * t, s, one))])  # fmt: skip
    low = 90.0
    for R in layout.rotations():
        d = border @ R  # the views' edges in the pano frame (R is cam_from_pano)
        pitch = -np.degrees(np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2])))
        low = min(low, float(pitch.min()))
    return low


def sample_bilinear(pano: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``pano`` ``[H, W, C]`` sampled at continuous pixels ``uv`` ``[..., 2]``: wraps around in
    u (the seam at yaw +-180), clamps in v."""
    H, W = pano.shape[:2]
    x = uv[..., 0] - 0.5
    y = np.clip(uv[..., 1] - 0.5, 0.0, H - 1.0)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0 = x0.astype(np.int64) % W
    x1 = (x0 + 1) % W
    y0 = y0.astype(np.int64)
    y1 = np.minimum(y0 + 1, H - 1)
    def at(yy, xx):  # gather first: the panorama itself is never copied as floats
        return pano[yy, xx].astype(np.float32)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def cut_view(pano: np.ndarray, cam_from_pano: np.ndarray, size: int, focal: float) -> np.ndarray:
    """The ``size x size`` PINHOLE view (focal ``focal``) of ``pano`` along ``cam_from_pano``."""
    rays = view_rays(size, focal) @ cam_from_pano  # row vectors: R^T r, into the pano frame
    uv = pixels_from_rays(rays, pano.shape[1], pano.shape[0])
    out = sample_bilinear(pano, uv)
    if np.issubdtype(pano.dtype, np.integer):
        out = np.clip(np.rint(out), 0, np.iinfo(pano.dtype).max).astype(pano.dtype)
    return out


def is_equirect_size(width: int, height: int, tol: float = 0.01) -> bool:
    """Whether a ``width x height`` frame has the 2:1 shape of a full 360x180 panorama."""
    return height > 0 and abs(width / height - 2.0) <= 2.0 * tol


__all__ = [
    "ViewLayout", "LAYOUTS", "DEFAULT_LAYOUT", "view_rotation", "view_intrinsics", "pixels_from_rays",
    "rays_from_pixels", "view_rays", "lowest_pitch_deg", "sample_bilinear", "cut_view", "is_equirect_size",
]
