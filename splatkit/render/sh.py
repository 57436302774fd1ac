"""Real spherical harmonics up to degree 3, gsplat's basis and sign convention.

Basis order (index k): 0 | 1: y, 2: z, 3: x | 4..8 | 9..15, each ``Y_l^m`` for m = -l..l, with
the constants and signs of Sloan, "Efficient Spherical Harmonic Evaluation" (JCGT 2013) as in
gsplat's ``_eval_sh_bases_fast`` (e.g. ``Y_1 = (-C1 y, C1 z, -C1 x)``, ``C1 = 0.4886025119029199``).
Directions are normalised first. Colour = ``eval_sh + 0.5`` clamped at 0 (:func:`sh_to_color`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)  # fmt: skip
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """``dirs [..., 3]`` unit vectors -> basis values ``[..., (degree + 1)^2]``."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate ``sum_k Y_k(normalise(dirs)) * coeffs[..., k, :]`` for k < (degree + 1)^2.

    ``dirs [..., 3]``, ``coeffs [..., K, 3]`` with K >= (degree + 1)^2 -> ``[..., 3]``.
    """
    n = (degree + 1) ** 2
    if coeffs.shape[-2] < n:
        raise ValueError(f"degree {degree} needs {n} coefficients, got {coeffs.shape[-2]}")
    bases = sh_bases(degree, F.normalize(dirs, p=2, dim=-1))
    # [..., 1, n] @ [..., n, 3]: one batched matmul (forward and backward) instead of a
    # [..., n, 3] product and a reduction (~3x less memory traffic on the CPU).
    return torch.matmul(bases[..., None, :], coeffs[..., :n, :]).squeeze(-2)


def sh_to_color(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Splat colour as gsplat renders it: ``clamp_min(eval_sh + 0.5, 0)``."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)
