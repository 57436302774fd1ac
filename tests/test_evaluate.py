"""Evaluation: PSNR/SSIM definitions, the INRIA split, previews."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.image import structural_similarity_index_measure

from splatkit.evaluate import evaluate, write_previews
from splatkit.scene import Cameras, Scene
from splatkit.scores import PSNR_CAP, psnr, ssim
from splatkit.splats import Splats, rgb_to_sh0


def test_psnr_identical_is_capped():
    img = torch.rand(8, 8, 3)
    assert psnr(img, img) == PSNR_CAP == 100.0


def test_psnr_matches_formula():
    gt = torch.full((10, 10, 3), 0.5)
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-5)  # 10 log10(1 / 0.01), float32
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 64, 3, generator=g, dtype=torch.float64) * 0.05
    base = torch.full((64, 64, 3), 0.5, dtype=torch.float64)
    mse = float((noise**2).mean())
    assert psnr(base + noise, base) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    assert psnr(base + noise, base) == pytest.approx(26.02, abs=0.2)  # sigma 0.05 -> 20 log10(20)


def test_ssim_matches_torchmetrics():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(40, 50, 3, generator=g)
    b = (a + 0.1 * torch.randn(40, 50, 3, generator=g)).clamp(0, 1)
    ref = structural_similarity_index_measure(
        a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None],
        data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11,
    )  # fmt: skip
    assert ssim(a, b) == pytest.approx(float(ref), abs=1e-7)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def _scene(tmp_path, names, w=32, h=24):
    """Cameras at x = index looking down +z at a few splats; random photos."""
    n = len(names)
    w2c = torch.eye(4).repeat(n, 1, 1)
    w2c[:, 0, 3] = -0.01 * torch.arange(n).float()
    K = torch.tensor([[30.0, 0, w / 2], [0, 30.0, h / 2], [0, 0, 1]]).repeat(n, 1, 1)
    cams = Cameras(list(names), K, w2c, torch.full((n,), w), torch.full((n,), h))
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        # photos at twice the camera size: evaluation must resize to the training resolution
        arr = rng.integers(0, 256, (h * 2, w * 2, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / "images" / name)
    cams = Cameras(cams.names, cams.K * torch.tensor([2.0, 2.0, 1.0])[:, None], w2c,
                   cams.width * 2, cams.height * 2)  # fmt: skip
    return Scene(cams, tmp_path / "images", torch.zeros(0, 3), torch.zeros(0, 3))


def _splats():
    g = torch.Generator().manual_seed(2)
    n = 20
    means = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
    return Splats(
        means, torch.full((n, 3), -2.5), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        torch.zeros(n), rgb_to_sh0(torch.rand(n, 3, generator=g))[:, None, :],
        torch.zeros(n, 0, 3),
    )  # fmt: skip


def test_evaluate_uses_inria_split_and_training_resolution(tmp_path):
    names = [f"p{i:02d}.png" for i in range(17)]
    shuffled = names[5:] + names[:5]  # the split is by name, not by list order
    scene = _scene(tmp_path, shuffled)
    ev = evaluate(_splats(), scene, 32, "reference")
    assert [r.name for r in ev.per_image] == ["p00.png", "p08.png", "p16.png"]
    assert ev.num_views == 3 and ev.resolution == (32, 24)
    assert ev.psnr == pytest.approx(np.mean([r.psnr for r in ev.per_image]))
    assert ev.ssim == pytest.approx(np.mean([r.ssim for r in ev.per_image]))
    assert 0 < ev.psnr < 30 and -1 <= ev.ssim <= 1
    # the per-image figure is the formula applied to the saved render and the resized photo
    r = ev.renders[0]
    assert r.photo.shape == r.render.shape == (24, 32, 3)
    sub = evaluate(_splats(), scene, 32, "reference", max_views=2, keep_images=False)
    assert [r.name for r in sub.per_image] == ["p00.png", "p16.png"] and not sub.renders


def test_previews_written(tmp_path):
    scene = _scene(tmp_path, [f"v{i}.png" for i in range(9)])
    ev = evaluate(_splats(), scene, 32, "reference")
    paths = write_previews(ev, tmp_path / "out" / "previews")
    assert [p.name for p in paths] == ["v0.png", "v8.png"]
    with Image.open(paths[0]) as im:
        assert im.size == (32 * 2 + 4, 24)
        arr = np.asarray(im)
    assert np.array_equal(arr[:, :32], ev.renders[0].photo)
    assert np.array_equal(arr[:, 36:], ev.renders[0].render)
    assert not list((tmp_path / "out" / "previews").glob("*.tmp"))
