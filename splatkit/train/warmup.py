"""Compile the CPU training kernels while SfM runs.

numba compiles each CPU kernel (projection + SH, rasterizer, SSIM, sparse Adam) on its first
use and caches the result on disk (``cache=True``); on a fresh install a run would wait for
that (33 s on the 2-core VM) at its first training step, after SfM. :func:`start` runs one
whole training step (render, loss, backward, Adam) and one evaluation render on a tiny synthetic scene in a
background thread, through the same functions and argument types as training, so the kernels
are compiled (or loaded from the cache) by the time training starts; SfM's C++ code runs
meanwhile (the pipeline joins the thread before training, so that two threads never run the
kernels at once). The results are never used: it only fills numba's caches.
"""

from __future__ import annotations

import logging
import threading

import torch

log = logging.getLogger(__name__)


def one_step() -> None:
    """One CPU training step and one render without gradients on 64 random splats."""
    from ..config import TrainConfig
    from ..render import RenderSettings, View, make_renderer
    from ..splats import Splats
    from .losses import photometric_loss
    from .optim import make_optimizers, optimizer_step, params_to_splats, splats_to_params

    g = torch.Generator().manual_seed(0)
    n, w, h = 64, 40, 30
    points = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    splats = Splats.from_points(points, torch.rand(n, 3, generator=g), 1, 0.5, 1.0)
    params = splats_to_params(splats, "cpu")
    optimizers = make_optimizers(params, TrainConfig(), 1.0)
    view = View(world_to_cam=torch.eye(4), width=w, height=h,
                K=torch.tensor([[40.0, 0.0, w / 2], [0.0, 40.0, h / 2], [0.0, 0.0, 1.0]]))  # fmt: skip
    render = make_renderer("cpu")
    settings = RenderSettings(sh_degree=1)
    out = render(params_to_splats(params), view, settings)
    out.means2d.retain_grad()
    photometric_loss(out.image, torch.rand(h, w, 3, generator=g), 0.2).backward()
    optimizer_step(optimizers, out.radii)
    with torch.no_grad():
        render(params_to_splats(params), view, settings)


def _run() -> None:
    try:
        one_step()
    except Exception:  # noqa: BLE001 - a failed warm-up only means training compiles later
        log.debug("CPU kernel warm-up failed", exc_info=True)


def start() -> threading.Thread:
    """Start the warm-up in a daemon thread (the caller may join it or not)."""
    t = threading.Thread(target=_run, name="splatkit-cpu-warmup", daemon=True)
    t.start()
    return t
