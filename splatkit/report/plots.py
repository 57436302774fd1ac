"""The report's figures (matplotlib, Agg, no display needed), returned as PNG bytes."""

from __future__ import annotations

import io

import numpy as np

TRAIN_COLOR, TEST_COLOR, POINT_COLOR = "#1f77b4", "#ff7f0e", "#9a9a9a"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figure(w: float, h: float, ncols: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(w, h), squeeze=False)


def scene_axes(centers: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rows (across, depth, up): a world basis with ``up`` vertical and ``across``
    along the widest spread of the camera centres (so the top-down plot fills its box)."""
    up = up / max(np.linalg.norm(up), 1e-12)
    flat = centers - centers.mean(0)
    flat = flat - np.outer(flat @ up, up)
    if len(flat) >= 2 and np.linalg.norm(flat) > 1e-9:
        across = np.linalg.svd(flat, full_matrices=False)[2][0]
    else:
        across = np.cross(up, [1.0, 0.0, 0.0])
        if np.linalg.norm(across) < 1e-6:
            across = np.cross(up, [0.0, 1.0, 0.0])
    across = across - (across @ up) * up
    across /= np.linalg.norm(across)
    depth = np.cross(up, across)
    return np.stack([across, depth, up])


def cameras_figure(centers, forwards, held_out, points, up) -> bytes:
    """Top-down and side views of camera centres and viewing directions over the sparse points.

    Args:
        centers, forwards: ``[C, 3]`` world positions and unit viewing directions.
        held_out: ``[C]`` bool, photos kept for evaluation (drawn orange).
        points: ``[P, 3]`` sparse SfM points.
        up: ``[3]`` the world's up direction (mean image-up of the photos).
    """
    centers, forwards = np.asarray(centers, float), np.asarray(forwards, float)
    held_out = np.asarray(held_out, bool)
    points = np.asarray(points, float).reshape(-1, 3)
    B = scene_axes(centers, np.asarray(up, float))
    origin = np.median(points, 0) if len(points) else centers.mean(0)
    c, f = (centers - origin) @ B.T, forwards @ B.T
    p = (points - origin) @ B.T
    if len(p) > 20000:
        p = p[np.random.default_rng(0).choice(len(p), 20000, replace=False)]
    # axis limits: all cameras plus the bulk (2-98 %) of the points; outliers are clipped
    bulk = np.percentile(p, [2, 98], axis=0) if len(p) else np.zeros((2, 3))
    lo = np.minimum(c.min(0), bulk[0]) if len(c) else bulk[0]
    hi = np.maximum(c.max(0), bulk[1]) if len(c) else bulk[1]
    span = float(np.max(hi - lo)) or 1.0
    arrow = 0.08 * span

    fig, axes = _figure(11, 4.6, 2)
    for ax, (i, j), title, (xl, yl) in (
        (axes[0, 0], (0, 1), "From above", ("across", "depth")),
        (axes[0, 1], (0, 2), "From the side", ("across", "up")),
    ):
        if len(p):
            ax.scatter(p[:, i], p[:, j], s=0.5, c=POINT_COLOR, alpha=0.5, linewidths=0,
                       rasterized=True, label="sparse points")
        for mask, color, label in ((~held_out, TRAIN_COLOR, "training photos"),
                                   (held_out, TEST_COLOR, "held-out photos")):
            if not mask.any():
                continue
            ax.scatter(c[mask, i], c[mask, j], s=14, c=color, zorder=3, label=label)
            ax.quiver(c[mask, i], c[mask, j], f[mask, i] * arrow, f[mask, j] * arrow,
                      angles="xy", scale_units="xy", scale=1, color=color, width=0.004, zorder=3)
        pad = 0.08 * span
        ax.set_xlim(lo[i] - pad, hi[i] + pad)
        ax.set_ylim(lo[j] - pad, hi[j] + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.25)
    axes[0, 0].legend(loc="upper right", fontsize=8, markerscale=2)
    return _png(fig)


def training_figure(loss_steps, losses, eval_steps, psnrs, final_psnr=None,
                    views: tuple[int, int] | None = None) -> bytes:
    """Loss (left, log scale) and held-out PSNR (right) against the training step. ``views``:
    (photos the evaluations during training used, held-out photos of the final evaluation),
    named in the legend when they differ (the two are different averages)."""
    fig, axes = _figure(11, 3.8, 2)
    ax = axes[0, 0]
    if len(loss_steps):
        ax.plot(loss_steps, losses, color=TRAIN_COLOR, lw=1, alpha=0.5, label="loss")
        if len(losses) >= 100:
            k = len(losses) // 20
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(np.asarray(loss_steps)[k - 1:], smooth, color=TRAIN_COLOR, lw=2,
                    label=f"mean of {k}")
        if min(losses) > 0:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training steps recorded", ha="center", transform=ax.transAxes)
    ax.set_title("Training loss (L1 + D-SSIM; lower is better)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.25)
    ax = axes[0, 1]
    if len(eval_steps):
        during = f" ({views[0]} of the {views[1]} photos)" if views and views[0] < views[1] else ""
        ax.plot(eval_steps, psnrs, "o-", color=TEST_COLOR, label="held-out PSNR" + during)
    if final_psnr is not None and len(loss_steps):
        final = f" (all {views[1]} photos)" if views and views[0] < views[1] else ""
        ax.axhline(final_psnr, color="k", lw=1, ls="--", label=f"final {final_psnr:.2f} dB{final}")
    if len(eval_steps) or final_psnr is not None:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluations recorded", ha="center", transform=ax.transAxes)
    if len(loss_steps):
        ax.set_xlim(axes[0, 0].get_xlim())  # same step axis as the loss
    ax.set_title("Held-out PSNR (photos never trained on; higher is better)")
    ax.set_xlabel("step")
    ax.set_ylabel("dB")
    ax.grid(alpha=0.25)
    return _png(fig)


def coverage_figure(cov: dict) -> bytes:
    """The coach's map from above: each ground cell coloured by how many photos saw its sparse
    points (dark: none), thin cells (``<= thin`` photos) outlined orange, unseen cells inside
    the outline hatched red, cameras as white dots with their viewing directions, and the side
    no camera saw (``cov['gap']``) as a red wedge."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle, Wedge

    photos, ext = np.asarray(cov["photos"]), cov["extent"]
    fig, axes = _figure(7.5, 6.2, 1)
    ax = axes[0, 0]
    ax.set_facecolor("#101018")
    shown = np.ma.masked_where(photos == 0, photos)
    im = ax.imshow(shown, origin="lower", extent=ext, cmap="viridis", interpolation="nearest",
                   norm=LogNorm(vmin=1, vmax=max(int(photos.max()), 2)))
    fig.colorbar(im, ax=ax, shrink=0.8, label="photos that saw this part")
    cw = (ext[1] - ext[0]) / photos.shape[1]
    ch = (ext[3] - ext[2]) / photos.shape[0]
    thin = (photos > 0) & (photos <= cov.get("thin", 3))
    for r, c in zip(*np.nonzero(thin), strict=True):
        ax.add_patch(Rectangle((ext[0] + c * cw, ext[2] + r * ch), cw, ch, fill=False,
                               ec="#ff9d2e", lw=0.8))
    unseen = np.asarray(cov.get("unseen", np.zeros_like(photos, bool)))
    for r, c in zip(*np.nonzero(unseen), strict=True):
        ax.add_patch(Rectangle((ext[0] + c * cw, ext[2] + r * ch), cw, ch, fill=False,
                               ec="#e03030", hatch="xx", lw=0))
    cams, fw = np.asarray(cov["cams"]), np.asarray(cov["forwards"])
    span = max(ext[1] - ext[0], ext[3] - ext[2])
    ax.scatter(cams[:, 0], cams[:, 1], s=14, c="white", ec="k", lw=0.5, zorder=4,
               label="cameras")
    ax.quiver(cams[:, 0], cams[:, 1], fw[:, 0] * 0.06 * span, fw[:, 1] * 0.06 * span,
              angles="xy", scale_units="xy", scale=1, color="white", width=0.003, zorder=4)
    if cov.get("gap"):
        gap, mid, centre = cov["gap"]
        c2 = (np.asarray(centre) - cov["origin"]) @ np.asarray(cov["basis"])[:2].T
        ax.add_patch(Wedge(tuple(c2), 0.45 * span, mid - gap / 2, mid + gap / 2, color="#e03030",
                           alpha=0.25, zorder=2, label=f"never photographed ({gap:.0f} deg)"))
    ax.plot([], [], "s", mfc="none", mec="#ff9d2e", label=f"thin: {cov.get('thin', 3)} photos or fewer")
    ax.plot([], [], "s", mfc="none", mec="#e03030", label="unseen inside the scene")
    lo_x, lo_y = min(ext[0], cams[:, 0].min()), min(ext[2], cams[:, 1].min())
    hi_x, hi_y = max(ext[1], cams[:, 0].max()), max(ext[3], cams[:, 1].max())
    pad = 0.05 * span
    ax.set_xlim(lo_x - pad, hi_x + pad)
    ax.set_ylim(lo_y - pad, hi_y + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title("From above: how many photos saw each part of the scene")
    ax.set_xlabel("across")
    ax.set_ylabel("depth")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    return _png(fig)


def view_errors_figure(photo: np.ndarray, render: np.ndarray, blocks: np.ndarray,
                       title: str) -> bytes:
    """A held-out photo, its render, and where they differ (blocks coloured by squared
    error; the worst tenth outlined)."""
    from matplotlib.patches import Rectangle

    fig, axes = _figure(11, 2.9, 3)
    axes[0, 0].imshow(photo)
    axes[0, 0].set_title("photo (held out)")
    axes[0, 1].imshow(render)
    axes[0, 1].set_title("render from its camera")
    ax = axes[0, 2]
    ax.imshow(photo.mean(-1), cmap="gray", alpha=0.6)
    h, w = photo.shape[:2]
    rows, cols = blocks.shape
    ax.imshow(blocks, cmap="magma", alpha=0.6, extent=(0, w, h, 0), interpolation="nearest")
    flat = np.sort(blocks.ravel())[::-1]
    cut = flat[max(1, len(flat) // 10) - 1]
    for r, c in zip(*np.nonzero(blocks >= cut), strict=True):
        ax.add_patch(Rectangle((c * w / cols, r * h / rows), w / cols, h / rows, fill=False,
                               ec="#00e5ff", lw=1.5))
    ax.set_title("where they differ (blue: worst)")
    for a in axes[0]:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title, fontsize=11, y=1.04)
    return _png(fig)
