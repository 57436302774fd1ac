"""GPU memory: say before training that a scene will not fit, and what to change so that it does.

The estimate counts what the training loop keeps for the whole run: the training photos as uint8
tensors on the GPU (3 bytes per pixel, :class:`~splatkit.views.TrainImages`) and, per
splat, its 59 parameters (SH degree 3) with their gradients and two Adam moments (4 x 59 float32
= 944 bytes), plus a working margin for the rasterizer's per-view
buffers (about 300 bytes per pixel of the largest view, from gsplat's tile lists and the loss).
It is a floor, not a promise: densification may grow past the splat count assumed here, which
:func:`out_of_memory_error` then explains after the fact.
"""

from __future__ import annotations

from ..errors import UserError

BYTES_PER_SPLAT = 4 * 59 * 4
#: training photos are held as uint8 RGB (views.py)
BYTES_PER_PHOTO_PIXEL = 3
BYTES_PER_PIXEL_WORK = 300
GIB = 2**30


def estimate_bytes(image_pixels: list[int], splats: int) -> int:
    """Bytes the loop needs: photos (RGB uint8), splats with optimiser state, work buffers."""
    photos = BYTES_PER_PHOTO_PIXEL * sum(image_pixels)
    work = BYTES_PER_PIXEL_WORK * max(image_pixels, default=0)
    return photos + BYTES_PER_SPLAT * splats + work


def suggest_resolution(resolution: int, need: int, free: int, photos_bytes: int) -> int:
    """A longest side at which the photos take half as much of the free memory as now fits."""
    if photos_bytes <= 0:
        return resolution
    budget = max(free - (need - photos_bytes), free // 4)
    factor = (budget / photos_bytes) ** 0.5 * 0.8
    return max(64, int(resolution * min(1.0, factor)) // 16 * 16)


def check_fits(image_pixels: list[int], splats: int, resolution: int, free_bytes: int) -> None:
    """Raise :class:`UserError` when the estimate exceeds 90 % of ``free_bytes``."""
    need = estimate_bytes(image_pixels, splats)
    if need <= 0.9 * free_bytes:
        return
    photos = BYTES_PER_PHOTO_PIXEL * sum(image_pixels)
    res = suggest_resolution(resolution, need, int(0.9 * free_bytes), photos)
    raise UserError(
        f"This scene needs about {need / GIB:.1f} GB of GPU memory to train at {resolution} px "
        f"({len(image_pixels)} photos, up to {splats:,} splats), but only "
        f"{free_bytes / GIB:.1f} GB is free.",
        f"Try --resolution {res}, or --strategy mcmc --max-splats {max(10_000, splats // 2):,}, "
        "or --device cpu.",
    )


def out_of_memory_error(step: int, splats: int, resolution: int) -> UserError:
    """The message for a GPU out-of-memory error during training."""
    return UserError(
        f"The GPU ran out of memory at step {step} with {splats:,} splats at {resolution} px.",
        f"Resume with a smaller setting: --resolution {max(64, resolution * 3 // 4 // 16 * 16)} "
        "or --strategy mcmc --max-splats N (a fixed splat budget); the last checkpoint is kept.",
    )
