"""One ``render()`` signature, three backends.

- ``reference``: dense float64 PyTorch, plain and slow; the test oracle (``render/reference.py``).
- ``cpu``: splatkit's fast tile rasterizer (numba kernels, ``render/cpu.py``); used for training on CPU.
- ``gsplat``: ``gsplat.rasterization`` on CUDA (``render/gsplat_backend.py``).

All three share the projection (``render/projection.py``) and SH evaluation (``render/sh.py``)
maths, which follow gsplat's EWA projection: 0.3 px low-pass, near plane 0.01, opacity-aware
3.33-sigma extent, tiles of 16 px, front-to-back compositing (alpha clamped at ``max_alpha``,
skipped below 1/255, stop once transmittance would fall to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

#: Alpha values below this are skipped (1/255).
ALPHA_THRESHOLD = 1.0 / 255.0
#: Compositing stops before transmittance would fall to this value.
TRANSMITTANCE_THRESHOLD = 1e-4
#: INRIA 3DGS clamps alpha at 0.99; gsplat at 0.999. splatkit's default is INRIA's.
MAX_ALPHA = 0.99
TILE_SIZE = 16


@dataclass
class View:
    """One camera to render from.

    Attributes:
        world_to_cam: ``[4, 4]`` OpenCV axes (x right, y down, z forward).
        K: ``[3, 3]`` pinhole intrinsics in pixels.
        width, height: image size in pixels.
    """

    world_to_cam: Tensor
    K: Tensor
    width: int
    height: int


@dataclass
class RenderSettings:
    """How to render (fields shared by every backend)."""

    sh_degree: int = 3
    """SH degree to evaluate (0-3); may be lower than the splats hold."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Colour behind the splats, RGB in [0, 1]."""
    max_alpha: float = MAX_ALPHA
    """Per-splat alpha clamp (0.99 as INRIA; 0.999 to match gsplat exactly)."""
    eps2d: float = 0.3
    """Low-pass filter added to the 2D covariance, px^2."""
    near_plane: float = 0.01
    far_plane: float = 1e10
    antialiased: bool = False
    """Mip-Splatting style opacity compensation for the low-pass (gsplat's 'antialiased')."""


@dataclass
class RenderOutput:
    """What a backend returns.

    Attributes:
        image: ``[H, W, 3]`` composited colour including the background.
        alpha: ``[H, W, 1]`` accumulated opacity (1 - final transmittance).
        means2d: ``[N, 2]`` projected centres in pixels (densification reads its gradient).
        radii: ``[N, 2]`` int32 screen-space half-extents in pixels; 0 where culled.
        depths: ``[N]`` camera-space z.
        extras: backend-specific tensors (e.g. gsplat's info dict).
    """

    image: Tensor
    alpha: Tensor
    means2d: Tensor
    radii: Tensor
    depths: Tensor
    extras: dict = field(default_factory=dict)


BACKENDS = ("reference", "cpu", "gsplat")


def get_renderer(backend: str):
    """Return the ``render(splats, view, settings) -> RenderOutput`` function of a backend.

    Backends are imported lazily, so a CPU machine never touches gsplat's CUDA code.
    """
    if backend == "reference":
        from .reference import render
    elif backend == "cpu":
        from .cpu import render
    elif backend == "gsplat":
        from .gsplat_backend import render
    else:
        raise ValueError(f"unknown render backend {backend!r}; choose from {BACKENDS}")
    return render
