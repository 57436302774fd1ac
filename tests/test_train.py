"""Training: recovery of a synthetic scene, bitwise resume, densification, SH schedule, loss."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splatkit.config import TrainConfig
from splatkit.evaluate import evaluate
from splatkit.events import EventBus
from splatkit.render import RenderSettings, View, get_renderer, make_renderer
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats, rgb_to_sh0
from splatkit.train import TrainResult, train
from splatkit.train import checkpoint as ck
from splatkit.train.losses import photometric_loss
from splatkit.train.optim import (
    SplatDefaultStrategy,
    compute_relocation,
    make_optimizers,
    sh_degree_at,
    splats_to_params,
    strategy_info,
)

BACKEND = "cpu"
W, H = 64, 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def look_at(C, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """World-to-camera (OpenCV axes) for a camera at C looking at target, world z up."""
    C = torch.as_tensor(C, dtype=torch.float64)
    f = torch.as_tensor(target, dtype=torch.float64) - C
    f = f / f.norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = R
    M[:3, 3] = -R @ C
    return M


def make_scene(tmp: Path, n=200, ncam=10, seed=0, offset=(0.0, 0.0, 0.0), unit=1.0):
    """Random Gaussians rendered (reference renderer, float64) from ``ncam`` cameras on a circle.

    The scene's points are a partial, perturbed copy of the truth: 60% of the centres, jittered
    by 0.05, colours pulled halfway to grey. ``offset``/``unit`` move and scale the world.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    means = (torch.rand(n, 3, generator=g, dtype=f64) * 2 - 1) * torch.tensor([1.0, 1.0, 0.6])
    scales = 0.07 * (0.6 + 0.8 * torch.rand(n, 3, generator=g, dtype=f64))
    quats = torch.randn(n, 4, generator=g, dtype=f64)
    opac = torch.logit(torch.full((n,), 0.85, dtype=f64))
    rgb = torch.rand(n, 3, generator=g, dtype=f64)
    off = torch.tensor(offset, dtype=f64)
    truth = Splats(
        means * unit + off, torch.log(scales * unit), quats, opac,
        rgb_to_sh0(rgb)[:, None, :], torch.zeros(n, 0, 3, dtype=f64),
    )  # fmt: skip
    K = torch.tensor([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1]], dtype=f64)
    render = get_renderer("reference")
    img_dir = tmp / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    names, w2cs = [], []
    for i in range(ncam):
        a = 2 * math.pi * i / ncam
        C = torch.tensor([3.5 * math.cos(a), 3.5 * math.sin(a), 1.0 + 0.3 * math.sin(3 * a)])
        M = look_at(C * unit + off, off)
        out = render(truth, View(M, K, W, H), RenderSettings(sh_degree=0))
        arr = (out.image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        names.append(f"img_{i:03d}.png")
        Image.fromarray(arr).save(img_dir / names[-1])
        w2cs.append(M)
    cams = Cameras(
        names, K[None].repeat(ncam, 1, 1).float(), torch.stack(w2cs).float(),
        torch.full((ncam,), W), torch.full((ncam,), H),
    )  # fmt: skip
    keep = torch.randperm(n, generator=g)[: int(0.6 * n)]
    pts = means[keep] + 0.05 * torch.randn(len(keep), 3, generator=g, dtype=f64)
    cols = 0.5 * rgb[keep] + 0.25
    return Scene(cams, img_dir, (pts * unit + off).float(), cols.float()), truth


def small_cfg(**kw) -> TrainConfig:
    base = dict(
        steps=40, resolution=W, sh_degree=1, sh_degree_interval=20, refine_start=10,
        refine_stop=35, refine_every=10, reset_every=30, eval_every=0, checkpoint_every=1000,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("synth"), n=120, ncam=10)[0]


# (1) recovery ---------------------------------------------------------------------------------


def test_recovers_synthetic_scene(tmp_path):
    # Offset and scaled world: training normalises internally and must hand back COLMAP units.
    scene, _ = make_scene(tmp_path / "s", n=200, ncam=10, offset=(5.0, -3.0, 2.0), unit=0.5)
    init = Splats.from_points(scene.points, scene.point_colors, sh_degree=1)
    before = evaluate(init, scene, W, BACKEND).psnr
    cfg = small_cfg(steps=200, refine_start=50, refine_stop=150, refine_every=50,
                    reset_every=100_000, eval_every=100)  # fmt: skip
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    res = train(scene, cfg, tmp_path / "out", BACKEND, bus=bus)
    after = evaluate(res.splats, scene, W, BACKEND).psnr
    print(f"held-out PSNR {before:.2f} -> {after:.2f} dB, {len(res.splats)} splats")
    assert isinstance(res, TrainResult) and res.steps_done == 200 and not res.interrupted
    assert after >= THRESH_ABS and after - before >= THRESH_GAIN, (before, after)
    # splats came back in the scene's frame: their centre is near the offset, not the origin
    assert (res.splats.means.mean(0) - torch.tensor([5.0, -3.0, 2.0])).norm() < 0.5
    kinds = {e.kind for e in events}
    assert {"train_step", "eval"} <= kinds
    steps = [e for e in events if e.kind == "train_step"]
    assert steps[-1].step == 200 and steps[-1].eta_seconds == 0.0 and steps[-1].num_splats > 0
    assert [e.step for e in events if e.kind == "eval"] == [100, 200]


# Measured (cpu backend, this seed): held-out PSNR 18.74 dB at the perturbed initialisation,
# 21.48 dB after 200 steps (the true Gaussians render the test views at 62 dB, so the bound is
# the short schedule, not the renderer). Thresholds leave ~1 dB for float differences between
# machines and library versions; a loop that does not learn stays near 18.7 dB.
THRESH_ABS = 20.5
THRESH_GAIN = 2.0


# (2) resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_interrupted_then_resumed_is_bitwise_identical(scene, tmp_path, strategy):
    cfg = small_cfg(strategy=strategy, checkpoint_every=10, max_splats=150)
    full = train(scene, cfg, tmp_path / "full", BACKEND)

    calls = {"n": 0}

    def stop_after_17() -> bool:
        calls["n"] += 1
        return calls["n"] == 17

    part = train(scene, cfg, tmp_path / "part", BACKEND, stop_flag=stop_after_17)
    assert part.interrupted and part.steps_done == 17
    assert [s for s, _ in ck.list_checkpoints(tmp_path / "part")] == [10, 17]  # last 2 kept
    resumed = train(scene, cfg, tmp_path / "part", BACKEND, resume=True)
    assert resumed.resumed_from == 17 and resumed.steps_done == 40 and not resumed.interrupted
    assert [s for s, _ in ck.list_checkpoints(tmp_path / "part")] == [30, 40]
    a, b = full.splats.as_dict(), resumed.splats.as_dict()
    assert len(full.splats) == len(resumed.splats)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the checkpoint holds what it should
    payload = ck.load_checkpoint(ck.latest_checkpoint(tmp_path / "part"))
    assert {"params", "optimizers", "strategy_state", "rng", "view_order", "config"} <= set(payload)
    assert payload["config"]["strategy"] == strategy and payload["step"] == 40


def test_resume_without_checkpoint_starts_fresh(scene, tmp_path):
    res = train(scene, small_cfg(steps=3), tmp_path, BACKEND, resume=True)
    assert res.resumed_from is None and res.steps_done == 3


# (3) densification ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_densification_changes_splat_count(scene, tmp_path, strategy):
    n0 = scene.points.shape[0]
    cfg = small_cfg(steps=22, strategy=strategy, grow_grad2d=1e-7, max_splats=10_000)
    res = train(scene, cfg, tmp_path, BACKEND)
    assert len(res.splats) > n0, (strategy, n0, len(res.splats))


def test_max_splats_caps_default_strategy(scene, tmp_path):
    cfg = small_cfg(steps=22, grow_grad2d=1e-7, max_splats=80)
    assert len(train(scene, cfg, tmp_path, BACKEND).splats) <= 80


def test_strategy_info_adapts_shapes():
    m2d = torch.zeros(5, 2, requires_grad=True)
    (m2d * torch.arange(10.0).view(5, 2)).sum().backward()
    radii = torch.tensor([[1, 1], [0, 0], [2, 3], [1, 0], [4, 4]], dtype=torch.int32)
    info = strategy_info(m2d, radii, 64, 48)
    assert info["means2d"].grad.shape == (1, 5, 2) and info["radii"].shape == (1, 5, 2)
    strat = SplatDefaultStrategy(refine_start_iter=0, refine_every=1000)
    params = splats_to_params(Splats.from_points(torch.rand(5, 3), torch.rand(5, 3), 0))
    state = strat.initialize_state(1.0)
    strat.step_post_backward(params, make_optimizers(params, small_cfg(), 1.0), state, 1, info)
    assert state["count"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_opacity_reset_runs():
    # gsplat 1.5.3's own predicate never fires; ours does at multiples of reset_every.
    params = splats_to_params(Splats.from_points(torch.rand(4, 3), torch.rand(4, 3), 0, 0.9))
    opts = make_optimizers(params, small_cfg(), 1.0)
    strat = SplatDefaultStrategy(refine_start_iter=10_000, reset_every=30)
    state = strat.initialize_state(1.0)
    m2d = torch.zeros(4, 2, requires_grad=True)
    m2d.sum().backward()
    info = strategy_info(m2d, torch.ones(4, 2, dtype=torch.int32), 8, 8)
    strat.step_post_backward(params, opts, state, 29, info)
    assert torch.sigmoid(params["opacities"]).min() > 0.8
    strat.step_post_backward(params, opts, state, 30, info)
    assert torch.sigmoid(params["opacities"]).max() <= 0.01 + 1e-6


def test_relocation_formula():
    opa = torch.tensor([0.3, 0.6, 0.9])
    scales = torch.ones(3, 3)
    binoms = torch.tensor([[math.comb(n, k) for k in range(51)] for n in range(51)]).float()
    new_opa, new_scales = compute_relocation(opa, scales, torch.tensor([1, 2, 3]), binoms)
    assert torch.allclose(new_opa, 1 - (1 - opa) ** (1 / torch.tensor([1.0, 2.0, 3.0])))
    assert torch.allclose(new_scales[0], torch.ones(3))  # one copy: unchanged
    # n = 2: denom = p - p^2/sqrt(2) + p (i=1: k=0; i=2: k=0,1)
    p = new_opa[1]
    denom = p + (p - p**2 / math.sqrt(2))
    assert torch.allclose(new_scales[1], (0.6 / denom) * torch.ones(3))


# (4) SH schedule ------------------------------------------------------------------------------


def test_sh_degree_schedule_function():
    cfg = small_cfg(sh_degree=3, sh_degree_interval=1000)
    assert [sh_degree_at(s, cfg) for s in (0, 999, 1000, 2500, 3000, 9000)] == [0, 0, 1, 2, 3, 3]
    assert sh_degree_at(0, small_cfg(sh_degree=2, sh_degree_interval=0)) == 2


def test_sh_degree_used_by_the_loop(scene, tmp_path):
    seen = []
    real = make_renderer(BACKEND)

    def wrapped(splats, view, settings):
        seen.append(settings.sh_degree)
        assert splats.sh_degree == 2  # coefficients for the top degree from the start
        return real(splats, view, settings)

    spy = dataclasses.replace(real, render=wrapped)
    train(scene, small_cfg(steps=7, sh_degree=2, sh_degree_interval=3), tmp_path, spy)
    assert seen == [0, 0, 0, 1, 1, 1, 2]


# (5) loss -------------------------------------------------------------------------------------


def test_loss_on_known_inputs():
    gt = torch.full((32, 32, 3), 0.6)
    img = torch.full((32, 32, 3), 0.5)
    # float32 E[x^2] - mx^2 leaves cancellation noise in SSIM's variances: ~1e-5 with
    # pytorch_msssim, ~4e-4 with the torchmetrics fallback
    tol = 1e-3
    assert photometric_loss(gt, gt, 0.2).item() == pytest.approx(0.0, abs=tol)
    assert photometric_loss(img, gt, 0.0).item() == pytest.approx(0.1, abs=1e-6)
    # SSIM of two constant images: (2 mx my + C1) / (mx^2 + my^2 + C1) (variances are 0)
    c1 = 0.01**2
    s = (2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1)
    assert photometric_loss(img, gt, 1.0).item() == pytest.approx(1 - s, abs=tol)
    expected = 0.8 * 0.1 + 0.2 * (1 - s)
    assert photometric_loss(img, gt, 0.2).item() == pytest.approx(expected, abs=tol)
    # differentiable w.r.t. the render
    x = img.clone().requires_grad_(True)
    photometric_loss(x, gt, 0.2).backward()
    assert x.grad is not None and torch.all(x.grad < 0)  # raising the render lowers the loss


# (6) the renderer's capabilities ---------------------------------------------------------------


def test_absgrad_densification_runs_on_the_cpu_renderer(scene, tmp_path, monkeypatch):
    """The CPU kernel computes absolute screen-space gradients; absgrad densification uses them."""
    seen = []
    real = SplatDefaultStrategy.step_post_backward

    def spy(self, params, optimizers, state, step, info, packed=False):
        seen.append(info["means2d"].absgrad is not None and self.absgrad)
        return real(self, params, optimizers, state, step, info, packed=packed)

    monkeypatch.setattr(SplatDefaultStrategy, "step_post_backward", spy)
    res = train(scene, small_cfg(steps=12, absgrad=True, refine_start=5, refine_every=5), tmp_path, BACKEND)
    assert res.steps_done == 12 and seen and all(seen)


@pytest.mark.parametrize("option", ["packed"])
def test_an_option_the_renderer_cannot_honour_is_refused_before_training(scene, tmp_path, option):
    from splatkit.errors import UserError

    with pytest.raises(UserError, match=f"--{option} is not available with the 'cpu' renderer"):
        train(scene, small_cfg(**{option: True}), tmp_path, BACKEND)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was trained


def test_first_step_compile_time_stays_out_of_the_eta():
    """A fresh install compiles the CPU kernels in the first step (~40 s): the first progress
    line's s/step (and so its ETA) is the steps after it, the loss still every step's."""
    import torch

    from splatkit.train.loop import _Meter

    m = _Meter(every=4, device="cpu")
    for seconds, loss in [(40.0, 1.0), (0.1, 1.0), (0.1, 1.0), (0.1, 1.0)]:
        m.add(torch.tensor(loss), seconds)
    assert m.full() and abs(m.seconds_per_step() - 0.1) < 1e-9
    assert float(m.loss) / m.n == 1.0
    m.reset()
    m.add(torch.tensor(2.0), 0.2)
    assert m.seconds_per_step() == 0.2  # later windows count every step
    one = _Meter(every=1, device="cpu")
    one.add(torch.tensor(1.0), 40.0)
    assert one.seconds_per_step() == 40.0  # a window of only the first step: its own time
