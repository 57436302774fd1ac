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

from ..config import TrainConfig
from ..errors import UserError
from ..events import NULL_BUS, EvalResult, EventBus, Message, TrainStep
from ..render import RenderSettings, get_renderer
from ..scene import Scene
from ..splats import Splats
from . import checkpoint as ck
from .data import ViewOrder, WorldNorm, load_images, make_view, scaled_cameras
from .losses import photometric_loss, regularisers
from .optim import (
    SplatMCMCStrategy,
    cap_splats,
    make_optimizers,
    make_strategy,
    means_lr_at,
    params_to_splats,
    set_means_lr,
    sh_degree_at,
    splats_to_params,
    strategy_info,
)

log = logging.getLogger(__name__)

#: MCMC regularisers (gsplat simple_trainer's ``mcmc`` preset: opacity_reg = scale_reg = 0.01).
MCMC_OPACITY_REG = 0.01
MCMC_SCALE_REG = 0.01
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
    """

    splats: Splats
    steps_done: int
    seconds: float
    interrupted: bool = False
    checkpoint: Path | None = None
    resumed_from: int | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log_every(steps: int) -> int:
    return max(1, min(10, steps // 100 or 1))


def train(
    scene: Scene,
    cfg: TrainConfig,
    out_dir: Path,
    backend: str,
    device: str = "cpu",
    bus: EventBus = NULL_BUS,
    resume: bool = False,
    stop_flag: Callable[[], bool] | None = None,
) -> TrainResult:
    """Optimise splats on the scene's training views; see the module docstring.

    ``resume=True`` continues from the newest ``out_dir/checkpoints/step_*.pt`` (a fresh start
    when there is none). ``stop_flag()`` is polled after every step; when it returns True a
    checkpoint is written and the result has ``interrupted=True``.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    render = get_renderer(backend)
    if not scene.train_idx:
        raise UserError("The scene has no training views.", "Give at least two registered photos.")

    norm = WorldNorm.from_scene(scene)
    scene_scale = scene.extent * norm.scale
    cams = scaled_cameras(scene.cameras, cfg.resolution)
    if str(device).startswith("cuda"):
        from .memory import check_fits

        pixels = [int(cams.width[i]) * int(cams.height[i]) for i in scene.train_idx]
        expected = cfg.max_splats if cfg.strategy == "mcmc" else max(scene.points.shape[0] * 10, 100_000)
        check_fits(pixels, min(expected, cfg.max_splats), cfg.resolution,
                   torch.cuda.mem_get_info(torch.device(device))[0])
    images = load_images(scene, scene.train_idx, cams, device)
    views = [make_view(cams, i, norm, device) for i in scene.train_idx]

    seed_everything(cfg.seed)
    order = ViewOrder(len(views), cfg.seed)
    strategy, strategy_state = make_strategy(cfg, scene_scale)
    start, resumed_from = 0, None
    path = ck.latest_checkpoint(out_dir) if resume else None
    if path is not None:
        payload = ck.load_checkpoint(path)
        params, strategy_state = ck.restore(payload, device)
        optimizers = make_optimizers(params, cfg, scene_scale)
        for k, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][k])
        order.load_state_dict(payload["view_order"])
        ck.set_rng_states(payload["rng"])
        start = resumed_from = int(payload["step"])
        changed = ck.config_differences(payload["config"], cfg)
        text = f"Resuming from step {start} ({path.name})."
        if changed:
            text += " Settings changed since the checkpoint: " + ", ".join(changed) + "."
        bus.emit(Message(stage="train", text=text, level="warning" if changed else "info"))
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
        params = splats_to_params(norm.splats_to_norm(init), device)
        optimizers = make_optimizers(params, cfg, scene_scale)
    strategy.check_sanity(params, optimizers)
    mcmc = isinstance(strategy, SplatMCMCStrategy)
    opacity_reg, scale_reg = (MCMC_OPACITY_REG, MCMC_SCALE_REG) if mcmc else (0.0, 0.0)

    result = TrainResult(splats=None, steps_done=start, seconds=0.0, resumed_from=resumed_from)  # type: ignore[arg-type]

    def save(step: int) -> None:
        result.checkpoint = ck.save_checkpoint(
            out_dir, step, params, optimizers, strategy_state, order.state_dict(), cfg,
            extra={"backend": backend, "norm_center": norm.center, "norm_scale": norm.scale},
        )  # fmt: skip

    every = _log_every(cfg.steps)
    window_t, window_n, loss_sum = 0.0, 0, torch.zeros((), device=device)
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        set_means_lr(optimizers, means_lr_at(step, cfg, scene_scale))
        k = order.next()
        view, gt = views[k], images[k]
        settings = RenderSettings(sh_degree=sh_degree_at(step, cfg), antialiased=cfg.antialiased)
        if cfg.absgrad:
            settings.absgrad = True  # optional switch read by backends that support it
        try:  # render, loss and backward: where a GPU runs out of memory
            out = render(params_to_splats(params), view, settings)
            img = out.image
            if cfg.random_background:
                img = img + torch.rand(3, device=device) * (1.0 - out.alpha)
            if out.means2d.requires_grad:
                out.means2d.retain_grad()
            loss = photometric_loss(img, gt, cfg.ssim_lambda)
            loss = loss + regularisers(params, opacity_reg, scale_reg)
            loss.backward()
        except torch.cuda.OutOfMemoryError:
            from .memory import out_of_memory_error

            raise out_of_memory_error(step, len(params["means"]), cfg.resolution) from None
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if out.means2d.grad is None:
            out.means2d.grad = torch.zeros_like(out.means2d)
        info = strategy_info(out.means2d, out.radii, view.width, view.height)
        if cfg.absgrad and info["means2d"].absgrad is None:
            raise UserError(
                f"absgrad densification needs absolute gradients, which the {backend!r} "
                "renderer does not compute.",
                "Turn absgrad off, or train on a GPU (gsplat backend).",
            )
        if mcmc:
            lr_next = means_lr_at(step + 1, cfg, scene_scale)
            strategy.step_post_backward(params, optimizers, strategy_state, step, info, lr=lr_next)
        else:
            strategy.step_post_backward(params, optimizers, strategy_state, step, info)
            cap_splats(params, optimizers, strategy_state, cfg.max_splats)
        loss_sum += loss.detach()
        done = step + 1
        result.steps_done = done
        window_t += time.perf_counter() - t0
        window_n += 1

        if window_n >= every or done == cfg.steps:
            sps = window_t / window_n
            mean_loss = float(loss_sum) / window_n
            result.losses.append((done, mean_loss))
            bus.emit(
                TrainStep(
                    step=done, total_steps=cfg.steps, loss=mean_loss,
                    num_splats=len(params["means"]), eta_seconds=sps * (cfg.steps - done),
                    seconds_per_step=sps,
                )
            )  # fmt: skip
            window_t, window_n, loss_sum = 0.0, 0, torch.zeros((), device=device)
            if not math.isfinite(mean_loss):
                raise RuntimeError(f"training diverged before step {done} (loss {mean_loss})")

        if cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == cfg.steps):
            result.evals.append(_quick_eval(params, norm, scene, cfg, backend, device, done, bus))
        stop = stop_flag is not None and stop_flag()
        periodic = cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0
        if stop or periodic or done == cfg.steps:
            save(done)
        if stop and done < cfg.steps:
            result.interrupted = True
            bus.emit(Message(stage="train", text=f"Stopped at step {done}; resume with --resume."))
            break

    result.splats = norm.splats_to_world(params_to_splats(params)).to("cpu")
    result.seconds = time.perf_counter() - t_start
    return result


def _quick_eval(params, norm, scene, cfg, backend, device, step, bus) -> dict[str, Any]:
    """Held-out PSNR/SSIM on up to :data:`EVAL_VIEWS` test views at the training resolution."""
    from ..evaluate import evaluate

    if not scene.test_idx:
        return {"step": step, "psnr": float("nan"), "ssim": float("nan")}
    splats = norm.splats_to_world(params_to_splats(params))
    settings = RenderSettings(sh_degree=sh_degree_at(step, cfg), antialiased=cfg.antialiased)
    ev = evaluate(
        splats, scene, cfg.resolution, backend, device, settings,
        max_views=EVAL_VIEWS, keep_images=False,
    )  # fmt: skip
    bus.emit(EvalResult(step=step, psnr=ev["psnr"], ssim=ev["ssim"]))
    return {"step": step, "psnr": ev["psnr"], "ssim": ev["ssim"], "views": ev["num_views"]}
