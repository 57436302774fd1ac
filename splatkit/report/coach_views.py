"""The capture coach's look at the held-out views: where each view's error is, and why.

A preview (``previews/<name>.png``: the photo, a 4 px gap, the render) is cut into
:data:`BLOCKS`; the likely cause of a view's error is, in this order: the photo itself is blurred
(its sharpness under :data:`VIEW_BLUR_RATIO` of the set's median); its brightness or colour
differs (a per-channel gain recovers :data:`EXPOSURE_DB`); no training camera looks the same way
within :data:`FAR_SPACINGS` typical camera steps (too few viewpoints); the error sits in a tenth
of the blocks holding :data:`CONCENTRATED` of it, where the sparse points say the part was well
seen (something moved) or not (a part few photos saw); else detail is softer everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Model:
    """Placed cameras and sparse points with the photos that saw each point."""

    names: list[str]
    centers: np.ndarray  # [C, 3]
    forwards: np.ndarray  # [C, 3]
    w2c: np.ndarray  # [C, 4, 4]
    K: np.ndarray  # [C, 3, 3]
    size: np.ndarray  # [C, 2] width, height
    points: np.ndarray  # [P, 3]
    seen_by: list[np.ndarray]  # per point: indices into names


#: a held-out photo under this fraction of the median sharpness explains its own error
VIEW_BLUR_RATIO = 0.5
#: a per-channel gain that gains this many dB of PSNR means exposure or colour changed
EXPOSURE_DB = 1.5
#: share of a view's squared error in its worst tenth of blocks that counts as concentrated
CONCENTRATED = 0.45
#: nearest training camera farther than this many typical spacings: too few viewpoints near it
FAR_SPACINGS = 2.0
#: blocks of the per-view error grid (columns, rows)
BLOCKS = (8, 6)
#: a view this good (dB), and within 1 dB of the typical one, needs no explaining
GOOD_PSNR = 27.0
#: parts of the scene seen by at most this many photos are thin (here and on the coach's map)
THIN_PHOTOS = 3


@dataclass
class ViewCause:
    """A held-out photo, its PSNR, the likely cause of its error and where the error is."""

    name: str
    psnr: float
    cause: str
    key: str
    error_blocks: list[list[float]] = field(default_factory=list)


# -- held-out views ----------------------------------------------------------------------------
def split_preview(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(photo, render) float [H, W, 3] in [0, 1] from a preview (photo | 4 px gap | render)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError:
        return None
    w = (a.shape[1] - 4) // 2
    if w < 8:
        return None
    return a[:, :w], a[:, a.shape[1] - w:]


def block_errors(photo: np.ndarray, render: np.ndarray) -> np.ndarray:
    """Mean squared error per block, ``[rows, cols]`` (:data:`BLOCKS`)."""
    e = ((photo - render) ** 2).mean(-1)
    cols, rows = BLOCKS
    ys = np.linspace(0, e.shape[0], rows + 1).astype(int)
    xs = np.linspace(0, e.shape[1], cols + 1).astype(int)
    return np.array([[e[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].mean() for c in range(cols)]
                     for r in range(rows)])


def exposure_gain_db(photo: np.ndarray, render: np.ndarray) -> float:
    """dB of PSNR a per-channel gain on the render recovers (brightness/colour change)."""
    p, r = photo.reshape(-1, 3).astype(np.float64), render.reshape(-1, 3).astype(np.float64)
    g = (p * r).sum(0) / np.maximum((r * r).sum(0), 1e-12)
    mse, fixed = ((p - r) ** 2).mean(), ((p - np.clip(r * g, 0, 1)) ** 2).mean()
    return float(10 * math.log10(max(mse, 1e-12) / max(fixed, 1e-12)))


def point_support(m: Model, i: int, shape: tuple[int, int]) -> np.ndarray:
    """Per block of camera ``i``'s image (``shape``: preview H, W): sparse points seen by more
    than :data:`THIN_PHOTOS` photos that project into it."""
    cols, rows = BLOCKS
    out = np.zeros((rows, cols))
    good = np.array([len(s) > THIN_PHOTOS for s in m.seen_by], bool)
    if not good.any():
        return out
    x = m.w2c[i, :3, :3] @ m.points[good].T + m.w2c[i, :3, 3:4]
    front = x[2] > 1e-9
    uv = (m.K[i] @ x[:, front])[:2] / x[2, front]
    u = uv[0] / m.size[i, 0] * shape[1]
    v = uv[1] / m.size[i, 1] * shape[0]
    ok = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    np.add.at(out, ((v[ok] / shape[0] * rows).astype(int), (u[ok] / shape[1] * cols).astype(int)), 1)
    return out


def _nearest_train(m: Model, i: int, train: np.ndarray) -> float:
    """Distance from camera ``i`` to the nearest training camera looking within 45 degrees of
    it, in typical camera spacings (inf when none looks that way)."""
    d = np.linalg.norm(m.centers - m.centers[i], axis=1)
    nn = np.sort(np.linalg.norm(m.centers[:, None] - m.centers[None], axis=-1), axis=1)
    spacing = float(np.median(nn[:, 1])) if len(m.names) > 1 else 1.0
    same_way = m.forwards @ m.forwards[i] > math.cos(math.radians(45))
    cand = d[train & same_way]
    return float(cand.min() / max(spacing, 1e-12)) if len(cand) else math.inf


def view_cause(name: str, psnr: float, preview: Path, rel_sharp: dict[str, float],
               m: Model | None, typical: float) -> ViewCause:
    """The likely cause of a held-out view's error (module doc, in that order)."""
    pr = split_preview(preview)
    if pr is None:
        return ViewCause(name, psnr, "no preview to look at", "unknown")
    photo, render = pr
    blocks = block_errors(photo, render)
    grid = blocks.round(5).tolist()
    if psnr >= typical - 1.0 and psnr >= GOOD_PSNR:
        return ViewCause(name, psnr, "close to the photo", "ok", grid)
    r = rel_sharp.get(name)
    if r is not None and r < VIEW_BLUR_RATIO:
        return ViewCause(name, psnr, f"the photo itself is blurred (motion blur or focus: "
                         f"sharpness {r:.0%} of the typical photo)", "blur", grid)
    gain = exposure_gain_db(photo, render)
    if gain > EXPOSURE_DB:
        return ViewCause(name, psnr, f"its brightness or colour differs from the photos around "
                         f"it (exposure or white balance changed: +{gain:.1f} dB when corrected)",
                         "exposure", grid)
    i = m.names.index(name) if m is not None and name in m.names else None
    if i is not None:
        from ..viewer.cameras import held_out

        test = held_out(m.names)
        far = _nearest_train(m, i, np.array([n not in test for n in m.names]))
        if far > FAR_SPACINGS:
            return ViewCause(name, psnr, "too few training photos were taken near this viewpoint "
                             "(the nearest one looking the same way is "
                             + ("none" if math.isinf(far) else f"{far:.1f} camera steps away")
                             + ")", "few_views", grid)
    flat = np.sort(blocks.ravel())[::-1]
    top = max(1, len(flat) // 10)
    if flat.sum() > 0 and flat[:top].sum() / flat.sum() > CONCENTRATED:
        hot = blocks >= flat[top - 1]
        support = point_support(m, i, photo.shape[:2]) if i is not None else None
        if support is not None and support[hot].mean() >= 0.5 * max(np.median(support), 1):
            return ViewCause(name, psnr, "the error sits in one place that the other photos saw "
                             "well: something there moved or changed between photos (people, "
                             "cars, shadows, reflections)", "moving", grid)
        return ViewCause(name, psnr, "the error sits in a part of the scene few photos saw",
                         "thin", grid)
    return ViewCause(name, psnr, "fine detail everywhere is softer than the photo (more photos "
                     "closer up, or longer training, sharpen it)", "detail", grid)
