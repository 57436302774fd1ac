"""Splitting a large capture into blocks on the ground plane, and merging the blocks' splats.

A block has a **core** (a rectangle of the ground plane; the cores tile the whole plane, the
outer ones reaching to infinity, so every point of space belongs to exactly one core) and
**bounds**, the core grown by ``overlap`` of its size on each side
(:class:`splatkit.config.BlocksConfig`). A block trains on:

- the SfM points inside its bounds (its initial splats);
- every camera standing inside its bounds, and every camera outside them that looks into the
  block: it sees at least ``visibility`` of the block's core points in front of it and inside its
  image (VastGaussian's visibility-based camera selection, without its occlusion test).

When the blocks are merged each keeps only the splats whose centre lies in its core, so each
region of the scene comes from the one block that trained it with all its neighbours' overlap
around it, and no splat is kept twice.

The split is VastGaussian's progressive one: columns along the ground axis of widest camera
spread, each column cut into rows, both at camera-count quantiles, so that blocks hold about
the same number of cameras (memory and time per block follow the cameras and the splats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from splatkit.scene import Cameras
from splatkit.splats import Splats


@dataclass(frozen=True)
class GroundFrame:
    """A right-handed frame whose third axis is world up: ground coordinates are (u, v)."""

    origin: np.ndarray
    axes: np.ndarray  # [3, 3]: rows u, v, up (unit, float64)

    def to_ground(self, x: np.ndarray) -> np.ndarray:
        """``[N, 3]`` world points to ``[N, 2]`` ground coordinates."""
        return (np.asarray(x, np.float64) - self.origin) @ self.axes[:2].T

    @staticmethod
    def from_up(up: np.ndarray, centers: np.ndarray) -> GroundFrame:
        """Ground axes along the cameras' principal spread across ``up``."""
        up = np.asarray(up, np.float64)
        up = up / np.linalg.norm(up)
        c = np.asarray(centers, np.float64)
        origin = c.mean(0)
        flat = (c - origin) - np.outer((c - origin) @ up, up)
        if len(c) >= 2 and np.linalg.norm(flat) > 0:
            u = np.linalg.svd(flat, full_matrices=False)[2][0]
        else:
            u = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
        u = u - (u @ up) * up
        u /= np.linalg.norm(u)
        v = np.cross(up, u)
        return GroundFrame(origin, np.stack([u, v, up]))


@dataclass
class Block:
    """One block: its core and training bounds (ground coordinates: umin, umax, vmin, vmax;
    the outer edges of the outer cores are infinite) and what it trains on."""

    index: int
    core: tuple[float, float, float, float]
    bounds: tuple[float, float, float, float]
    camera_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    point_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def in_core(self, uv: np.ndarray) -> np.ndarray:
        return _inside(uv, self.core, upper_open=True)

    def in_bounds(self, uv: np.ndarray) -> np.ndarray:
        return _inside(uv, self.bounds, upper_open=False)


@dataclass
class Partition:
    """Blocks covering the ground plane; ``owner`` gives each point the one core it lies in."""

    frame: GroundFrame
    blocks: list[Block]
    overlap: float

    def owner(self, xyz: np.ndarray) -> np.ndarray:
        """``[N]`` index of the block whose core holds each world point (exactly one each)."""
        uv = self.frame.to_ground(xyz)
        out = np.full(len(uv), -1, np.int64)
        for b in self.blocks:
            out[b.in_core(uv) & (out < 0)] = b.index
        assert (out >= 0).all(), "block cores must tile the plane"
        return out


def _inside(uv: np.ndarray, box, upper_open: bool) -> np.ndarray:
    u, v = uv[:, 0], uv[:, 1]
    umin, umax, vmin, vmax = box
    if upper_open:
        return (u >= umin) & (u < umax) & (v >= vmin) & (v < vmax)
    return (u >= umin) & (u <= umax) & (v >= vmin) & (v <= vmax)


def _cuts(values: np.ndarray, parts: int) -> list[float]:
    """``parts - 1`` cut positions at the quantiles of ``values`` (-inf and inf around them)."""
    inner = [float(np.quantile(values, k / parts)) for k in range(1, parts)] if len(values) else []
    return [-math.inf, *inner, math.inf]


def _grid_shape(n_blocks: int, spread_u: float, spread_v: float) -> tuple[int, int]:
    """Columns x rows with about ``n_blocks`` cells, cells as square as the spreads allow."""
    if n_blocks <= 1:
        return 1, 1
    ratio = spread_u / max(spread_v, 1e-12)
    cols = max(1, min(n_blocks, round(math.sqrt(n_blocks * ratio))))
    rows = max(1, math.ceil(n_blocks / cols))
    return cols, rows


def _grow(core, lo: np.ndarray, hi: np.ndarray, overlap: float):
    """The core grown by ``overlap`` of its size, the infinite sides clipped to the data."""
    umin, umax, vmin, vmax = (float(x) for x in core)
    fu = (max(umin, lo[0]), min(umax, hi[0]))
    fv = (max(vmin, lo[1]), min(vmax, hi[1]))
    du = overlap * max(fu[1] - fu[0], 0.0)
    dv = overlap * max(fv[1] - fv[0], 0.0)
    return (umin - du, umax + du, vmin - dv, vmax + dv)


def grid_blocks(cam_uv: np.ndarray, n_blocks: int, overlap: float) -> list[Block]:
    """Cores at camera-count quantiles: columns along u, then rows along v within each column."""
    spread = cam_uv.max(0) - cam_uv.min(0)
    cols, rows = _grid_shape(n_blocks, float(spread[0]), float(spread[1]))
    lo, hi = cam_uv.min(0), cam_uv.max(0)
    blocks = []
    ucuts = _cuts(cam_uv[:, 0], cols)
    for i in range(cols):
        in_col = (cam_uv[:, 0] >= ucuts[i]) & (cam_uv[:, 0] < ucuts[i + 1])
        vcuts = _cuts(cam_uv[in_col, 1], rows)
        for j in range(rows):
            core = (ucuts[i], ucuts[i + 1], vcuts[j], vcuts[j + 1])
            blocks.append(Block(len(blocks), core, _grow(core, lo, hi, overlap)))
    return blocks


def visible_in(cameras: Cameras, points: np.ndarray, c: int = 0) -> np.ndarray:
    """``[N]`` which ``points`` are in front of camera ``c`` and inside its image."""
    w2c = cameras.world_to_cam[c].double().numpy()
    K = cameras.K[c].double().numpy()
    pc = np.asarray(points, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    front = z > 1e-9
    zs = np.where(front, z, 1.0)
    px = K[0, 0] * pc[:, 0] / zs + K[0, 2]
    py = K[1, 1] * pc[:, 1] / zs + K[1, 2]
    return front & (px >= 0) & (px < int(cameras.width[c])) & (py >= 0) & (py < int(cameras.height[c]))


def visible_fraction(cameras: Cameras, points: np.ndarray) -> np.ndarray:
    """``[C]`` fraction of ``points`` in front of each camera and inside its image."""
    if len(points) == 0:
        return np.zeros(len(cameras))
    return np.array([visible_in(cameras, points, c).mean() for c in range(len(cameras))])


def partition(cameras: Cameras, points: np.ndarray, up: np.ndarray, n: int, overlap: float = 0.2,
              visibility: float = 0.25) -> Partition:
    """Split a capture into about ``n`` blocks (see the module's docstring)."""
    centers = cameras.centers.double().numpy()
    frame = GroundFrame.from_up(up, centers)
    cam_uv = frame.to_ground(centers)
    pts = np.asarray(points, np.float64)
    pts_uv = frame.to_ground(pts) if len(pts) else np.zeros((0, 2))
    blocks = grid_blocks(cam_uv, n, overlap)
    for b in blocks:
        inside = b.in_bounds(cam_uv)
        core_pts = pts[b.in_core(pts_uv)] if len(pts) else pts
        sample = core_pts[:: max(1, len(core_pts) // 2000)]
        looks_in = visible_fraction(cameras, sample) >= visibility if len(sample) else inside
        b.camera_idx = np.flatnonzero(inside | looks_in)
        b.point_idx = np.flatnonzero(b.in_bounds(pts_uv)) if len(pts) else np.zeros(0, np.int64)
    return Partition(frame, blocks, overlap)


def core_mask(part: Partition, block: Block, means: np.ndarray) -> np.ndarray:
    """Which of a block's trained splats it keeps at the merge: those in its own core."""
    return block.in_core(part.frame.to_ground(means))


def merge(part: Partition, trained: dict[int, Splats]) -> tuple[Splats, np.ndarray]:
    """The blocks' splats as one set, each block keeping its core's; ``[N]`` block of each."""
    kept, owners = [], []
    for b in part.blocks:
        s = trained.get(b.index)
        if s is None or len(s) == 0:
            continue
        keep = torch.from_numpy(core_mask(part, b, s.means.detach().double().numpy()))
        kept.append(s.detach().index(keep))
        owners.append(np.full(int(keep.sum()), b.index, np.int64))
    if not kept:
        raise ValueError("no block produced splats")
    fields_ = kept[0].as_dict().keys()
    merged = Splats(**{k: torch.cat([s.as_dict()[k] for s in kept]) for k in fields_})
    return merged, np.concatenate(owners)
