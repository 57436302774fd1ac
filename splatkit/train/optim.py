"""Parameters, optimizers, learning-rate schedule and densification strategies.

The trainable state is a ``torch.nn.ParameterDict`` with gsplat's key names plus one Adam per key
(gsplat's strategies require exactly that layout). Densification is gsplat's ``DefaultStrategy``
(3DGS clone/split/prune) or ``MCMCStrategy``, wrapped here for two reasons:

- gsplat 1.5.3's opacity reset never runs: ``step % self.reset_every == 0 & step > 0`` parses as the
  chained comparison ``(step % reset_every == 0) and (0 > 0)``. :class:`SplatDefaultStrategy`
  restores the intended ``step > 0 and step % reset_every == 0`` (as INRIA 3DGS and gsplat's
  later sources do).
- gsplat's MCMC relocation and position noise call CUDA kernels (``compute_relocation``,
  ``quat_scale_to_covar_preci``). :class:`SplatMCMCStrategy` does the same maths in plain PyTorch
  (Eq. 9 of Kheradmand et al. 2024), so it runs on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from gsplat.strategy import DefaultStrategy, MCMCStrategy
from gsplat.strategy.ops import _multinomial_sample, _update_param_with_optimizer, remove
from torch import Tensor

from ..config import TrainConfig
from ..render.cpu import visible_indices
from ..splats import Splats
from .adam import SelectiveAdam, step_selective

#: Splats field -> gsplat parameter name.
SPLAT_TO_PARAM = {
    "means": "means",
    "log_scales": "scales",
    "quats": "quats",
    "opacity_logits": "opacities",
    "sh0": "sh0",
    "shN": "shN",
}
PARAM_TO_SPLAT = {v: k for k, v in SPLAT_TO_PARAM.items()}


def splats_to_params(splats: Splats, device: str | torch.device = "cpu") -> torch.nn.ParameterDict:
    d = splats.as_dict()
    return torch.nn.ParameterDict(
        {
            p: torch.nn.Parameter(d[s].detach().to(device).float().clone())
            for s, p in SPLAT_TO_PARAM.items()
        }
    )


def params_to_splats(params: torch.nn.ParameterDict | dict[str, Tensor]) -> Splats:
    """A ``Splats`` view of the parameters (keeps autograd: used for rendering)."""
    return Splats(**{s: params[p] for s, p in SPLAT_TO_PARAM.items()})


def base_lrs(cfg: TrainConfig, scene_scale: float) -> dict[str, float]:
    """Initial learning rate per parameter (gsplat simple_trainer / INRIA values)."""
    return {
        "means": cfg.means_lr * scene_scale,
        "scales": cfg.scales_lr,
        "quats": cfg.quats_lr,
        "opacities": cfg.opacities_lr,
        "sh0": cfg.sh0_lr,
        "shN": cfg.shN_lr,
    }


def make_optimizers(
    params: torch.nn.ParameterDict, cfg: TrainConfig, scene_scale: float
) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter, eps 1e-15 (as INRIA and gsplat); :class:`SelectiveAdam` (same
    state layout) for CPU parameters when ``cfg.sparse_adam``."""
    lrs = base_lrs(cfg, scene_scale)
    return {
        name: _adam_class(cfg, p)([{"params": [p], "lr": lrs[name], "name": name}], eps=1e-15)
        for name, p in params.items()
    }


def _adam_class(cfg: TrainConfig, p: Tensor) -> type[torch.optim.Adam]:
    return SelectiveAdam if cfg.sparse_adam and p.device.type == "cpu" else torch.optim.Adam


def optimizer_step(optimizers: dict[str, torch.optim.Optimizer], radii: Tensor) -> None:
    """One step of every optimizer, then their gradients set to None (``zero_grad``); the
    :class:`SelectiveAdam` ones update only the splats with ``radii > 0`` (those the view saw),
    all in one :func:`step_selective`."""
    selective = [o for o in optimizers.values() if isinstance(o, SelectiveAdam)]
    if selective:
        step_selective(selective, visible_indices(radii))
    for opt in optimizers.values():
        if not isinstance(opt, SelectiveAdam):
            opt.step()
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = None


def means_lr_at(step: int, cfg: TrainConfig, scene_scale: float) -> float:
    """Exponential decay from ``means_lr * scene_scale`` to ``means_lr_final_factor`` of it."""
    t = min(max(step / max(cfg.steps, 1), 0.0), 1.0)
    return cfg.means_lr * scene_scale * cfg.means_lr_final_factor**t


def set_means_lr(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for group in optimizers["means"].param_groups:
        group["lr"] = lr


def sh_degree_at(step: int, cfg: TrainConfig) -> int:
    """Active SH degree: one band more every ``sh_degree_interval`` steps, up to ``sh_degree``."""
    if cfg.sh_degree_interval <= 0:
        return cfg.sh_degree
    return min(step // cfg.sh_degree_interval, cfg.sh_degree)


class _GradView:
    """What gsplat's strategies read from ``info["means2d"]``: ``.grad`` (and ``.absgrad``)."""

    def __init__(self, grad: Tensor, absgrad: Tensor | None) -> None:
        self.grad = grad
        self.absgrad = absgrad


def strategy_info(means2d: Tensor, radii: Tensor, width: int, height: int) -> dict[str, Any] | None:
    """gsplat's ``info`` dict for one camera, after ``backward()``.

    splatkit renderers return ``means2d [N, 2]`` and ``radii [N, 2]``; gsplat's non-packed path
    indexes ``[C, N, 2]`` (``torch.where(sel)[1]``), so a camera axis is added. Returns None when
    the view produced no screen-space gradient at all.
    """
    if means2d.grad is None:
        return None
    absgrad = getattr(means2d, "absgrad", None)
    return {
        "means2d": _GradView(means2d.grad[None], None if absgrad is None else absgrad[None]),
        "radii": radii[None],
        "width": int(width),
        "height": int(height),
        "n_cameras": 1,
        "gaussian_ids": None,
    }


@dataclass
class SplatDefaultStrategy(DefaultStrategy):
    """gsplat's ``DefaultStrategy`` with the opacity reset that 1.5.3 never runs."""

    def step_post_backward(self, params, optimizers, state, step, info, packed=False):
        if step >= self.refine_stop_iter:
            return
        reset_every = self.reset_every
        # Run the parent's refinement with the (broken) reset predicate out of the way...
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        # ...then reset opacities as intended (INRIA: every reset_every steps while refining).
        if reset_every > 0 and step > 0 and step % reset_every == 0:
            reset_opacities(params, optimizers, self.prune_opa * 2.0)


@torch.no_grad()
def reset_opacities(params, optimizers, value: float) -> None:
    """Clamp opacities to at most ``value`` and zero their Adam moments (gsplat ``reset_opa``)."""
    limit = math.log(value / (1.0 - value))

    def param_fn(name: str, p: Tensor) -> Tensor:
        return torch.nn.Parameter(torch.clamp(p, max=limit), requires_grad=p.requires_grad)

    def optimizer_fn(key: str, v: Tensor) -> Tensor:
        return torch.zeros_like(v)

    _update_param_with_optimizer(param_fn, optimizer_fn, params, optimizers, names=["opacities"])


def compute_relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor):
    """Eq. 9 of "3DGS as MCMC": opacity and scale of each of ``ratios`` copies of a Gaussian.

    Plain-PyTorch version of gsplat's CUDA ``relocation`` kernel (same formula).
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()
    new_opa = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    # denom = sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k / sqrt(k+1) * new_opa^(k+1)
    k = torch.arange(n_max, device=opacities.device, dtype=opacities.dtype)
    sign = torch.where(k.long() % 2 == 0, 1.0, -1.0).to(opacities.dtype)
    coef = binoms.to(opacities.dtype) * (sign / torch.sqrt(k + 1))[None, :]  # [i-1, k]
    powers = new_opa[:, None] ** (k[None, :] + 1)  # [N, k]
    per_i = powers @ coef.T  # [N, i-1]: sum over k (C is 0 for k > i-1)
    i_mask = (torch.arange(n_max, device=n.device)[None, :] < n[:, None]).to(opacities.dtype)
    denom = (per_i * i_mask).sum(1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_opa, new_scales


@dataclass
class SplatMCMCStrategy(MCMCStrategy):
    """gsplat's ``MCMCStrategy`` with its CUDA-only pieces done in plain PyTorch."""

    def step_post_backward(self, params, optimizers, state, step, info, lr: float):
        binoms = state["binoms"] = state["binoms"].to(params["means"].device)
        if self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0:
            self._relocate_gs(params, optimizers, binoms)
            self._add_new_gs(params, optimizers, binoms)
        inject_position_noise(params, lr * self.noise_lr)

    @torch.no_grad()
    def _relocate_gs(self, params, optimizers, binoms) -> int:
        opacities = torch.sigmoid(params["opacities"])
        dead = opacities <= self.min_opacity
        n = int(dead.sum())
        if n == 0 or n == len(dead):
            return 0
        dead_idx = dead.nonzero(as_tuple=True)[0]
        alive_idx = (~dead).nonzero(as_tuple=True)[0]
        sampled = alive_idx[_multinomial_sample(opacities[alive_idx], n, replacement=True)]
        self._reweight(params, optimizers, binoms, sampled, opacities)
        _update_param_with_optimizer(
            lambda name, p: _copy_rows(p, dead_idx, sampled),
            lambda key, v: _zero_rows(v, sampled),
            params,
            optimizers,
        )
        return n

    @torch.no_grad()
    def _add_new_gs(self, params, optimizers, binoms) -> int:
        n_now = len(params["means"])
        n = max(0, min(self.cap_max, int(1.05 * n_now)) - n_now)
        if n == 0:
            return 0
        opacities = torch.sigmoid(params["opacities"])
        sampled = _multinomial_sample(opacities, n, replacement=True)
        self._reweight(params, optimizers, binoms, sampled, opacities)
        _update_param_with_optimizer(
            lambda name, p: torch.nn.Parameter(torch.cat([p, p[sampled]]), p.requires_grad),
            lambda key, v: torch.cat([v, v.new_zeros((n, *v.shape[1:]))]),
            params,
            optimizers,
        )
        return n

    def _reweight(self, params, optimizers, binoms, sampled, opacities) -> None:
        ratios = torch.bincount(sampled, minlength=len(opacities))[sampled] + 1
        new_opa, new_scales = compute_relocation(
            opacities[sampled], torch.exp(params["scales"])[sampled], ratios, binoms
        )
        eps = torch.finfo(torch.float32).eps
        new_opa = new_opa.clamp(min=self.min_opacity, max=1.0 - eps)
        params["opacities"].data[sampled] = torch.logit(new_opa)
        params["scales"].data[sampled] = torch.log(new_scales)


def _copy_rows(p: Tensor, dst: Tensor, src: Tensor) -> Tensor:
    p = p.detach().clone()
    p[dst] = p[src]
    return torch.nn.Parameter(p)


def _zero_rows(v: Tensor, rows: Tensor) -> Tensor:
    v = v.clone()
    v[rows] = 0
    return v


@torch.no_grad()
def inject_position_noise(params, scaler: float) -> None:
    """MCMC exploration noise: ``Sigma @ eps * sigmoid-gate(1 - opacity) * scaler`` per Gaussian."""
    opacities = torch.sigmoid(params["opacities"])
    scales = torch.exp(params["scales"])
    R = quat_to_rotmat(F.normalize(params["quats"], dim=-1))
    M = R * scales[:, None, :]
    covars = M @ M.transpose(1, 2)
    gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1.0 - opacities) - 0.995)))
    noise = torch.randn_like(params["means"]) * gate[:, None] * scaler
    params["means"].add_(torch.einsum("bij,bj->bi", covars, noise))


def quat_to_rotmat(q: Tensor) -> Tensor:
    """``[N, 4]`` unit quaternions (w, x, y, z) to ``[N, 3, 3]`` rotation matrices."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip


@torch.no_grad()
def cap_splats(params, optimizers, state, max_splats: int) -> int:
    """Default strategy: drop the least opaque splats beyond ``max_splats``; returns how many."""
    n = len(params["means"])
    if n <= max_splats:
        return 0
    order = torch.argsort(params["opacities"], descending=True, stable=True)
    mask = torch.ones(n, dtype=torch.bool, device=order.device)
    mask[order[:max_splats]] = False
    remove(params=params, optimizers=optimizers, state=state, mask=mask)
    return n - max_splats
