"""The ``Splats`` contract: one tensor per Gaussian attribute, raw (pre-activation) values.

Conventions (docs/conventions.md):
- ``log_scales``: scale = exp(log_scales) (the INRIA PLY ``scale_i`` fields).
- ``quats``: (w, x, y, z), not necessarily normalised; rotation = normalise(quats).
- ``opacity_logits``: opacity = sigmoid(opacity_logits) (the INRIA PLY ``opacity`` field).
- ``sh0``: ``[N, 1, 3]`` degree-0 SH coefficients; ``shN``: ``[N, K-1, 3]`` the rest, coefficient
  major (gsplat's layout). colour = 0.5 + sum_k SH_k(dir) * coeff_k, clamped at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

#: Degree-0 real SH basis constant, Y_0^0 = 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] to the degree-0 coefficient that renders it."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


@dataclass
class Splats:
    """A set of N 3D Gaussians.

    Attributes:
        means: ``[N, 3]`` centres, world frame.
        log_scales: ``[N, 3]``.
        quats: ``[N, 4]`` (w, x, y, z).
        opacity_logits: ``[N]``.
        sh0: ``[N, 1, 3]``.
        shN: ``[N, K-1, 3]`` with K = (degree + 1)^2; K-1 may be 0.
    """

    means: Tensor
    log_scales: Tensor
    quats: Tensor
    opacity_logits: Tensor
    sh0: Tensor
    shN: Tensor

    def __post_init__(self) -> None:
        N = self.means.shape[0]
        assert self.means.shape == (N, 3), self.means.shape
        assert self.log_scales.shape == (N, 3), self.log_scales.shape
        assert self.quats.shape == (N, 4), self.quats.shape
        assert self.opacity_logits.shape == (N,), self.opacity_logits.shape
        assert self.sh0.shape == (N, 1, 3), self.sh0.shape
        assert self.shN.ndim == 3 and self.shN.shape[0] == N and self.shN.shape[2] == 3
        assert math.isqrt(self.shN.shape[1] + 1) ** 2 == self.shN.shape[1] + 1, self.shN.shape

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """The SH degree the coefficients can hold."""
        return math.isqrt(self.shN.shape[1] + 1) - 1

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """``[N, K, 3]`` all SH coefficients."""
        return torch.cat([self.sh0, self.shN], dim=1)

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> Splats:
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def detach(self) -> Splats:
        return Splats(**{k: v.detach() for k, v in self.as_dict().items()})

    def to(self, *args, **kwargs) -> Splats:
        return Splats(**{k: v.to(*args, **kwargs) for k, v in self.as_dict().items()})

    def index(self, idx: Tensor) -> Splats:
        return Splats(**{k: v[idx] for k, v in self.as_dict().items()})

    @classmethod
    def random(cls, n: int, sh_degree: int = 3, seed: int = 0) -> Splats:
        """``n`` seeded random splats (unit-normal means, small scales, faint SH): for tests and
        benchmarks."""
        g = torch.Generator().manual_seed(seed)
        return cls(
            means=torch.randn(n, 3, generator=g),
            log_scales=torch.randn(n, 3, generator=g) - 3,
            quats=torch.randn(n, 4, generator=g),
            opacity_logits=torch.randn(n, generator=g),
            sh0=torch.randn(n, 1, 3, generator=g),
            shN=torch.randn(n, num_sh_bases(sh_degree) - 1, 3, generator=g) * 0.2,
        )

    @classmethod
    def from_points(
        cls,
        points: Tensor,
        colors: Tensor,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
    ) -> Splats:
        """Initialise as 3DGS does: one isotropic Gaussian per SfM point.

        Scale is ``init_scale`` x the mean distance to the 3 nearest neighbours, identity rotation,
        opacity ``init_opacity``, colour from the point colour (degree 0), higher SH zero.
        """
        points = points.float()
        N = points.shape[0]
        d = knn_mean_distance(points, k=3)
        log_scales = torch.log(d * init_scale).clamp(min=-20)[:, None].repeat(1, 3)
        quats = torch.zeros(N, 4)
        quats[:, 0] = 1.0
        opacity_logits = torch.logit(torch.full((N,), init_opacity))
        sh0 = rgb_to_sh0(colors.float().clamp(0, 1))[:, None, :]
        shN = torch.zeros(N, num_sh_bases(sh_degree) - 1, 3)
        return cls(points.clone(), log_scales, quats, opacity_logits, sh0, shN)


def knn_mean_distance(points: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:
    """Mean Euclidean distance from each point to its ``k`` nearest other points, ``[N]``."""
    N = points.shape[0]
    if N <= 1:
        return torch.ones(N)
    k = min(k, N - 1)
    out = torch.empty(N)
    for s in range(0, N, chunk):
        d2 = torch.cdist(points[s : s + chunk], points).pow(2)
        d2[torch.arange(d2.shape[0]), torch.arange(s, s + d2.shape[0])] = float("inf")
        vals = d2.topk(k, dim=1, largest=False).values
        out[s : s + chunk] = vals.clamp(min=1e-12).sqrt().mean(1)
    return out.clamp(min=1e-7)
