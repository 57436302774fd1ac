"""Bilateral-grid exposure compensation and the colour-corrected metric
(splatkit.train.appearance)."""

from __future__ import annotations

import torch

from splatkit.evaluate import Evaluation, HeldOutRender
from splatkit.train.appearance import (
    BilateralGrids,
    color_correct,
    corrected_scores,
    identity_grids,
    slice_grid,
    total_variation,
)


def _image(h=24, w=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.1 + 0.8 * torch.rand(h, w, 3, generator=g)).double()


def test_identity_grid_leaves_the_image_and_has_no_variation():
    img = _image()
    grid = identity_grids(1)[0].double()
    assert grid.shape == (12, 8, 16, 16)
    torch.testing.assert_close(slice_grid(grid, img), img, rtol=0, atol=1e-12)
    assert float(total_variation(identity_grids(3))) == 0.0


def test_constant_affine_grid_applies_that_affine():
    img = _image()
    A = torch.tensor([[1.2, 0.1, 0.0, 0.05], [0.0, 0.9, 0.0, -0.02], [0.1, 0.0, 1.1, 0.0]],
                     dtype=torch.float64)
    grid = A.reshape(12)[:, None, None, None].expand(12, 8, 16, 16)
    want = img @ A[:, :3].T + A[:, 3]
    torch.testing.assert_close(slice_grid(grid, img), want, rtol=0, atol=1e-12)


def test_slicing_interpolates_along_the_luminance_guidance():
    """Gain 1 in the darkest guidance cell, 2 in the brightest, linear in between: a grey pixel of
    luminance y gets gain 1 + y (guidance 2y - 1 mapped on the 8 cells end to end)."""
    grid = identity_grids(1)[0].double()
    gain = torch.linspace(1.0, 2.0, 8, dtype=torch.float64)
    for c in (0, 5, 10):  # the diagonal of the 3x4 matrix
        grid[c] = gain[:, None, None]
    y = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    img = y[None, :, None].expand(1, 4, 3).clone()
    out = slice_grid(grid, img)
    torch.testing.assert_close(out[0, :, 0], y * (1.0 + y), rtol=0, atol=1e-12)


def test_grids_learn_an_exposure_change():
    """A photo 30 % darker than the render: fitting the grid alone recovers it (Adam at a high
    rate here: the schedule itself is tested below)."""
    img = _image(h=12, w=16, seed=1).float()
    photo = 0.7 * img
    grids = BilateralGrids(2, steps=400)
    for group in grids.optimizer.param_groups:
        group["lr"] = 0.02
    with torch.no_grad():
        first = float((grids.apply(img, 1) - photo).abs().mean())
    for _ in range(60):
        loss = (grids.apply(img, 1) - photo).abs().mean() + grids.loss()
        loss.backward()
        grids.optimizer.step()
        grids.optimizer.zero_grad()
    assert float((grids.apply(img, 1) - photo).abs().mean().detach()) < 0.2 * first
    assert torch.equal(grids.grids[0], identity_grids(1)[0])  # the other photo's grid untouched


def test_learning_rate_warms_up_then_decays():
    g = BilateralGrids(1, steps=10_000)
    f = [g.lr_factor(s) for s in (0, 500, 1000, 5000, 10_000)]
    assert f[0] == 0.01 and f[0] < f[1] < f[2] and f[2] > f[3] > f[4]
    assert abs(f[4] - 0.01) < 1e-12


def test_color_correct_undoes_a_colour_transform():
    ref = _image(seed=2)
    changed = (0.8 * ref + 0.05) ** 1.2  # exposure, offset and a tone curve
    before = float((changed - ref).abs().mean())
    after = float((color_correct(changed, ref) - ref).abs().mean())
    assert after < 0.1 * before, (before, after)


def test_corrected_scores_from_evaluation_renders():
    ref = (_image(seed=4) * 255).round().to(torch.uint8).numpy()
    dark = (torch.from_numpy(ref).double() * 0.6).round().to(torch.uint8).numpy()
    res = Evaluation(0.0, 0.0, renders=[HeldOutRender("a", ref, dark)])
    from splatkit.scores import psnr

    plain = psnr(torch.from_numpy(dark).float() / 255, torch.from_numpy(ref).float() / 255)
    cc = corrected_scores(res)
    assert cc["cc_psnr"] > plain + 10 and 0.9 < cc["cc_ssim"] <= 1.0
