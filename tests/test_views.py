"""Views and photos at a working resolution (splatkit/views.py): images held as uint8 (or lazily,
through a bounded cache), float32 only when used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splatkit.scene import Cameras
from splatkit.views import TrainImages, load_image, load_images

W, H = 64, 48


@pytest.fixture()
def photos(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        p = tmp_path / f"p{k}.png"
        Image.fromarray(rng.integers(0, 256, (H * 2, W * 2, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_images_are_held_as_uint8_and_used_as_float(photos):
    imgs = TrainImages(photos, [(W, H)] * len(photos))
    assert not imgs.lazy and len(imgs) == 5
    assert all(t.dtype == torch.uint8 and t.shape == (H, W, 3) for t in imgs._held.values())
    assert imgs.held_bytes == 5 * 3 * W * H  # a quarter of float32
    for k, img in enumerate(imgs):
        assert img.dtype == torch.float32 and img.shape == (H, W, 3)
        assert torch.equal(img, load_image(photos[k], W, H))
    assert torch.equal(imgs[-1], imgs[4])
    with pytest.raises(IndexError):
        imgs[5]


def test_over_the_budget_images_are_read_lazily_through_a_bounded_cache(photos):
    eager = TrainImages(photos, [(W, H)] * len(photos))
    budget = int(2.5 * 3 * W * H)  # room for two photos
    lazy = TrainImages(photos, [(W, H)] * len(photos), budget_bytes=budget)
    assert lazy.lazy and lazy.held_bytes == 0  # nothing read before it is used
    for k in [0, 1, 2, 3, 4, 2, 0]:
        assert torch.equal(lazy[k], eager[k])
        assert lazy.held_bytes <= budget
    assert sorted(lazy._held) == [0, 2]  # the two most recently used


def test_load_images_sizes_follow_the_scaled_cameras(photos):
    n = len(photos)
    cams = Cameras(
        names=[p.name for p in photos],
        K=torch.eye(3).repeat(n, 1, 1),
        world_to_cam=torch.eye(4).repeat(n, 1, 1),
        width=torch.tensor([W] * n),
        height=torch.tensor([H] * n),
    )

    class _Scene:
        image_dir = photos[0].parent

    imgs = load_images(_Scene(), [1, 3], cams)
    assert isinstance(imgs, TrainImages) and len(imgs) == 2
    assert torch.equal(imgs[1], load_image(photos[3], W, H))
