"""Camera-pose refinement (splatkit.train.pose): the SE(3) delta, the renderers' pose gradients
(what ``Capabilities.pose_gradients`` declares), recovery of a perturbed pose, and the loop."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_train import BACKEND, H, W, make_scene, small_cfg

from splatkit.errors import UserError
from splatkit.render import BACKEND_DEVICE, CAPABILITIES, RenderSettings, View, make_renderer
from splatkit.train import checkpoint as ck
from splatkit.train import train
from splatkit.train.loop import check_options
from splatkit.train.pose import PoseRefiner, apply_delta, rotation_6d_to_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("pose"), n=120, ncam=10)


def _w2c(seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = q * torch.sign(torch.det(q))
    M[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    return M


def test_zero_delta_is_exactly_the_sfm_pose():
    w2c = _w2c()
    assert torch.equal(apply_delta(w2c, torch.zeros(9, dtype=torch.float64)), w2c)
    assert torch.equal(rotation_6d_to_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0])), torch.eye(3))


def test_delta_is_the_cam_to_world_right_multiplication():
    """world_to_cam' = inverse(cam_to_world @ T): simple_trainer's formula, in closed form."""
    g = torch.Generator().manual_seed(1)
    delta = 0.3 * torch.randn(9, generator=g, dtype=torch.float64)
    w2c = _w2c(2)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = rotation_6d_to_matrix(delta[3:] + torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64))
    T[:3, 3] = delta[:3]
    want = torch.linalg.inv(torch.linalg.inv(w2c) @ T)
    got = apply_delta(w2c, delta)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    R = got[:3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)


def _pose_loss(backend: str, splats, view: View, delta: torch.Tensor, weights: torch.Tensor):
    r = make_renderer(backend)
    v = View(apply_delta(view.world_to_cam.to(delta.dtype), delta), view.K, view.width, view.height)
    return (r(splats, v, RenderSettings(sh_degree=0)).image * weights).sum()


@pytest.mark.parametrize("backend", [b for b in CAPABILITIES if BACKEND_DEVICE[b] == "cpu"])
def test_declared_pose_gradients_are_real(synth, backend):
    """A backend that declares pose_gradients gives d loss / d pose equal to finite differences
    (float64 reference) or to the reference's (cpu); one that does not is refused --pose-opt."""
    scene, truth = synth
    cams = scene.cameras
    view = View(cams.world_to_cam[0].double(), cams.K[0].double(), W, H)
    weights = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    caps = CAPABILITIES[backend]
    if not caps.pose_gradients:
        cfg = small_cfg(pose_opt=True)
        with pytest.raises(UserError, match="pose-opt"):
            check_options(cfg, make_renderer(backend))
        return
    delta = torch.zeros(9, dtype=torch.float64, requires_grad=True)
    ref = torch.autograd.grad(_pose_loss("reference", truth, view, delta, weights), delta)[0]
    assert ref.abs().max() > 0
    eps = 1e-6
    fd = torch.zeros(9, dtype=torch.float64)
    for i in range(9):
        e = torch.zeros(9, dtype=torch.float64)
        e[i] = eps
        with torch.no_grad():
            fd[i] = (_pose_loss("reference", truth, view, e, weights)
                     - _pose_loss("reference", truth, view, -e, weights)) / (2 * eps)
    torch.testing.assert_close(ref, fd, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    if backend != "reference":
        d32 = torch.zeros(9, requires_grad=True)
        loss = _pose_loss(backend, truth.to(torch.float32), view, d32, weights.float())
        got = torch.autograd.grad(loss, d32)[0]
        torch.testing.assert_close(got.double(), ref, rtol=0, atol=2e-3 * float(ref.abs().max()))


def test_perturbed_pose_is_recovered(synth):
    """Splats fixed at the truth, one camera rotated by 1 degree and moved: the refiner's
    photometric descent brings the pose back towards the true one."""
    scene, truth = synth
    true_w2c = scene.cameras.world_to_cam[3].float()
    a = math.radians(1.0)
    Rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    bad = true_w2c.clone()
    bad[:3, :3] = Rz @ bad[:3, :3]
    bad[:3, 3] += torch.tensor([0.03, -0.02, 0.0])
    view = View(bad, scene.cameras.K[3].float(), W, H)
    gt = make_renderer("cpu")(truth.to(torch.float32), View(true_w2c, view.K, W, H),
                              RenderSettings(sh_degree=0)).image.detach()
    pose = PoseRefiner(1, lr=2e-3, weight_decay=0.0, steps=10_000)
    splats = truth.to(torch.float32)

    def err() -> float:
        return float((pose.world_to_cams([view])[0] - true_w2c).abs().max())

    before = err()
    for step in range(40):
        img = make_renderer("cpu")(splats, pose.view(view, 0), RenderSettings(sh_degree=0)).image
        (img - gt).abs().mean().backward()
        pose.step(step)
    assert err() < 0.5 * before, (before, err())


def test_pose_opt_refused_where_no_pose_gradients():
    r = make_renderer("cpu")
    r = dataclasses.replace(r, caps=dataclasses.replace(r.caps, pose_gradients=False))
    with pytest.raises(UserError, match="--pose-opt is not available"):
        check_options(small_cfg(pose_opt=True), r)
    check_options(small_cfg(pose_opt=False), r)


def test_training_refines_training_poses_only(synth, tmp_path):
    scene, _ = synth
    before = scene.cameras.world_to_cam.clone()
    cfg = small_cfg(steps=12, pose_opt=True, pose_opt_lr=1e-3, refine_start=100, checkpoint_every=6)
    res = train(scene, cfg, tmp_path, BACKEND)
    assert res.steps_done == 12
    payload = ck.load_checkpoint(ck.latest_checkpoint(tmp_path))
    deltas = payload["extra"]["addons"]["pose"]["deltas"]
    assert deltas.shape == (len(scene.train_idx), 9)
    seen = (deltas.abs().sum(1) > 0).sum()
    assert seen >= min(12, len(scene.train_idx)) - 1  # every camera trained on has moved
    # the scene's cameras (test views included) are untouched: evaluation uses the SfM poses
    assert torch.equal(scene.cameras.world_to_cam, before)
