"""Time the CPU tile rasterizer alone (``splatkit.render.cpu.rasterize_tiles``: binning, the
forward and backward kernels and their glue), on real training views, beside a git revision.

The scene and splats are ``bench_train_step.py``'s (fox, the anchor's resolution and splat
count, ``--warmup`` steps of real training first). The rasterizer's inputs of ``--views``
further training steps are captured; each is then rasterized forward and backward (a fixed
random upstream gradient) ``--reps`` times per variant, the variants interleaved, and the median
per view is summed over the views. With ``--compare REV`` the images and gradients of the two
revisions are also compared (``same``: bitwise equal).

Usage: python scripts/bench_raster.py [--data .device/data/fox_800] [--resolutions 239 479]
       [--views 8] [--reps 11] [--compare HEAD~1]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train_step as bts  # noqa: E402


def capture(res: int, data: Path, warmup: int, views: int) -> list[tuple]:
    """The ``rasterize_tiles`` calls ``(args, kwargs)`` of ``views`` training steps after
    ``warmup`` ones."""
    from splatkit.render import cpu
    from splatkit.splats import Splats
    from splatkit.views import WorldNorm, load_images, make_view, scaled_cameras

    scene = bts.load_scene(data)
    norm = WorldNorm.from_scene(scene)
    _, _, n = bts.ANCHOR.get(res, (None, None, 23_000))
    pts, cols = bts.grown_points(scene.points, scene.point_colors, n)
    cams = scaled_cameras(scene.cameras, res)
    idx = scene.train_idx
    images = load_images(scene, idx, cams)
    cam_views = [make_view(cams, i, norm) for i in idx]
    trainer = bts.Trainer(bts.current(), Splats.from_points(pts, cols, 3, 0.1, 1.0), norm,
                          scene.extent * norm.scale)  # fmt: skip
    order = torch.randint(0, len(cam_views), (warmup + views,),
                          generator=torch.Generator().manual_seed(0)).tolist()  # fmt: skip
    for v in order[:warmup]:
        trainer.step(cam_views[v], images[v])
    got: list[tuple] = []
    real = cpu.rasterize_tiles

    def spy(*args, **kwargs):
        got.append((tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args), kwargs))
        return real(*args, **kwargs)

    cpu.rasterize_tiles = spy
    try:
        for v in order[warmup:]:
            trainer.step(cam_views[v], images[v])
    finally:
        cpu.rasterize_tiles = real
    return got


def run_once(fn, call: tuple, upstream: tuple):
    """Forward and backward of one view with the upstream gradients ``(d image, d alpha)``:
    (forward s, backward s, image, alpha, gradients)."""
    args, kwargs = call
    inputs = [a.clone().requires_grad_(i < 4) if torch.is_tensor(a) else a
              for i, a in enumerate(args)]  # fmt: skip
    t0 = time.perf_counter()
    image, alpha = fn(*inputs, **kwargs)
    t1 = time.perf_counter()
    torch.autograd.backward([image, alpha], list(upstream))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, image.detach(), alpha.detach(), [x.grad for x in inputs[:4]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".device/data/fox_800"))
    ap.add_argument("--resolutions", type=int, nargs="+", default=[239, 479])
    ap.add_argument("--warmup", type=int, default=30, help="training steps before the capture")
    ap.add_argument("--views", type=int, default=8, help="captured training views")
    ap.add_argument("--reps", type=int, default=11, help="runs per view and variant (median)")
    ap.add_argument("--compare", help="git revision of splatkit/render to interleave with")
    a = ap.parse_args()

    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"numba {numba.__version__} ({numba.get_num_threads()} threads) | "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    from splatkit.render.cpu import rasterize_tiles

    variants = {"current": rasterize_tiles}
    if a.compare:
        pkg = bts._load_package(a.compare, "render", "render_cmp")
        variants = {a.compare: importlib.import_module(pkg + ".cpu").rasterize_tiles, **variants}
    print(f"{'resolution':>10} {'variant':>8} | {'forward ms':>10} {'backward ms':>11} "
          f"{'total ms':>8} | same")  # fmt: skip
    for res in a.resolutions:
        views = capture(res, a.data, a.warmup, a.views)
        label = f"{views[0][0][6]}x{views[0][0][7]}"
        fwd = {k: 0.0 for k in variants}
        bwd = {k: 0.0 for k in variants}
        same = True
        for i, call in enumerate(views):
            g = torch.Generator().manual_seed(i)
            w, h = call[0][6], call[0][7]
            upstream = (torch.randn(h, w, 3, generator=g), torch.randn(h, w, 1, generator=g))
            runs = {k: [] for k in variants}
            for _ in range(a.reps):
                for k, fn in variants.items():
                    runs[k].append(run_once(fn, call, upstream))
            for k, rs in runs.items():
                fwd[k] += statistics.median(r[0] for r in rs)
                bwd[k] += statistics.median(r[1] for r in rs)
            first = [rs[0] for rs in runs.values()]
            same = same and all(_equal(first[0], o) for o in first[1:])
        for k in variants:
            ms = 1e3 / len(views)
            print(f"{label:>10} {k:>8} | {fwd[k] * ms:>10.2f} {bwd[k] * ms:>11.2f} "
                  f"{(fwd[k] + bwd[k]) * ms:>8.2f} | {'yes' if same else 'NO'}")  # fmt: skip
    print("ms per view (median over reps, mean over views); same: images and gradients bitwise equal")
    return 0


def _equal(x, y) -> bool:
    pairs = list(zip(x[2:4], y[2:4], strict=True)) + list(zip(x[4], y[4], strict=True))
    return all((p is None and q is None) or torch.equal(p, q) for p, q in pairs)


if __name__ == "__main__":
    sys.exit(main())
