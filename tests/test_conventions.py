"""Frame and file conventions stated in docs/conventions.md, one named test per rule."""

from __future__ import annotations

import torch

from splatkit.export.plugins import PLUGINS
from splatkit.frames import UPRIGHT_TO_UE_AXES, ply_to_ue
from splatkit.render import View
from splatkit.render.projection import project
from splatkit.scene import Cameras, inria_split


def _project_point(p_world, world_to_cam, K, W=64, H=48):
    means = torch.tensor([p_world], dtype=torch.float64)
    covars = torch.eye(3, dtype=torch.float64)[None] * 1e-4
    means2d, _, depths, radii, _ = project(means, covars, world_to_cam, K, W, H, 0.3, 0.01, 1e10,
                                           None, False)
    return means2d[0], depths[0]


def test_convention_world_to_cam_is_opencv_x_right_y_down_z_forward():
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64)
    centre, depth = _project_point([0.0, 0.0, 2.0], w2c, K)
    assert depth > 0  # +z is in front of the camera
    assert torch.allclose(centre, torch.tensor([32.0, 24.0], dtype=torch.float64))
    right, _ = _project_point([0.5, 0.0, 2.0], w2c, K)
    down, _ = _project_point([0.0, 0.5, 2.0], w2c, K)
    assert right[0] > 32.0  # camera +x is image right
    assert down[1] > 24.0  # camera +y is image down


def test_convention_cameras_centers_from_world_to_cam():
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    C = torch.tensor([1.0, 2.0, 3.0])
    w2c = torch.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ C  # x_cam = R x_world + t, t = -R C
    cams = Cameras(["a"], torch.eye(3)[None], w2c[None], torch.tensor([4]), torch.tensor([3]))
    assert torch.allclose(cams.centers[0], C)
    assert torch.allclose(cams.cam_to_world[0, :3, 3], C, atol=1e-6)
    assert View(w2c, torch.eye(3), 4, 3).world_to_cam is w2c


def test_convention_inria_split_every_8th_by_name_is_test():
    names = [f"{i:04d}.jpg" for i in range(20)][::-1]  # order of the list must not matter
    train, test = inria_split(names)
    assert [names[i] for i in test] == ["0000.jpg", "0008.jpg", "0016.jpg"]
    assert not set(train) & set(test) and len(train) + len(test) == 20


def test_convention_unreal_is_left_handed_z_up_centimetres():
    # Unreal: +X forward, +Y right, +Z up, centimetres. Splatkit's upright frame: +X forward,
    # +Y left, +Z up, metres (right-handed), so Unreal = (x, -y, z) * 100 after the plugin's x100.
    M = torch.tensor(UPRIGHT_TO_UE_AXES)
    assert torch.det(M) < 0  # a handedness flip
    assert torch.equal(M @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]))


def test_convention_plugins_map_ply_minus_y_to_unreal_up():
    # NanoGS / PICOSplat: UE = 100 (z, x, -y); Italink: UE = 100 (x, -z, -y): PLY -Y is up in both.
    up = torch.tensor([[0.0, -1.0, 0.0]])
    for plugin in ("nanogs", "picosplat", "italink"):
        ue = ply_to_ue(up, PLUGINS[plugin].ply_axes)[0]
        assert ue[2] > 0 and abs(float(ue[0])) < 1e-9 and abs(float(ue[1])) < 1e-9, plugin
    assert set(PLUGINS) >= {"nanogs", "picosplat", "italink"}
