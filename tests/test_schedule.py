"""The coarse-to-fine resolution schedule: scales, views and photos that agree."""

import torch

from splatkit.config import TrainConfig
from splatkit.render import View
from splatkit.train.schedule import MIN_SIDE, resize_image, scale_at, scale_view, view_at_step


def view():
    K = torch.tensor([[300.0, 0.0, 161.0], [0.0, 310.0, 118.0], [0.0, 0.0, 1.0]])
    return View(world_to_cam=torch.eye(4), K=K, width=320, height=240)


def test_scale_grows_from_start_to_full():
    cfg = TrainConfig(steps=1000, coarse_to_fine=0.5, coarse_start_scale=0.25)
    s = [scale_at(cfg, k) for k in range(0, 1000, 50)]
    assert s[0] == 0.25 and all(a < b for a, b in zip(s[:9], s[1:10], strict=True))
    assert abs(scale_at(cfg, 250) - 0.5) < 1e-12  # geometric: halfway is the geometric mean
    assert scale_at(cfg, 500) == 1.0 and scale_at(cfg, 999) == 1.0
    assert scale_at(TrainConfig(steps=1000), 0) == 1.0  # off by default


def test_scaled_view_projects_like_the_resized_photo():
    v = view()
    small = scale_view(v, 80, 60)
    p = torch.tensor([0.3, -0.2, 2.0])
    full = (v.K @ p)[:2] / p[2]
    low = (small.K @ p)[:2] / p[2]
    # pixel centres: full-resolution (u + 0.5) maps to (u + 0.5) / 4
    torch.testing.assert_close(low, full / 4)
    # a bright pixel block lands where the view says it does
    img = torch.zeros(240, 320, 3)
    img[100:104, 200:204] = 1.0
    out = resize_image(img, 80, 60)
    assert out.shape == (60, 80, 3) and out.dtype == torch.float32
    assert out[25, 50, 0] > 0.5 and out[25, 50].sum() == out.max() * 3


def test_view_at_step_caches_and_passes_full_resolution_through():
    cfg = TrainConfig(steps=100, coarse_to_fine=0.5, coarse_start_scale=0.1)
    v, img = view(), torch.rand(240, 320, 3)
    v0, i0 = view_at_step(cfg, 0, v, img)
    assert (v0.width, v0.height) == (43, MIN_SIDE)  # 0.1 of 320 x 240, held at the minimum side
    assert i0.shape == (v0.height, v0.width, 3)
    assert view_at_step(cfg, 0, v, img)[1] is i0  # cached
    v1, i1 = view_at_step(cfg, 60, v, img)
    assert v1 is v and i1 is img
    u8 = (img * 255).to(torch.uint8)
    assert view_at_step(cfg, 10, v, u8)[1].dtype == torch.uint8
