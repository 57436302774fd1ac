"""The training loop: one loop for every render backend.

Per step (as gsplat's ``simple_trainer.py``): pick the next training view (seeded random order,
a fresh permutation per epoch), render with the active SH degree, loss
``(1 - lambda) L1 + lambda (1 - SSIM)``, backward, one Adam step per parameter group (position
LR decaying exponentially), then the densification strategy's post-backward step.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..errors import UserError
from ..events import NULL_BUS, EvalResult, EventBus, Message, TrainStep
from ..render import Renderer, RenderSettings, View, make_renderer
from ..rundir import RunDir, as_rundir
from ..scene import Scene
from ..splats import Splats
from ..views import WorldNorm, load_images, make_view, scaled_cameras
from . import checkpoint as ck
from .addons import Addons
from .clearance import clear_cameras, clearance_radius, point_index
from .data import ViewOrder
from .densify import Densifier, densifier_kind, make_densifier
from .losses import photometric_loss
from .optim import (
    make_optimizers,
    means_lr_at,
    optimizer_step,
    params_to_splats,
    set_means_lr,
    sh_degree_at,
    splats_to_params,
    strategy_info,
)

log = logging.getLogger(__name__)

#: Held-out views scored at the periodic evaluations during training (the final one is full).
EVAL_VIEWS = 4


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        splats: the trained splats in the scene's own (COLMAP) world frame, detached, on CPU.
        steps_done: steps completed in total (including those before a resume).
        seconds: wall time of this call.
        interrupted: True when ``stop_flag`` stopped the run (a checkpoint was written).
        checkpoint: the last checkpoint written (None if none was).
        resumed_from: the step the run resumed from (None for a fresh run).
        evals: the periodic evaluations ``{"step", "psnr", "ssim"}`` (on a subset of test views).
        losses: ``(step, loss)`` at every logged step.
        trained_longest_side: the longest side, in pixels, of the images actually trained on.
        sky: the learned sky (:class:`splatkit.sky.SkyMap`, world frame of ``splats``), or None.
    """

    splats: Splats
    steps_done: int
    seconds: float
    interrupted: bool = False
    checkpoint: Path | None = None
    resumed_from: int | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    trained_longest_side: int = 0
    sky: Any = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log_every(steps: int) -> int:
    return max(1, min(10, steps // 100 or 1))


@dataclass
class TrainState:
    """Everything a training step reads and changes (what a checkpoint saves)."""

    params: torch.nn.ParameterDict
    optimizers: dict[str, torch.optim.Optimizer]
    strategy: Densifier  # the strategy and what the loop does around it (train/densify.py)
    strategy_state: dict[str, Any]
    order: ViewOrder
    step: int = 0
    resumed_from: int | None = None
    addons: Addons = field(default_factory=Addons)


@dataclass
class TrainData:
    """The scene as the loop sees it: normalised world, views and photos at the trained size."""

    norm: WorldNorm
    scene_scale: float
    views: list[View]
    images: list[Tensor]
    #: longest side of the largest training image actually used (pixels)
    trained_longest_side: int
    #: splats closer than this to a training camera centre are removed (:mod:`.clearance`)
    clearance: float = 0.0
    #: the SfM points' k-d tree the clearance measures free space with
    clearance_points: Any = None


def check_options(cfg: TrainConfig, renderer: Renderer) -> None:
    """Refuse, before training starts, an option the chosen renderer cannot honour."""
    wanted = {"absgrad": cfg.absgrad, "antialiased": cfg.antialiased, "packed": cfg.packed,
              "pose-opt": cfg.pose_opt}
    needs = {"pose-opt": "pose_gradients"}
    for name, on in wanted.items():
        if on and not getattr(renderer.caps, needs.get(name, name)):
            raise UserError(
                f"--{name} is not available with the {renderer.name!r} renderer ({renderer.device}).",
                f"Turn {name} off, or train where a renderer offers it (see `splatkit doctor`).",
            )
    if cfg.densify_budget and not densifier_kind(cfg).budgetable:
        raise UserError("--densify-budget works with the default strategy only.",
                        "Use --strategy default, or turn the budget off (mcmc has a fixed budget).")


def _as_renderer(renderer: Renderer | str, device: str | None) -> Renderer:
    if isinstance(renderer, Renderer):
        return renderer
    return make_renderer(renderer, device)


def train(
    scene: Scene,
    cfg: TrainConfig,
    out_dir: RunDir | Path,
    backend: Renderer | str,
    device: str | None = None,
    bus: EventBus = NULL_BUS,
    resume: bool = False,
    stop_flag: Callable[[], bool] | None = None,
    run_id: str = "",
) -> TrainResult:
    """Optimise splats on the scene's training views; see the module docstring.

    ``backend``: the :class:`~splatkit.render.Renderer` chosen for the run (or a backend name).
    ``resume=True`` continues from the newest intact checkpoint of run ``run_id`` in
    ``out_dir/checkpoints`` (a fresh start when there is none). ``stop_flag()`` is polled after
    every step; when it returns True a checkpoint is written and the result has
    ``interrupted=True``.
    """
    t_start = time.perf_counter()
    out_dir = as_rundir(out_dir)
    renderer = _as_renderer(backend, device)
    check_options(cfg, renderer)
    if not scene.train_idx:
        raise UserError("The scene has no training views.", "Give at least two registered photos.")
    data = _prepare_data(scene, cfg, renderer)
    seed_everything(cfg.seed)
    state = _start(scene, cfg, data, renderer, out_dir, resume, run_id, bus)
    result = TrainResult(splats=None, steps_done=state.step, seconds=0.0,  # type: ignore[arg-type]
                         resumed_from=state.resumed_from,
                         trained_longest_side=data.trained_longest_side)
    meter = _Meter(_log_every(cfg.steps), renderer.device)
    for step in range(state.step, cfg.steps):
        t0 = time.perf_counter()
        loss = _train_step(state, data, cfg, renderer, step)
        for text in state.addons.messages():
            bus.emit(Message(stage="train", text=text))
        state.step = done = step + 1
        result.steps_done = done
        meter.add(loss, time.perf_counter() - t0)
        if meter.full() or done == cfg.steps:
            _emit_progress(meter, state, cfg, result, bus)
        if cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == cfg.steps):
            result.evals.append(_quick_eval(state.params, data.norm, scene, cfg, renderer, done, bus,
                                            state.addons.sky_map()))
        stop = stop_flag is not None and stop_flag()
        if stop or done == cfg.steps or (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0):
            result.checkpoint = _save(out_dir, state, cfg, data, renderer, run_id)
        if stop and done < cfg.steps:
            result.interrupted = True
            bus.emit(Message(stage="train", text=f"Stopped at step {done}; resume with --resume."))
            break
    result.splats = data.norm.splats_to_world(params_to_splats(state.params)).to("cpu")
    result.sky = state.addons.sky_map()
    result.seconds = time.perf_counter() - t_start
    return result


def _prepare_data(scene: Scene, cfg: TrainConfig, renderer: Renderer) -> TrainData:
    norm = WorldNorm.from_scene(scene)
    cams = scaled_cameras(scene.cameras, cfg.resolution)
    device = renderer.device
    if str(device).startswith("cuda"):
        from .memory import check_fits

        pixels = [int(cams.width[i]) * int(cams.height[i]) for i in scene.train_idx]
        expected = densifier_kind(cfg).expected_splats(cfg, scene.points.shape[0])
        check_fits(pixels, min(expected, cfg.max_splats), cfg.resolution,
                   torch.cuda.mem_get_info(torch.device(device))[0])
    longest = max(max(int(cams.width[i]), int(cams.height[i])) for i in scene.train_idx)
    centers = norm.points_to_norm(scene.cameras.centers[scene.train_idx].double())
    clearance = clearance_radius(centers, cfg.camera_clearance)
    return TrainData(
        norm=norm, scene_scale=scene.extent * norm.scale,
        images=load_images(scene, scene.train_idx, cams, device),
        views=[make_view(cams, i, norm, device) for i in scene.train_idx],
        trained_longest_side=longest,
        clearance=clearance,
        clearance_points=point_index(norm.points_to_norm(scene.points.double())) if clearance else None,
    )


def _start(scene: Scene, cfg: TrainConfig, data: TrainData, renderer: Renderer, out_dir: RunDir,
           resume: bool, run_id: str, bus: EventBus) -> TrainState:
    """A fresh state from the sparse points, or the newest intact checkpoint's."""
    order = ViewOrder(len(data.views), cfg.seed)
    strategy, strategy_state = make_densifier(cfg, data.scene_scale)
    addons = Addons.build(cfg, data.images, renderer.device, data.views)
    if cfg.densify_budget:  # a budgetable kind (check_options)
        from .schedule import budgeted

        strategy.strategy = budgeted(strategy.strategy, addons.schedule, cfg.max_splats)
    found = ck.load_latest(out_dir, run_id, bus) if resume else None
    if found is not None:
        path, payload = found
        state = _restore(payload, cfg, data, renderer, order, strategy)
        addons.load_state_dict(payload.get("extra", {}).get("addons", {}))
        _say_resumed(path, payload, cfg, bus)
    else:
        if resume:
            bus.emit(Message(stage="train", text="No checkpoint to resume from; starting fresh."))
        if scene.points.shape[0] == 0:
            raise UserError(
                "SfM produced no 3D points to start the splats from.",
                "Use more overlapping photos, or check the SfM stage's messages.",
            )
        init = Splats.from_points(
            scene.points, scene.point_colors, cfg.sh_degree, cfg.init_opacity, cfg.init_scale
        )
        params = splats_to_params(data.norm.splats_to_norm(init), renderer.device)
        state = TrainState(params, make_optimizers(params, cfg, data.scene_scale), strategy,
                           strategy_state, order)
    strategy.check_sanity(state.params, state.optimizers)
    state.addons = addons
    return state


def _restore(payload, cfg, data, renderer, order, strategy) -> TrainState:
    conflicts = ck.resume_conflicts(payload["config"], cfg)
    if conflicts:
        raise UserError(
            "The checkpoint was trained with other settings: " + ", ".join(conflicts) + ".",
            "Resume with the run's own config.json, or start a new run in another folder (-o).",
        )
    params, strategy_state = ck.restore(payload, renderer.device)
    optimizers = make_optimizers(params, cfg, data.scene_scale)
    for k, opt in optimizers.items():
        opt.load_state_dict(payload["optimizers"][k])
    order.load_state_dict(payload["view_order"])
    ck.set_rng_states(payload["rng"])
    step = int(payload["step"])
    return TrainState(params, optimizers, strategy, strategy_state, order, step=step, resumed_from=step)


def _say_resumed(path: Path, payload: dict, cfg: TrainConfig, bus: EventBus) -> None:
    changed = ck.config_differences(payload["config"], cfg)
    text = f"Resuming from step {int(payload['step'])} ({path.name})."
    if changed:
        text += " Changed since the checkpoint: " + ", ".join(changed) + "."
    bus.emit(Message(stage="train", text=text))


def _train_step(state: TrainState, data: TrainData, cfg: TrainConfig, renderer: Renderer,
                step: int) -> Tensor:
    """One step: render the next view, loss, backward, Adam, densification. Returns the loss."""
    params, optimizers = state.params, state.optimizers
    addons = state.addons
    set_means_lr(optimizers, means_lr_at(addons.lr_step(step), cfg, data.scene_scale))
    k = state.order.next()
    view, gt = addons.view(k, data.views[k], data.images[k], step)
    settings = RenderSettings(sh_degree=sh_degree_at(step, cfg), antialiased=cfg.antialiased,
                              absgrad=cfg.absgrad, packed=cfg.packed)
    try:  # render, loss and backward: where a GPU runs out of memory
        out = renderer(params_to_splats(params), view, settings)
        img = addons.image(k, addons.background(k, view, out.image, out.alpha))
        if cfg.random_background and not addons.sky_on:
            img = img + torch.rand(3, device=renderer.device) * (1.0 - out.alpha)
        if out.means2d.requires_grad:
            out.means2d.retain_grad()
        loss = photometric_loss(img, gt, cfg.ssim_lambda)
        loss = addons.loss(state.strategy.regularise(loss, params))
        loss.backward()
    except torch.cuda.OutOfMemoryError:
        from .memory import out_of_memory_error

        raise out_of_memory_error(step, len(params["means"]), cfg.resolution) from None
    optimizer_step(optimizers, out.radii)
    addons.step(step)
    if out.means2d.grad is None:
        out.means2d.grad = torch.zeros_like(out.means2d)
    info = strategy_info(out.means2d, out.radii, view.width, view.height)
    state.strategy.after_backward(
        params, optimizers, state.strategy_state, step, info,
        lambda: means_lr_at(addons.lr_step(step + 1), cfg, data.scene_scale), cfg.max_splats)
    if (step + 1) % cfg.refine_every == 0 or step + 1 == cfg.steps:
        clear_cameras(params, optimizers, state.strategy.per_splat_state(state.strategy_state),
                      data.views, data.clearance, data.clearance_points)
    return loss.detach()


class _Meter:
    """Mean loss and seconds per step over the last logging window.

    The first step of a process is left out of the time (not the loss): it compiles the CPU
    kernels on a fresh install (about 40 s) and would make the first ETA hours long."""

    def __init__(self, every: int, device: str) -> None:
        self.every, self.device = every, device
        self.warm = False
        self.reset()

    def reset(self) -> None:
        self.t, self.t_all, self.n, self.timed = 0.0, 0.0, 0, 0
        self.loss = torch.zeros((), device=self.device)

    def add(self, loss: Tensor, seconds: float) -> None:
        self.loss += loss
        self.n += 1
        self.t_all += seconds
        if self.warm:
            self.t += seconds
            self.timed += 1
        self.warm = True

    def seconds_per_step(self) -> float:
        return self.t / self.timed if self.timed else self.t_all / max(self.n, 1)

    def full(self) -> bool:
        return self.n >= self.every


def _emit_progress(meter: _Meter, state: TrainState, cfg: TrainConfig, result: TrainResult,
                   bus: EventBus) -> None:
    sps = meter.seconds_per_step()
    mean_loss = float(meter.loss) / max(meter.n, 1)
    done = state.step
    result.losses.append((done, mean_loss))
    bus.emit(TrainStep(step=done, total_steps=cfg.steps, loss=mean_loss,
                       num_splats=len(state.params["means"]), eta_seconds=sps * (cfg.steps - done),
                       seconds_per_step=sps))
    meter.reset()
    if not math.isfinite(mean_loss):
        raise RuntimeError(f"training diverged before step {done} (loss {mean_loss})")


def _save(out_dir: RunDir, state: TrainState, cfg: TrainConfig, data: TrainData, renderer: Renderer,
          run_id: str) -> Path:
    return ck.save_checkpoint(
        out_dir, state.step, state.params, state.optimizers, state.strategy_state,
        state.order.state_dict(), cfg, run_id=run_id,
        extra={"backend": renderer.name, "norm_center": data.norm.center, "norm_scale": data.norm.scale,
               "addons": state.addons.state_dict()},
    )  # fmt: skip


def _quick_eval(params, norm, scene, cfg, renderer: Renderer, step, bus, sky=None) -> dict[str, Any]:
    """Held-out PSNR/SSIM on up to :data:`EVAL_VIEWS` test views at the training resolution."""
    from ..evaluate import evaluate

    if not scene.test_idx:
        return {"step": step, "psnr": float("nan"), "ssim": float("nan")}
    splats = norm.splats_to_world(params_to_splats(params))
    settings = RenderSettings(sh_degree=sh_degree_at(step, cfg), antialiased=cfg.antialiased)
    ev = evaluate(
        splats, scene, cfg.resolution, renderer.name, renderer.device, settings,
        max_views=EVAL_VIEWS, keep_images=False, sky=sky,
    )  # fmt: skip
    bus.emit(EvalResult(step=step, psnr=ev.psnr, ssim=ev.ssim))
    return {"step": step, "psnr": ev.psnr, "ssim": ev.ssim, "views": ev.num_views}
