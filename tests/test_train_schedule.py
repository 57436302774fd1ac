"""DashGaussian's resolution schedule and primitive budget (splatkit.train.schedule), and the
``fast`` preset that uses them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_train import BACKEND, W, make_scene

from splatkit.config import preset_config
from splatkit.render import View, make_renderer
from splatkit.train import train
from splatkit.train.optim import SplatDefaultStrategy
from splatkit.train.schedule import BudgetedStrategy, ResolutionSchedule, budgeted, downscaled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(kind: str, n=3, h=96, w=128):
    g = torch.Generator().manual_seed(0)
    if kind == "noise":
        return [torch.rand(h, w, 3, generator=g) for _ in range(n)]
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return [torch.stack([0.5 + 0.4 * torch.sin(3 * x + i), 0.5 + 0.3 * y, 0.5 * x * y], -1) for i in range(n)]


def test_schedule_starts_low_and_reaches_full_resolution():
    s = ResolutionSchedule.from_images(_images("smooth"), until=6000, steps=10_000)
    assert s.scales[0] == pytest.approx(8.0) and s.scales[-1] == 1.0 and len(s.scales) == 32
    assert all(a >= b - 1e-9 for a, b in zip(s.scales, s.scales[1:], strict=False))
    assert s.begins == sorted(s.begins) and s.begins[0] == 0 and s.begins[-1] <= 6000
    at = [s.scale_at(t) for t in range(0, 7000, 250)]
    assert at[0] == 8 and at == sorted(at, reverse=True) and s.scale_at(6000) == 1
    # the position learning rate is held until the downscale falls below 2, then decays to the end
    start = next(b for b, sc in zip(s.begins, s.scales, strict=True) if sc < 2)
    assert s.lr_step(0) == 0 and s.lr_step(start) == 0 and s.lr_step(10_000) == pytest.approx(10_000)


def test_detailed_photos_start_at_a_higher_resolution():
    """Fine detail holds the spectrum's energy at high frequencies: less downscaling at first."""
    smooth = ResolutionSchedule.from_images(_images("smooth"), 6000, 10_000)
    noisy = ResolutionSchedule.from_images(_images("noise"), 6000, 10_000)
    assert noisy.scales[0] < smooth.scales[0] and noisy.scales[0] < 2.5


def test_downscaled_view_and_photo_agree():
    gt = torch.rand(48, 64, 3)
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    v, small = downscaled(View(torch.eye(4), K, 64, 48), gt, 4)
    assert (v.width, v.height) == (16, 12) and small.shape == (12, 16, 3)
    torch.testing.assert_close(v.K, torch.tensor([[12.5, 0, 8], [0, 12.5, 6], [0, 0, 1]]))
    torch.testing.assert_close(small[0, 0], gt[:4, :4].mean((0, 1)))


def test_budget_limits_growth_to_the_highest_gradients():
    n = 100
    params = torch.nn.ParameterDict({
        "means": torch.randn(n, 3), "scales": torch.full((n, 3), -3.0), "quats": torch.randn(n, 4),
        "opacities": torch.zeros(n), "sh0": torch.zeros(n, 1, 3), "shN": torch.zeros(n, 0, 3)})
    opts = {k: torch.optim.Adam([p], lr=0.0) for k, p in params.items()}
    plain = SplatDefaultStrategy(grow_grad2d=1e-4)
    strat = budgeted(plain, None, max_splats=110)
    assert isinstance(strat, BudgetedStrategy) and strat.grow_grad2d == 1e-4
    state = strat.initialize_state(scene_scale=1.0)
    grads = torch.linspace(2e-4, 1e-3, n)
    state["grad2d"], state["count"] = grads.clone(), torch.ones(n)
    n_dupli, n_split = strat._grow_gs(params, opts, state, step=600)
    assert n_dupli + n_split == 10 and len(params["means"]) == 110  # capped at max_splats
    assert state["dash_momentum"] >= 5 * n
    kept = torch.nonzero(state["grad2d"][:n] > 0).squeeze(1)
    assert set(kept.tolist()) == set(range(90, 100))  # the 10 highest gradients


def test_fast_preset_resolves_and_trains_at_low_resolution_first(tmp_path):
    cfg = preset_config("fast")
    t = cfg.train
    assert (t.steps, t.resolution_schedule, t.densify_budget, t.strategy) == (10_000, "dash", True, "default")
    assert t.refine_stop < t.steps
    scene, _ = make_scene(tmp_path / "s", n=60, ncam=4)
    tiny = dataclasses.replace(t, steps=12, resolution=W, refine_start=2, refine_stop=8, refine_every=3,
                               sh_degree=0, eval_every=0, checkpoint_every=100, grow_grad2d=1e-6)
    widths = []
    cpu = make_renderer(BACKEND)

    def recording(splats, view, settings):
        widths.append(view.width)
        return cpu.render(splats, view, settings)

    res = train(scene, tiny, tmp_path / "out", dataclasses.replace(cpu, render=recording))
    assert res.steps_done == 12
    assert widths[0] < W and widths[-1] == W and widths == sorted(widths)
    assert len(res.splats) > 0
