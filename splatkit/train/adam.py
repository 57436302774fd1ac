"""Adam that updates only the splats seen in the current view ("selective"/sparse Adam).

The semantics of gsplat's ``SelectiveAdam`` (Taming 3DGS, Mallick et al. 2024): a splat outside
the view keeps its parameters *and* its moments exactly (dense Adam would decay its moments and
keep moving it with stale momentum). On the visible rows the update is ``torch.optim.Adam``'s,
bias correction included (gsplat's CUDA kernel omits it), with one step counter per parameter:
with every splat visible this *is* Adam, so presets can switch it on or off freely.

It subclasses ``torch.optim.Adam`` and keeps its state layout (``exp_avg``, ``exp_avg_sq``,
``step`` per parameter; one parameter per group, ``name`` in the group), so gsplat's strategies
(``gsplat.strategy.ops._update_param_with_optimizer``), ``state_dict`` / ``load_state_dict`` and
checkpoints work unchanged. On CPU tensors the update is one numba pass over the visible rows,
in float32 like torch's (results do not depend on the thread count); elsewhere it is the same
maths in torch ops on the selected rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

_CHUNK = 512  # rows per parallel task


@njit(parallel=True, cache=True)
def _update_rows(p, g, m, v, rows, lr, bc2_sqrt, b1, b2, eps):
    """Adam on ``rows`` of the 2-D float32 arrays ``p, g, m, v`` (all rows when ``rows`` is
    empty and ``p`` has rows); scalars are float32 as in torch's CPU kernels."""
    n = rows.shape[0] if rows.shape[0] > 0 else p.shape[0]
    dense = rows.shape[0] == 0
    one = np.float32(1.0)
    w1 = one - b1
    w2 = one - b2
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for k in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            r = k if dense else rows[k]
            for d in range(p.shape[1]):
                gr = g[r, d]
                mr = m[r, d] + w1 * (gr - m[r, d])
                vr = v[r, d] * b2 + w2 * (gr * gr)
                m[r, d] = mr
                v[r, d] = vr
                p[r, d] -= lr * (mr / (np.float32(math.sqrt(vr)) / bc2_sqrt + eps))


def _rows2d(x: Tensor) -> np.ndarray:
    return x.detach().numpy().reshape(x.shape[0], -1)


class SelectiveAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose :meth:`step` takes the visible splats (a bool mask ``[N]`` or
    indices); without one it is a plain Adam step. One parameter per group, rows = splats."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)

    @torch.no_grad()
    def step(self, closure=None, visibility: Tensor | None = None):  # type: ignore[override]
        if closure is not None:
            raise ValueError("SelectiveAdam does not take a closure")
        rows = None
        if visibility is not None:
            rows = visibility.nonzero().flatten() if visibility.dtype == torch.bool else visibility
            rows = rows.long()
        for group in self.param_groups:
            if len(group["params"]) != 1:
                raise ValueError("SelectiveAdam needs one parameter per group")
            p = group["params"][0]
            if p.grad is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            _step_param(p, state, group, rows)
        return None


def _step_param(p: Tensor, state: dict, group: dict, rows: Tensor | None) -> None:
    beta1, beta2 = group["betas"]
    step = float(state["step"])
    lr = group["lr"] / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
    if rows is not None and rows.numel() == 0:
        return
    fast = p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()
    if fast and m.is_contiguous() and v.is_contiguous():
        f32 = np.float32
        idx = np.empty(0, np.int64) if rows is None else rows.numpy()
        _update_rows(_rows2d(p), _rows2d(g.contiguous()), _rows2d(m), _rows2d(v), idx, f32(lr),
                     f32(bc2_sqrt), f32(beta1), f32(beta2), f32(group["eps"]))  # fmt: skip
        return
    sel = slice(None) if rows is None else rows
    gs = g[sel]
    ms = m[sel].lerp_(gs, 1.0 - beta1)
    vs = v[sel].mul_(beta2).addcmul_(gs, gs, value=1.0 - beta2)
    p[sel] = p[sel].addcdiv_(ms, vs.sqrt().div_(bc2_sqrt).add_(group["eps"]), value=-lr)
    m[sel] = ms
    v[sel] = vs
