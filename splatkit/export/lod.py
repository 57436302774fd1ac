"""Levels of detail: coarser versions of a splat set made by merging neighbours, moment-matched.

Level 0 is the set itself. Level k merges the splats of each cell of a cubic grid (cells of side
``cell_k``, each level's twice the last one's, growing until the set has at most 1/4 of the
previous level's splats) into one Gaussian with the same weighted mean and covariance
(Hierarchical 3DGS's merge): weights ``w_i = alpha_i * A_i``, ``A_i = det(Sigma_i)^(1/3)`` (the
splat's squared size, the area it covers on screen), so

- mean ``mu = sum w_i mu_i / sum w_i``,
- covariance ``Sigma = sum w_i (Sigma_i + (mu_i - mu)(mu_i - mu)^T) / sum w_i``,
- colour (every SH coefficient) the ``w``-weighted mean,
- opacity ``min(1, sum alpha_i A_i / A)``: the merged splat covers what its parts covered.

A level is good beyond the distance at which its cell projects to at most ``pixel_error``
pixels on a screen of focal length ``focal_px`` (1920 px across a 90-degree view: 960 px):
``distance_k = cell_k * focal_px / pixel_error``. The manifest gives each level's distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from splatkit.splats import Splats

#: The screen a level's distance is computed for: 1920 px across 90 degrees.
FOCAL_PX = 960.0
#: How many pixels a merged cell may span at its level's distance.
PIXEL_ERROR = 2.0


@dataclass
class Level:
    """One level of detail: its splats, the grid cell it merged (0: none) and from how far away
    (metres, or the scene's units) it may be shown."""

    index: int
    splats: Splats
    cell: float
    distance: float


def _rotation(q: Tensor) -> Tensor:
    q = q / q.norm(dim=1, keepdim=True).clamp(min=1e-12)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], 1).reshape(-1, 3, 3)  # fmt: skip


def covariances(s: Splats) -> Tensor:
    """``[N, 3, 3]`` float64 world covariances ``R diag(scale^2) R^T``."""
    R = _rotation(s.quats.double())
    return R @ torch.diag_embed(torch.exp(2 * s.log_scales.double())) @ R.transpose(1, 2)


def _from_covariance(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Log-scales and (w, x, y, z) quaternions of symmetric positive covariances."""
    evals, evecs = torch.linalg.eigh(cov)
    det = torch.linalg.det(evecs)
    evecs = evecs * torch.where(det < 0, -1.0, 1.0).to(evecs.dtype)[:, None, None]  # proper rotations
    log_scales = 0.5 * torch.log(evals.clamp(min=1e-24))
    return log_scales, _quat_from_matrix(evecs)


def _quat_from_matrix(R: Tensor) -> Tensor:
    """(w, x, y, z) of rotation matrices (Shepperd's method, the largest diagonal term first)."""
    m = R
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = torch.stack([
        torch.stack([1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + 2 * m[:, 0, 0] - t, m[:, 0, 1] + m[:, 1, 0],
                     m[:, 0, 2] + m[:, 2, 0]], 1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 + 2 * m[:, 1, 1] - t,
                     m[:, 1, 2] + m[:, 2, 1]], 1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 + 2 * m[:, 2, 2] - t], 1),
    ], 1)  # fmt: skip
    diag = torch.stack([t, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    q = cands[torch.arange(len(m)), diag.argmax(1)]
    return q / q.norm(dim=1, keepdim=True)


def merge_cells(s: Splats, cell: float) -> Splats:
    """One Gaussian per occupied grid cell of side ``cell``, moment-matched (module docstring)."""
    key = torch.floor(s.means.double() / cell).long()
    _, group = torch.unique(key, dim=0, return_inverse=True)
    G = int(group.max()) + 1 if len(group) else 0
    cov = covariances(s)
    area = torch.linalg.det(cov).clamp(min=1e-36) ** (1 / 3)
    alpha = s.opacities.double()
    w = (alpha * area).clamp(min=1e-30)

    def wsum(x: Tensor) -> Tensor:
        out = torch.zeros((G, *x.shape[1:]), dtype=torch.float64)
        return out.index_add_(0, group, x.double() * w.reshape(-1, *([1] * (x.ndim - 1))))

    W = torch.zeros(G, dtype=torch.float64).index_add_(0, group, w)
    mu = wsum(s.means) / W[:, None]
    d = s.means.double() - mu[group]
    m_cov = wsum(cov + d[:, :, None] * d[:, None, :]) / W[:, None, None]
    log_scales, quats = _from_covariance(m_cov)
    m_area = torch.linalg.det(m_cov).clamp(min=1e-36) ** (1 / 3)
    covered = torch.zeros(G, dtype=torch.float64).index_add_(0, group, alpha * area)
    m_alpha = (covered / m_area).clamp(1e-4, 1 - 1e-4)
    dt = s.means.dtype
    return Splats(mu.to(dt), log_scales.to(dt), quats.to(dt), torch.logit(m_alpha).to(dt),
                  (wsum(s.sh0) / W[:, None, None]).to(dt), (wsum(s.shN) / W[:, None, None]).to(dt))


def _start_cell(s: Splats) -> float:
    """A first cell about the size of the set's typical splat spacing (median of its scales)."""
    return float(torch.exp(s.log_scales.double().max(1).values).median().clamp(min=1e-6)) * 2


def build_levels(s: Splats, levels: int = 3, ratio: float = 4.0, focal_px: float = FOCAL_PX,
                 pixel_error: float = PIXEL_ERROR) -> list[Level]:
    """Level 0 (``s`` itself) and up to ``levels - 1`` coarser ones, each with at most 1/``ratio``
    of the previous level's splats (the cell doubles until it does); stops when a level would
    hold fewer than 16 splats."""
    out = [Level(0, s, 0.0, 0.0)]
    cell = _start_cell(s)
    while len(out) < levels and len(out[-1].splats) >= 16 * ratio:
        target = len(out[-1].splats) / ratio
        merged = merge_cells(s, cell)
        while len(merged) > target and math.isfinite(cell):
            cell *= 2
            merged = merge_cells(s, cell)
        out.append(Level(len(out), merged, cell, cell * focal_px / pixel_error))
        cell *= 2
    return out
