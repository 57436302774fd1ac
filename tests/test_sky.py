"""Sky points (splatkit/train/sky.py): far-sphere starting splats where the photos look."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from splatkit.scene import Cameras, Scene
from splatkit.train.sky import fibonacci_sphere, sky_points

W, H = 80, 60


def test_fibonacci_sphere_is_unit_and_evenly_spread():
    d = fibonacci_sphere(2000)
    assert torch.allclose(d.norm(dim=1), torch.ones(2000, dtype=torch.float64))
    nn = torch.cdist(d, d).fill_diagonal_(9).min(dim=1).values
    spacing = math.sqrt(4 * math.pi / 2000)  # the side of each point's share of the sphere
    assert nn.min() > 0.5 * spacing and nn.max() < 1.5 * spacing
    assert abs(float(d.mean(0).norm())) < 1e-3  # no side favoured


def _look_at(centre, target) -> torch.Tensor:
    """World-to-camera (OpenCV axes) of a camera at ``centre`` looking at ``target``, y down."""
    z = torch.tensor(target, dtype=torch.float64) - torch.tensor(centre, dtype=torch.float64)
    z = z / z.norm()
    x = torch.linalg.cross(z, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ torch.tensor(centre, dtype=torch.float64)
    return w2c.float()


def _scene(tmp_path, colours) -> Scene:
    """Cameras on a small circle around the origin, each looking outwards (+x, +y, -x, ...),
    each photo one flat colour; the first ``len(colours) - 1`` are training views."""
    n = len(colours)
    names, w2c = [], []
    for k, c in enumerate(colours):
        a = 2 * math.pi * k / n
        centre = (0.5 * math.cos(a), 0.5 * math.sin(a), 0.0)
        w2c.append(_look_at(centre, (10 * math.cos(a), 10 * math.sin(a), 0.0)))
        names.append(f"{k:02d}.png")
        Image.fromarray(np.full((H, W, 3), c, np.uint8)).save(tmp_path / names[-1])
    K = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    cams = Cameras(names=names, K=K.repeat(n, 1, 1), world_to_cam=torch.stack(w2c),
                   width=torch.tensor([W] * n), height=torch.tensor([H] * n))  # fmt: skip
    return Scene(cams, tmp_path, torch.zeros(1, 3), torch.zeros(1, 3),
                 train_idx=list(range(n - 1)), test_idx=[n - 1])  # fmt: skip


def test_sky_points_lie_on_the_far_sphere_where_training_cameras_look(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    scene = _scene(tmp_path, colours)
    pts, cols = sky_points(scene, 4000, radius_factor=10.0)
    centre = scene.cameras.centers.mean(0)
    r = (pts - centre).norm(dim=1)
    assert torch.allclose(r, torch.full_like(r, 10.0 * scene.extent), rtol=1e-4)
    assert 0 < len(pts) < 4000  # only what the training cameras see
    # Every point is inside some training camera's image, in front of it.
    cams = scene.cameras
    inside_any = torch.zeros(len(pts), dtype=torch.bool)
    for i in scene.train_idx:
        xc = pts @ cams.world_to_cam[i, :3, :3].T + cams.world_to_cam[i, :3, 3]
        uv = (xc @ cams.K[i].T)[:, :2] / xc[:, 2:]
        inside_any |= (xc[:, 2] > 0) & (uv >= 0).all(1) & (uv[:, 0] < W) & (uv[:, 1] < H)
    assert bool(inside_any.all())
    # Above the horizon only (the cameras are level, y down: world up is +z) unless asked.
    assert bool((pts[:, 2] > centre[2]).all())
    everywhere, _ = sky_points(scene, 4000, radius_factor=10.0, above_deg=None)
    assert bool((everywhere[:, 2] < centre[2]).any()) and len(everywhere) > 1.8 * len(pts)
    # Nothing in the held-out camera's direction (-y: camera 3 looks that way), none behind.
    assert float(pts[:, 1].min() - centre[1]) > -0.9 * 10.0 * scene.extent


def test_sky_colours_come_from_the_photos_that_see_them(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    scene = _scene(tmp_path, colours)
    pts, cols = sky_points(scene, 4000)
    centre = scene.cameras.centers.mean(0)
    d = pts - centre
    red = d[:, 0] > 0.9 * d.norm(dim=1)  # straight ahead of camera 0 only (+x)
    green = d[:, 1] > 0.9 * d.norm(dim=1)  # camera 1 (+y)
    assert red.any() and green.any()
    assert torch.allclose(cols[red], torch.tensor([1.0, 0, 0]).expand(int(red.sum()), 3), atol=0.02)
    assert torch.allclose(cols[green], torch.tensor([0, 1.0, 0]).expand(int(green.sum()), 3), atol=0.02)


def test_no_sky_points_when_off(tmp_path):
    scene = _scene(tmp_path, [(9, 9, 9), (9, 9, 9)])
    pts, cols = sky_points(scene, 0)
    assert pts.shape == (0, 3) and cols.shape == (0, 3)
