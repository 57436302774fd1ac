"""DashGaussian's schedules (Chen et al., "DashGaussian: Optimizing 3D Gaussian Splatting in 200
Seconds", CVPR 2025), for the ``fast`` preset: train at low resolution first, grow the splats in
step with the resolution, and hold the position learning rate until the resolution is nearly full.

**Resolution** (``resolution_schedule = "dash"``). From the training photos' spectra (the mean
over photos of the centred FFT magnitude, ``E``): the largest downscale ``s_max`` (at most 8) is
the one whose central low-frequency window of ``(H / s, W / s)`` still holds 1/4 of every photo's
spectral energy. Between ``E(s_max)`` and the total, 32 evenly spaced energy levels each get the
downscale whose window holds that energy, and a start step proportional to the log of the
energy gained (``until * log(E_k / E_min) / log(E_total / E_min)``), ``until`` being the end of
densification; between levels the pixel count (``1 / s^2``) grows linearly; the factor used is
the integer part, and full resolution is used from ``until`` on.

**Primitive budget** (``densify_budget``, default strategy). The cap ``N_max = N_init + m``,
with the momentum ``m`` starting at ``5 N_init`` and, at each densification, becoming
``max(m, 0.98 m + min(1e6, n))`` where ``n`` is what the 3DGS rule would add; splatkit also
holds ``N_max`` to ``max_splats``. At step ``t`` at downscale ``s`` the target is
``N_init + (N_max - N_init) / s^(2 - t / until)`` and one densification may add at most
``min(target - N, 0.2 N)`` splats: the candidates with the highest screen-space gradients.

**Position learning rate.** Constant until the downscale falls below 2, then the usual
exponential decay over the remaining steps (:meth:`ResolutionSchedule.lr_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..render import View
from .optim import SplatDefaultStrategy

MAX_SCALE = 8.0
LEVELS = 32
START_ENERGY_FRACTION = 0.25
MOMENTUM_INIT = 5.0
MOMENTUM_DECAY = 0.98
MOMENTUM_STEP_CAP = 1_000_000
MAX_GROWTH_PER_REFINE = 0.2


def spectrum(img: Tensor) -> Tensor:
    """Centred FFT magnitude ``[H, W]`` of an image ``[H, W, 3]`` (summed over channels)."""
    f = torch.fft.fftshift(torch.fft.fft2(img.float().permute(2, 0, 1)), dim=(-2, -1))
    return f.abs().sum(0)


def window_energy(spec: Tensor, scale: float) -> float:
    """Energy in the central ``(H / scale, W / scale)`` window of a centred spectrum."""
    h, w = spec.shape
    wh, ww = int(h / scale) // 2, int(w / scale) // 2
    ch, cw = (h + 1) // 2, (w + 1) // 2
    return float(spec[ch - wh : ch + wh, cw - ww : cw + ww].sum())


def scale_for_energy(spec: Tensor, target: float, iters: int = 40) -> float:
    """The downscale whose central window holds ``target`` energy (bisection on 1 / scale)."""
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if window_energy(spec, 1.0 / max(mid, 1e-9)) < target:
            lo = mid
        else:
            hi = mid
    return 1.0 / max(hi, 1e-9)


@dataclass
class ResolutionSchedule:
    """Integer downscale per step: ``scales[i]`` from step ``begins[i]``; 1 from ``until`` on."""

    scales: list[float]
    begins: list[int]
    until: int
    steps: int

    @classmethod
    def from_images(cls, images: list[Tensor], until: int, steps: int) -> ResolutionSchedule:
        size = min(img.shape[0] for img in images), min(img.shape[1] for img in images)
        specs = [spectrum(img[: size[0], : size[1]]) for img in images]
        s_max = MAX_SCALE
        for sp in specs:
            s_max = min(s_max, scale_for_energy(sp, float(sp.sum()) * START_ENERGY_FRACTION))
        mean = torch.stack(specs).mean(0)
        e_total, e_min = float(mean.sum()), window_energy(mean, s_max)
        scales, begins = [s_max], [0]
        span = math.log(e_total / e_min) if e_total > e_min > 0 else 1.0
        for k in range(1, LEVELS):
            e_k = e_min + (e_total - e_min) * k / (LEVELS - 1)
            scales.append(1.0 if k == LEVELS - 1 else scale_for_energy(mean, e_k))
            begins.append(int(until * math.log(max(e_k, e_min) / e_min) / span))
        return cls(scales=scales, begins=begins, until=int(until), steps=int(steps))

    def scale_at(self, step: int) -> int:
        if step >= self.until or len(self.scales) < 2:
            return 1
        i = max(j for j, b in enumerate(self.begins) if b <= step)
        if i + 1 >= len(self.scales):
            return 1
        b0, b1 = self.begins[i], self.begins[i + 1]
        s0, s1 = self.scales[i], self.scales[i + 1]
        t = (step - b0) / max(b1 - b0, 1)
        inv2 = t * (1.0 / s1**2 - 1.0 / s0**2) + 1.0 / s0**2
        return max(1, int(inv2**-0.5))

    def lr_step(self, step: int) -> float:
        """The step at which to read the position learning-rate decay: 0 until the downscale
        falls below 2, then a decay compressed into the remaining steps."""
        start = next((b for b, s in zip(self.begins, self.scales, strict=True) if s < 2), self.until)
        start = min(start, self.steps - 1)
        return self.steps * max(0, step - start) / max(self.steps - start, 1)


@dataclass
class ScaledData:
    """Views and photos at the schedule's current downscale (recomputed when it changes)."""

    scale: int = 1
    cache: dict[int, tuple[View, Tensor]] = field(default_factory=dict)

    def get(self, k: int, view: View, gt: Tensor, scale: int) -> tuple[View, Tensor]:
        if scale == 1:
            return view, gt
        if scale != self.scale:
            self.cache.clear()
            self.scale = scale
        if k not in self.cache:
            self.cache[k] = downscaled(view, gt, scale)
        return self.cache[k]


def downscaled(view: View, gt: Tensor, scale: int) -> tuple[View, Tensor]:
    """``view`` and its photo at ``1 / scale`` (box filter; intrinsics scaled to the new size)."""
    h, w = max(1, gt.shape[0] // scale), max(1, gt.shape[1] // scale)
    small = F.interpolate(gt.permute(2, 0, 1)[None], size=(h, w), mode="area")[0].permute(1, 2, 0)
    K = view.K.clone()
    K[0, :] *= w / gt.shape[1]
    K[1, :] *= h / gt.shape[0]
    K[2, 2] = 1.0
    return View(view.world_to_cam, K, w, h), small.contiguous()


@dataclass
class BudgetedStrategy(SplatDefaultStrategy):
    """The default (3DGS) strategy, growing at most DashGaussian's budget per densification."""

    schedule: ResolutionSchedule | None = None
    max_splats: int = 1_000_000

    def target(self, state: dict, step: int) -> int:
        n0, m = state["dash_n_init"], state["dash_momentum"]
        n_max = min(self.max_splats, n0 + m)
        s = self.schedule.scale_at(step) if self.schedule is not None else 1
        until = self.schedule.until if self.schedule is not None else self.refine_stop_iter
        return int(n0 + (n_max - n0) / float(s) ** (2.0 - min(step / max(until, 1), 1.0)))

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step):
        n = len(params["means"])
        state.setdefault("dash_n_init", n)
        state.setdefault("dash_momentum", int(MOMENTUM_INIT * n))
        grads = state["grad2d"] / state["count"].clamp_min(1)
        wanted = grads > self.grow_grad2d
        n_wanted = int(wanted.sum())
        state["dash_momentum"] = max(state["dash_momentum"], int(
            MOMENTUM_DECAY * state["dash_momentum"] + min(MOMENTUM_STEP_CAP, n_wanted)))
        budget = max(0, min(self.target(state, step) - n, int(MAX_GROWTH_PER_REFINE * n)))
        if n_wanted > budget:
            keep = torch.topk(torch.where(wanted, grads, torch.zeros_like(grads)), budget).indices
            mask = torch.zeros_like(wanted)
            mask[keep] = True
            state["grad2d"] = torch.where(mask, state["grad2d"], torch.zeros_like(state["grad2d"]))
        return super()._grow_gs(params, optimizers, state, step)


def budgeted(strategy: SplatDefaultStrategy, schedule: ResolutionSchedule | None,
             max_splats: int) -> BudgetedStrategy:
    """``strategy``'s settings, with DashGaussian's growth budget."""
    from dataclasses import fields

    kw = {f.name: getattr(strategy, f.name) for f in fields(strategy) if f.init}
    return BudgetedStrategy(**kw, schedule=schedule, max_splats=max_splats)
