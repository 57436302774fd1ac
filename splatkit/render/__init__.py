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
    absgrad: bool = False
    """Also compute absolute screen-space gradients (AbsGS) into ``means2d.absgrad``."""
    packed: bool = False
    """gsplat's packed projection (only the splats a view sees; backends without it refuse it)."""


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


@dataclass(frozen=True)
class Capabilities:
    """What a backend can honour. The training loop asks these, never the device string."""

    absgrad: bool = False
    """Absolute screen-space gradients for AbsGS densification."""
    antialiased: bool = False
    """Mip-Splatting opacity compensation."""
    packed: bool = False
    """gsplat's packed mode (memory for large scenes)."""
    pose_gradients: bool = False
    """Gradients with respect to the camera pose (camera-pose refinement)."""


#: Each backend's capabilities (data; the loop and the option checks read them).
#: ``pose_gradients``: the projection is autograd through ``View.world_to_cam`` (reference and
#: cpu: PyTorch ops; gsplat: its projection kernels return ``v_viewmats``); checked against finite
#: differences in tests/test_train_pose.py. ``packed``: gsplat's packed mode, scattered back to
#: the ``[N, ...]`` contract in ``render/gsplat_backend.py``.
CAPABILITIES: dict[str, Capabilities] = {
    "reference": Capabilities(absgrad=False, antialiased=True, pose_gradients=True),
    "cpu": Capabilities(absgrad=True, antialiased=True, pose_gradients=True),
    "gsplat": Capabilities(absgrad=True, antialiased=True, packed=True, pose_gradients=True),
}
#: The device each backend renders on.
BACKEND_DEVICE = {"reference": "cpu", "cpu": "cpu", "gsplat": "cuda"}


@dataclass(frozen=True)
class Renderer:
    """A backend chosen once for a run: its name, device, capabilities and render function.

    ``renderer.render(splats, view, settings) -> RenderOutput``.
    """

    name: str
    device: str
    caps: Capabilities
    render: object  # Callable[[Splats, View, RenderSettings], RenderOutput]

    def __call__(self, splats, view: View, settings: RenderSettings) -> RenderOutput:
        return self.render(splats, view, settings)  # type: ignore[operator]


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


def select_renderer(device: str = "auto") -> Renderer:
    """The renderer for a requested device, chosen once per run: ``auto`` picks gsplat on CUDA
    when PyTorch sees a GPU, else splatkit's CPU rasterizer."""
    import torch

    from ..errors import UserError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was asked for, but this machine has no usable NVIDIA GPU.",
                "Use --device cpu (or auto), or run `splatkit doctor` to see what is missing.",
            )
        return make_renderer("gsplat", "cuda")
    if device == "cpu":
        return make_renderer("cpu", "cpu")
    raise UserError(f"Unknown device {device!r}.", "Use --device auto, cpu or cuda.")


def make_renderer(backend: str, device: str | None = None) -> Renderer:
    """The :class:`Renderer` of a backend (on its own device unless ``device`` is given)."""
    if backend not in CAPABILITIES:
        raise ValueError(f"unknown render backend {backend!r}; choose from {BACKENDS}")
    return Renderer(name=backend, device=device or BACKEND_DEVICE[backend],
                    caps=CAPABILITIES[backend], render=get_renderer(backend))
