"""Blocks on the ground plane: cover, overlap, camera selection and the merge's exactly-once rule."""

from __future__ import annotations

import math

import numpy as np
import torch

from splatkit.blocks.partition import GroundFrame, merge, partition, visible_fraction
from splatkit.scene import Cameras
from splatkit.splats import Splats


def _look_at(center: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera (OpenCV axes: x right, y down, z forward) looking from center to target."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ center
    return w2c


def _street(n: int, length: float = 100.0, seed: int = 0):
    """Cameras walking along a street (x axis, z up) looking at the facades on both sides."""
    g = np.random.default_rng(seed)
    xs = np.linspace(0, length, n)
    centers = np.stack([xs, g.normal(0, 0.3, n), np.full(n, 1.6)], 1)
    side = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    targets = centers + np.stack([np.full(n, 2.0), side * 8.0, np.zeros(n)], 1)
    w2c = np.stack([_look_at(c, t) for c, t in zip(centers, targets, strict=True)])
    K = torch.tensor([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]).repeat(n, 1, 1)
    cams = Cameras([f"{i:05d}.jpg" for i in range(n)], K, torch.from_numpy(w2c).float(),
                   torch.full((n,), 320), torch.full((n,), 240))
    pts = np.stack([g.uniform(-5, length + 5, 4000), g.choice([-8.0, 8.0], 4000) + g.normal(0, 0.2, 4000),
                    g.uniform(0, 6, 4000)], 1)
    return cams, pts


def test_every_camera_and_point_lies_in_one_core_and_blocks_overlap():
    cams, pts = _street(400)
    part = partition(cams, pts, np.array([0.0, 0.0, 1.0]), 4, overlap=0.2)
    assert len(part.blocks) == 4
    owner = part.owner(pts)
    assert (owner >= 0).all()
    # cores are disjoint: each point in exactly one core
    uv = part.frame.to_ground(pts)
    counts = sum(b.in_core(uv).astype(int) for b in part.blocks)
    assert (counts == 1).all()
    cam_owner = part.owner(cams.centers.double().numpy())
    for b in part.blocks:
        own = np.flatnonzero(cam_owner == b.index)
        assert 80 <= len(own) <= 120  # balanced at camera-count quantiles
        assert set(own) <= set(b.camera_idx.tolist())  # its own cameras train it
        assert len(b.camera_idx) > len(own)  # and neighbours' from the overlap
    # every camera and point trains at least one block
    assert set(np.concatenate([b.camera_idx for b in part.blocks]).tolist()) == set(range(len(cams)))
    assert set(np.concatenate([b.point_idx for b in part.blocks]).tolist()) == set(range(len(pts)))


def test_overlap_grows_the_bounds_by_the_configured_fraction():
    cams, pts = _street(400)
    for overlap in (0.0, 0.1, 0.3):
        part = partition(cams, pts, np.array([0.0, 0.0, 1.0]), 4, overlap=overlap)
        inner = [b for b in part.blocks if all(math.isfinite(x) for x in b.core[:2])]
        assert inner, "a street of four blocks has inner blocks along its length"
        for b in inner:
            size = b.core[1] - b.core[0]
            assert math.isclose(b.bounds[0], b.core[0] - overlap * size, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(b.bounds[1], b.core[1] + overlap * size, rel_tol=1e-9, abs_tol=1e-9)


def test_a_camera_outside_a_block_that_looks_into_it_trains_it():
    cams, pts = _street(400)
    # two cameras at the far end of the street: one looks back along it (into the second block),
    # one looks away from it
    back = _look_at(np.array([95.0, 0.0, 1.6]), np.array([30.0, 0.0, 1.6]))
    away = _look_at(np.array([95.0, 0.0, 1.6]), np.array([160.0, 0.0, 1.6]))
    n = len(cams)
    K = torch.cat([cams.K, torch.tensor([[[600.0, 0, 160], [0, 600.0, 120], [0, 0, 1]]]).repeat(2, 1, 1)])
    w2c = torch.cat([cams.world_to_cam, torch.from_numpy(np.stack([back, away])).float()])
    cams2 = Cameras(cams.names + ["back.jpg", "away.jpg"], K, w2c,
                    torch.cat([cams.width, torch.tensor([320, 320])]),
                    torch.cat([cams.height, torch.tensor([240, 240])]))
    part = partition(cams2, pts, np.array([0.0, 0.0, 1.0]), 4, overlap=0.1,
                     visibility=0.05)
    second = sorted(part.blocks, key=lambda b: b.core[0])[1]
    uv = part.frame.to_ground(cams2.centers.double().numpy())
    assert not second.in_bounds(uv[n:]).any()  # both stand outside the second block
    assert n in second.camera_idx and n + 1 not in second.camera_idx


def test_visible_fraction_counts_points_in_front_and_inside_the_image():
    w2c = torch.from_numpy(_look_at(np.zeros(3), np.array([0.0, 10.0, 0.0]))).float()[None]
    K = torch.tensor([[[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]])
    cam = Cameras(["a"], K, w2c, torch.tensor([100]), torch.tensor([100]))
    pts = np.array([[0.0, 10.0, 0.0], [0.0, -10.0, 0.0], [40.0, 10.0, 0.0], [1.0, 10.0, 1.0]])
    assert visible_fraction(cam, pts)[0] == 0.5  # ahead: 2 of 4


def test_merge_keeps_each_splat_exactly_once():
    cams, pts = _street(400)
    part = partition(cams, pts, np.array([0.0, 0.0, 1.0]), 4, overlap=0.25)
    base = Splats.random(3000, sh_degree=1, seed=1)
    base.means[:] = torch.from_numpy(pts[:3000]).float()
    # each block "trains" the splats in its bounds (the same ones as the others where they overlap)
    trained = {}
    for b in part.blocks:
        inb = torch.from_numpy(b.in_bounds(part.frame.to_ground(base.means.double().numpy())))
        trained[b.index] = base.index(inb)
    merged, owners = merge(part, trained)
    assert len(merged) == len(base)
    got = {tuple(m) for m in merged.means.numpy().round(5).tolist()}
    assert got == {tuple(m) for m in base.means.numpy().round(5).tolist()}
    assert (owners == part.owner(merged.means.double().numpy())).all()


def test_ground_frame_is_right_handed_with_up_third():
    cams, _ = _street(50)
    f = GroundFrame.from_up(np.array([0.0, 0.0, 2.0]), cams.centers.double().numpy())
    assert np.allclose(f.axes @ f.axes.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(f.axes), 1.0)
    assert np.allclose(f.axes[2], [0, 0, 1])
    assert abs(f.axes[0] @ [1.0, 0, 0]) > 0.99  # u along the street
