"""The ``gsplat`` backend: :func:`gsplat.rasterization` on CUDA (gsplat 1.5.3).

gsplat is imported inside :func:`render`, never at module import, so this module loads on a
CPU-only machine. Beware: merely importing ``gsplat.cuda._backend`` on a machine that has nvcc
starts a JIT build of gsplat's CUDA code (minutes); :mod:`splatkit.gpu` probes without that.

Differences from splatkit's own backends (``reference``/``cpu``):

- **Alpha clamp.** gsplat 1.5.3 clamps each splat's alpha at a hard-coded 0.999
  (``min(0.999f, opac * __expf(-sigma))`` in ``RasterizeToPixels3DGSFwd.cu``/``Bwd.cu``);
  :func:`gsplat.rasterization` takes no argument for it. splatkit's default
  ``RenderSettings.max_alpha`` is INRIA's 0.99, so the images differ slightly where opaque
  splats overlap. This backend ignores ``settings.max_alpha`` (a warning on every GPU training
  run would only confuse users); to compare backends, render the CPU ones with
  ``max_alpha=0.999``.
- **Screen-space gradients (densification).** gsplat's ``info["means2d"]`` is ``[C, N, 2]``
  (here C = 1), and that tensor is what its rasterizer consumed; a view of it taken afterwards
  gets no gradient from autograd. So :attr:`RenderOutput.means2d` is ``info["means2d"][0]``
  *plus a hook*: when the batched tensor receives its gradient, the hook writes it into the
  view's ``.grad`` (accumulating like ``retain_grad``), and, with ``absgrad``, its
  ``.absgrad`` too. The trainer can therefore use the same code for every backend::

      out = render(splats, view, settings)
      out.means2d.retain_grad()          # harmless here; needed for the CPU backends
      loss.backward()
      grad2d = out.means2d.grad          # [N, 2], pixels

  The untouched gsplat tensors are in ``out.extras["info"]`` (gsplat's meta dict, batched
  ``[1, N, ...]``), e.g. for :mod:`gsplat.strategy`, which calls
  ``info["means2d"].retain_grad()`` and reads ``.grad``/``.absgrad`` itself.
- **Packed mode** (``settings.packed``). gsplat's packed projection returns only the ``nnz``
  splats the view sees: ``means2d [nnz, 2]``, ``radii [nnz, 2]``, ``depths [nnz]`` and
  ``gaussian_ids [nnz]`` (no ``[C, N, ...]`` intermediates: the memory saving for large scenes
  where a view sees a small part). The backend scatters them back by ``gaussian_ids`` into the
  ``[N, ...]`` contract (culled splats: radii 0, means2d/depths 0), and the gradient hook
  scatters the packed gradient (and ``absgrad``) into ``means2d.grad`` the same way, so the loop
  and gsplat's strategies (their non-packed path, ``packed=False``) read one layout for every
  backend. The ``[N, 2]`` gradient costs 8 bytes per splat, against the dozens per splat of the
  non-packed projection buffers it replaces.
- **Optional switch** read from ``settings`` with ``getattr`` (not a field of
  :class:`RenderSettings`): ``sparse_grad`` (bool; gsplat honours it in packed mode only).
"""

from __future__ import annotations

import weakref

import torch

from ..errors import UserError
from ..splats import Splats
from . import TILE_SIZE, RenderOutput, RenderSettings, View

#: The alpha clamp compiled into gsplat 1.5.3's kernels.
GSPLAT_MAX_ALPHA = 0.999


def _check_cuda(splats: Splats) -> torch.device:
    if not torch.cuda.is_available():
        raise UserError(
            "The gsplat renderer needs an NVIDIA GPU with CUDA, and PyTorch sees none.",
            "Use the 'cpu' renderer (--device cpu), or run `splatkit doctor` to see what is "
            "missing.",
        )
    dev = splats.means.device
    if dev.type != "cuda":
        raise ValueError(
            f"gsplat backend: splats are on {dev}; move them to CUDA first (splats.to('cuda'))"
        )
    return dev


def to_full(t: torch.Tensor, n: int, ids: torch.Tensor | None) -> torch.Tensor:
    """gsplat's per-camera tensor as splatkit's ``[N, ...]``: ``t[0]`` of a batched ``[1, N, ...]``
    tensor, or a packed ``[nnz, ...]`` one scattered by ``ids`` (``gaussian_ids``) into zeros."""
    if ids is None:
        return t[0]
    full = t.new_zeros((n, *t.shape[1:]))
    full[ids] = t.detach() if t.requires_grad else t
    return full


def mirror_grad(src: torch.Tensor, view: torch.Tensor, absgrad: bool = False,
                ids: torch.Tensor | None = None) -> None:
    """Make ``view`` (``[N, 2]``) receive ``src``'s gradient, as ``retain_grad`` would.

    ``src`` is the tensor gsplat's rasterizer consumed: batched ``[1, N, 2]`` (``ids`` None) or
    packed ``[nnz, 2]`` with ``ids`` its ``gaussian_ids``; ``view`` is not on autograd's path to
    the loss, so a hook on ``src`` writes the gradient, mapped by :func:`to_full`, into
    ``view.grad`` (summing over repeated backward passes) and, with ``absgrad``, maps gsplat's
    ``src.absgrad`` into ``view.absgrad``. Weak references avoid keeping either alive.
    """
    if not src.requires_grad:
        return
    view_ref = weakref.ref(view)
    src_ref = weakref.ref(src)
    seen = [False]
    n = view.shape[0]

    def hook(grad: torch.Tensor) -> None:
        v = view_ref()
        if v is None:
            return
        g = to_full(grad.detach(), n, ids)
        with torch.no_grad():
            v.grad = g.clone() if not seen[0] else v.grad + g
        seen[0] = True
        b = src_ref()
        if absgrad and b is not None and getattr(b, "absgrad", None) is not None:
            v.absgrad = to_full(b.absgrad, n, ids)

    src.register_hook(hook)


def render(splats: Splats, view: View, settings: RenderSettings) -> RenderOutput:
    """Render one view with :func:`gsplat.rasterization` (float32, CUDA)."""
    device = _check_cuda(splats)
    from gsplat import rasterization  # lazy: may JIT-compile gsplat's CUDA code on first use

    sh_degree = max(0, min(int(settings.sh_degree), splats.sh_degree))
    K = (sh_degree + 1) ** 2
    colors = torch.cat([splats.sh0, splats.shN], dim=1)[:, :K]  # [N, K, 3]
    viewmats = view.world_to_cam.to(device=device, dtype=torch.float32)[None]
    Ks = view.K.to(device=device, dtype=torch.float32)[None]
    backgrounds = torch.tensor([settings.background], dtype=torch.float32, device=device)
    absgrad = bool(settings.absgrad)
    packed = bool(settings.packed)

    image, alpha, info = rasterization(
        means=splats.means,
        quats=splats.quats,  # gsplat normalises them
        scales=torch.exp(splats.log_scales),
        opacities=torch.sigmoid(splats.opacity_logits),
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=int(view.width),
        height=int(view.height),
        near_plane=float(settings.near_plane),
        far_plane=float(settings.far_plane),
        eps2d=float(settings.eps2d),
        sh_degree=sh_degree,
        packed=packed,
        tile_size=TILE_SIZE,
        backgrounds=backgrounds,
        render_mode="RGB",
        sparse_grad=bool(getattr(settings, "sparse_grad", False)),
        absgrad=absgrad,
        rasterize_mode="antialiased" if settings.antialiased else "classic",
    )
    n = len(splats)
    ids = info["gaussian_ids"] if packed else None
    means2d = to_full(info["means2d"], n, ids)  # what the rasterizer consumed, as [N, 2]
    mirror_grad(info["means2d"], means2d, absgrad=absgrad, ids=ids)
    return RenderOutput(
        image=image[0],
        alpha=alpha[0],
        means2d=means2d,
        radii=to_full(info["radii"], n, ids),
        depths=to_full(info["depths"], n, ids),
        extras={"info": info},
    )
