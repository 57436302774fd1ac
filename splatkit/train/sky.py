"""Sky points: extra starting splats on a far sphere, in the directions the training photos see.

SfM finds no points in the sky (or in any textureless distance), so 3DGS starts with nothing
there; with a black background the sky of a short run renders grey or dark, and its error
dominates the held-out PSNR of outdoor scenes (measured: docs/benchmarks.md, "sky points").
Densification fills it eventually (30k steps), a 2000-step run does not. The remedy used for
outdoor and large scenes (e.g. Kerbl et al. 2024, "A Hierarchical 3D Gaussian Representation",
sky points on a sphere) is to start the sky from splats placed far away.

Directions: a Fibonacci sphere of ``count`` points around the mean camera centre at
``radius_factor`` x the scene extent (3DGS's extent: 1.1 x the largest camera distance from
that centre), kept when at least one training camera sees them (in front of it, inside its
image). Colour: the mean of the pixels they land on in the training photos at
:data:`COLOUR_SIZE` pixels (directions hidden behind buildings get the buildings' colour;
they stay hidden and do no harm). The splats are then initialised like SfM points (kNN scales).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..scene import Scene

#: Longest side of the photos the sky colours are read from.
COLOUR_SIZE = 160


def fibonacci_sphere(n: int) -> Tensor:
    """``n`` nearly evenly spaced unit vectors ``[n, 3]`` (float64)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = (1.0 - z * z).clamp(min=0).sqrt()
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1)


def sky_points(scene: Scene, count: int, radius_factor: float = 10.0,
               above_deg: float | None = 0.0) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Points ``[M, 3]`` and colours ``[M, 3]`` (float32, world frame; ``M <= count``) on the
    sky sphere, seen by at least one training camera and, unless ``above_deg`` is None, at
    least ``above_deg`` above the horizon (world up from the cameras,
    :func:`splatkit.export.up.camera_up`): below it lies ground, which SfM does see."""
    from ..export.up import camera_up
    from .data import load_images, scaled_cameras

    empty = torch.zeros(0, 3)
    if count <= 0 or not scene.train_idx:
        return empty, empty
    centres = scene.cameras.centers.double()
    dirs = fibonacci_sphere(count)
    if above_deg is not None and len(centres) > 1:
        up = camera_up(scene.cameras.world_to_cam, scene.cameras.centers).vector.double()
        dirs = dirs[dirs @ up > math.sin(math.radians(above_deg))]
    pts = centres.mean(0) + dirs * (radius_factor * scene.extent)
    count = len(pts)
    cams = scaled_cameras(scene.cameras, COLOUR_SIZE)
    photos = load_images(scene, scene.train_idx, cams)
    colour_sum = torch.zeros(count, 3, dtype=torch.float64)
    seen = torch.zeros(count, dtype=torch.float64)
    for k, i in enumerate(scene.train_idx):
        w2c = cams.world_to_cam[i].double()
        xc = pts @ w2c[:3, :3].T + w2c[:3, 3]
        uvw = xc @ cams.K[i].double().T
        z = uvw[:, 2]
        u = uvw[:, 0] / z.clamp(min=1e-12)
        v = uvw[:, 1] / z.clamp(min=1e-12)
        w, h = int(cams.width[i]), int(cams.height[i])
        hit = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        if not bool(hit.any()):
            continue
        img = photos[k].double()
        colour_sum[hit] += img[v[hit].long(), u[hit].long()]
        seen[hit] += 1.0
    keep = seen > 0
    colours = colour_sum[keep] / seen[keep, None]
    return pts[keep].float(), colours.float().clamp(0, 1)
