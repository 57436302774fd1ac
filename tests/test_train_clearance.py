"""Camera clearance: splats where the photographer stood are removed, with their Adam moments and
the strategy's running state, during training and after its last step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_train import BACKEND, W, make_scene, small_cfg

from splatkit.config import TrainConfig
from splatkit.render import View
from splatkit.splats import Splats
from splatkit.train import clearance, loop, train
from splatkit.train.densify import make_densifier
from splatkit.train.optim import make_optimizers, splats_to_params
from splatkit.views import WorldNorm, make_view, scaled_cameras

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_camera_spacing_is_the_median_nearest_neighbour_distance():
    # Nearest neighbours: 1, 1, 3 (the third camera's nearest is the second, 3 away) -> median 1.
    c = torch.tensor([[0.0, 0, 0], [1, 0, 0], [4, 0, 0]])
    assert clearance.camera_spacing(c) == pytest.approx(1.0)
    assert clearance.camera_spacing(c[:1]) == 0.0


def _camera(center=(0.0, 0.0, 0.0)) -> View:
    """Looking along +z from ``center``, 100x100 pixels, focal length 100."""
    w2c = torch.eye(4)
    w2c[:3, 3] = -torch.tensor(center)
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    return View(w2c, K, 100, 100)


#: An SfM point far from every camera: no splat near a camera is nearer to it.
FAR_POINT = clearance.point_index(torch.tensor([[0.0, 100.0, 0.0]]))


def test_near_cameras_marks_the_unseen_splats_inside_the_radius(monkeypatch):
    monkeypatch.setattr(clearance, "POINT_CHUNK", 4)  # the candidates found over several chunks
    means = torch.tensor([
        [0.0, 0, 0.5],    # in front, in the image: the photo holds it
        [0.0, 0, -0.5],   # behind
        [0.9, 0, 0.1],    # in front but outside the image (u = 950)
        [0.2, 0.1, -0.9],  # behind, at the radius' edge
        [2.0, 0, 0],      # too far
        [10.0, 0, -0.5],  # behind the second camera
    ])
    cams = [_camera(), _camera((10.0, 0, 0))]
    assert clearance.near_cameras(means, cams, 1.0, FAR_POINT).tolist() == [
        False, True, True, True, False, True]
    assert not clearance.near_cameras(means, [_camera()], 0.0, FAR_POINT).any()
    assert not clearance.near_cameras(means, cams, 1.0, None).any()  # no points: nothing is free


def test_near_cameras_keeps_splats_nearer_to_a_surface_than_to_the_camera():
    # 0.3 behind the camera at the origin (radius 1): free space unless an SfM point is nearer.
    behind = torch.tensor([[0.0, 0, -0.3], [0.0, 0, -0.6]])
    wall = clearance.point_index(torch.tensor([[0.0, 0, -0.7], [0.0, 0.5, -0.7]]))  # 0.4 and 0.1 away
    assert clearance.near_cameras(behind, [_camera()], 1.0, wall).tolist() == [True, False]
    # The nearer of two unseeing cameras decides: the second, 0.05 in front of it, looks away.
    both = [_camera(), _camera((0.0, 0.0, -0.25))]
    ground = clearance.point_index(torch.tensor([[0.0, 0.2, -0.3]]))  # 0.2 from the first splat
    assert clearance.near_cameras(behind[:1], [_camera()], 1.0, ground).tolist() == [False]
    assert clearance.near_cameras(behind[:1], both, 1.0, ground).tolist() == [True]


def test_clearance_radius_is_a_multiple_of_the_camera_spacing():
    centers = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])  # spacing 1
    assert clearance.clearance_radius(centers, 2.0) == pytest.approx(2.0)
    assert clearance.clearance_radius(centers, 0.0) == 0.0
    assert clearance.clearance_radius(centers[:1], 2.0) == 0.0
    assert clearance.point_index(torch.zeros(0, 3)) is None


def _params(n: int) -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(0)
    s = Splats(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3,
               torch.randn(n, 4, generator=g), torch.randn(n, generator=g),
               torch.randn(n, 1, 3, generator=g), torch.randn(n, 3, 3, generator=g))
    return splats_to_params(s)


def test_clear_cameras_removes_parameters_moments_and_state_together():
    cfg = TrainConfig()
    params = _params(50)
    optimizers = make_optimizers(params, cfg, 1.0)
    for p in params.values():
        p.grad = torch.randn_like(p)
    for o in optimizers.values():
        o.step()
    _, state = make_densifier(cfg, 1.0)
    state.update(grad2d=torch.arange(50.0), count=torch.arange(50.0), radii=torch.arange(50.0))
    cameras = [_camera()]
    near = clearance.near_cameras(params["means"].detach(), cameras, 1.0, FAR_POINT)
    assert 0 < int(near.sum()) < 50
    keep = (~near).nonzero().flatten()
    means_before = params["means"].detach().clone()
    moment_before = optimizers["means"].state[params["means"]]["exp_avg"].clone()

    n = clearance.clear_cameras(params, optimizers, state, cameras, 1.0, FAR_POINT)

    assert n == int(near.sum())
    assert all(len(p) == 50 - n for p in params.values())
    assert torch.equal(params["means"].detach(), means_before[keep])
    assert torch.equal(optimizers["means"].state[params["means"]]["exp_avg"], moment_before[keep])
    assert torch.equal(state["grad2d"], keep.float())
    assert not clearance.near_cameras(params["means"].detach(), cameras, 1.0, FAR_POINT).any()


def _scene_with_points_at_the_cameras(tmp_path):
    """The synthetic scene plus four points just behind four training cameras (they look at the
    origin): splats start there. The clearance must see them as free space, as it sees the
    splats that drift there in a real run, so its index holds the scene's own points only."""
    scene, _ = make_scene(tmp_path, n=120, ncam=10)
    at_cams = scene.cameras.centers[scene.train_idx[:4]] * 1.02
    points = torch.cat([scene.points, at_cams])
    colors = torch.cat([scene.point_colors, torch.full((4, 3), 0.5)])
    return dataclasses.replace(scene, points=points, point_colors=colors), len(scene.points)


def _near_count(scene, n_real: int, splats, radius_spacings: float) -> int:
    norm = WorldNorm.from_scene(scene)
    centers = norm.points_to_norm(scene.cameras.centers[scene.train_idx])
    radius = clearance.clearance_radius(centers, radius_spacings)
    cams = scaled_cameras(scene.cameras, W)
    views = [make_view(cams, i, norm) for i in scene.train_idx]
    index = clearance.point_index(norm.points_to_norm(scene.points[:n_real]))
    return int(clearance.near_cameras(norm.points_to_norm(splats.means), views, radius, index).sum())


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_training_leaves_no_splat_where_a_training_camera_stood(tmp_path, strategy, monkeypatch):
    scene, n_real = _scene_with_points_at_the_cameras(tmp_path)
    monkeypatch.setattr(loop, "point_index", lambda pts: clearance.point_index(pts[:n_real]))
    # No densification in 25 steps: only the clearance removes splats.
    cfg = small_cfg(strategy=strategy, max_splats=200, steps=25, refine_start=100)
    kept = train(scene, dataclasses.replace(cfg, camera_clearance=0.0), tmp_path / "off", BACKEND)
    cleared = train(scene, dataclasses.replace(cfg, camera_clearance=0.2), tmp_path / "on", BACKEND)
    assert _near_count(scene, n_real, kept.splats, 0.2) >= 4  # the points put at the cameras stayed
    assert _near_count(scene, n_real, cleared.splats, 0.2) == 0
    assert len(cleared.splats) >= len(kept.splats) - 10  # the scene itself is kept
