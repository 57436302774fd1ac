"""Up from evidence (splatkit/up.py): each method on cases with a known up."""

from __future__ import annotations

import pytest
import torch

from splatkit import up as U
from tests.unreal_util import (
    DATASETS,
    angle_deg,
    centers,
    fox_w2c,
    look_dir,
    nadir_grid,
    random_rotation,
    rotate_world,
    strecha_w2c,
    synthetic_scene,
    walk,
)

Z = torch.tensor([0, 0, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_level_cameras_around_an_object(seed):
    scene, true_up = synthetic_scene(random_rotation(seed), seed=seed)
    est = U.estimate_up(scene.cameras.world_to_cam, scene.cameras.centers, scene.points)
    assert est.method == "level-cameras"
    assert angle_deg(est.vector, true_up) < 2.0
    assert 0 < est.uncertainty_deg < 2.0


@pytest.mark.parametrize("seed", range(3))
def test_nadir_grid(seed):
    R = random_rotation(10 + seed)
    w2c, pts = rotate_world(*nadir_grid(seed), R)
    cam = U.camera_up(w2c, centers(w2c))
    assert cam.method == "nadir-cameras"
    assert angle_deg(cam.vector, R @ Z) < 2.0
    est = U.estimate_up(w2c, centers(w2c), pts)
    assert angle_deg(est.vector, R @ Z) < 2.0
    assert est.ground is not None and abs(float(est.ground.height(centers(w2c)).median()) - 60) < 1


def test_nadir_grid_with_fixed_heading_is_ambiguous_without_points():
    """Looking the same way from a grid could be a facade survey: cameras alone keep the image
    tops as up; the ground plane then cannot overrule a strong camera method, so this case is
    documented as needing --up (a nadir grid flown with a fixed heading)."""
    w2c, _ = nadir_grid(0, serpentine=False)
    assert U.camera_up(w2c, centers(w2c)).method != "nadir-cameras"


@pytest.mark.parametrize("seed", range(3))
def test_walk_with_one_heading(seed):
    R = random_rotation(20 + seed)
    w2c, pts = rotate_world(*walk(seed), R)
    mean_up = U._unit(U.camera_axes(w2c)[1].mean(0))
    assert angle_deg(mean_up, R @ Z) > 10  # the cameras' own up is off by the pitch
    cam = U.camera_up(w2c, centers(w2c))
    assert cam.method == "level-walk" and angle_deg(cam.vector, R @ Z) < 2.0
    est = U.estimate_up(w2c, centers(w2c), pts)
    assert angle_deg(est.vector, R @ Z) < 2.0
    assert est.ground is not None and abs(float(est.ground.height(centers(w2c)).median()) - 1.6) < 0.05


def test_ground_plane_overrules_weak_camera_evidence():
    """Walking sideways along a street, every photo pitched down 20 degrees the same way: no
    level or walk cue, the cameras' up is off by the pitch; the ground plane decides."""
    import math

    p = math.radians(-20)
    fwd, top = [math.cos(p), 0, math.sin(p)], [-math.sin(p), 0, math.cos(p)]
    w2c = torch.stack([look_dir([0, -y, 1.6], fwd, top) for y in torch.linspace(0, 30, 25).tolist()])
    _, pts = walk(0)
    pts = pts[:, [0, 1, 2]] * torch.tensor([1.0, -1.0, 1.0]).double() + torch.tensor([5.0, 0, 0]).double()
    assert U.camera_up(w2c, centers(w2c)).method == "camera-up-average"
    est = U.estimate_up(w2c, centers(w2c), pts)
    assert est.method == "ground-plane"
    assert angle_deg(est.vector, Z) < 2.0 and est.uncertainty_deg < 1.0


def test_ground_plane_ignores_a_wall():
    w2c, pts = walk(1)
    plane = U.ground_plane(pts, centers(w2c), Z, max_tilt=30)
    assert plane is not None and angle_deg(plane.normal, Z) < 1.0  # the floor, not the wall


@pytest.mark.parametrize("name", ["strecha_fountain_p11", "strecha_castle_p19"])
def test_strecha_ground_truth(name, shared_datasets):
    w2c = strecha_w2c(name)
    est = U.camera_up(w2c, centers(w2c))
    # Strecha's LIDAR frame is level with up = -Z.
    assert angle_deg(est.vector, -Z) < 2.0, est.method


def test_fox(shared_datasets):
    if not (DATASETS / "fox" / "transforms.json").exists():
        pytest.skip("fox not available")
    w2c = fox_w2c()
    est = U.camera_up(w2c, centers(w2c))
    assert angle_deg(est.vector, Z) < 10.0, est.method  # instant-ngp's frame: +Z roughly up
