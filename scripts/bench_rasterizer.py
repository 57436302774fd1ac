"""Benchmark the fast CPU renderer ('cpu', numba) against the dense reference.

Times one forward and one forward+backward (a training step's rendering part: projection, SH,
rasterization and their gradients) per configuration. The reference evaluates every Gaussian at
every pixel (memory ~ N x H x W x 8 bytes per intermediate), so it runs on a random subset of the
splats and its time is extrapolated linearly in N (its cost is exactly proportional to N x H x W).

``--compare REV`` also times the CPU backend as it is at git revision REV (``render/cpu.py``,
``projection.py``, ``sh.py``), interleaved rep by rep with the working tree's, so that both see
the same load; ``--threads N`` sets torch's and numba's thread counts (1 is steadier on a busy
shared machine).

Usage: python scripts/bench_rasterizer.py [--reps 3] [--quick] [--threads 1] [--compare HEAD~1]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numba
import torch

from splatkit.render import RenderSettings, View
from splatkit.render.cpu import render as render_cpu
from splatkit.render.reference import render as render_ref
from splatkit.splats import Splats


def make_scene(n: int, width: int, height: int, seed: int = 0) -> tuple[Splats, View]:
    """Gaussians filling the view frustum, sized like a trained scene (each pixel covered by a
    few tens of splats before early termination)."""
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    z = 2 + 4 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * torch.tensor([width, height]) / (2 * f) * 1.1
    means = torch.cat([xy * z[:, None], z[:, None]], 1)
    px = 2.0 * math.sqrt(width * height / n)  # typical footprint in pixels
    scale = px * z[:, None] / f * (0.3 + torch.rand(n, 3, generator=g))
    splats = Splats(
        means, torch.log(scale), torch.randn(n, 4, generator=g), torch.randn(n, generator=g),
        0.5 * torch.randn(n, 1, 3, generator=g), 0.1 * torch.randn(n, 15, 3, generator=g),
    )  # fmt: skip
    return splats, View(torch.eye(4), K, width, height)


def step(render, splats: Splats, view: View, settings: RenderSettings, backward: bool) -> float:
    params = {k: v.detach().clone().requires_grad_(backward) for k, v in splats.as_dict().items()}
    t0 = time.perf_counter()
    out = render(Splats.from_dict(params), view, settings)
    if backward:
        (out.image.sum() + out.alpha.sum()).backward()
    return time.perf_counter() - t0


def timed(renders, splats, view, settings, backward, reps):
    """Min time of each renderer over ``reps``, the renderers interleaved."""
    for r in renders:
        step(r, splats, view, settings, backward)  # warm-up (and numba cache load / compile)
    times = [[] for _ in renders]
    for _ in range(reps):
        for r, ts in zip(renders, times, strict=True):
            ts.append(step(r, splats, view, settings, backward))
    return [min(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fast renderer only, no reference")
    ap.add_argument("--threads", type=int, default=0, help="torch and numba threads (0: default)")
    ap.add_argument("--compare", help="git revision of splatkit/render to time beside")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    renders = [render_cpu]
    if args.compare:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_train_step import load_renderer

        renders.append(load_renderer(args.compare))
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f} "
          f"(shared machine: times are min of {args.reps})")  # fmt: skip
    print(f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numba {numba.__version__} "
          f"({numba.get_num_threads()} threads, layer {numba.threading_layer()})")  # fmt: skip
    settings = RenderSettings(sh_degree=3)
    configs = [(25_000, 240, 135), (10_000, 320, 240), (10_000, 640, 480), (100_000, 320, 240),
               (100_000, 640, 480)]  # fmt: skip
    ref_budget = 1.5e7  # Gaussian-pixel pairs the dense reference evaluates per run
    cmp = f" | {'rev fwd':>9} {'rev f+b':>9} {'new/rev f+b':>11}" if args.compare else ""
    print(f"{'splats':>7} {'size':>8} | {'fast fwd':>9} {'fast f+b':>9} | "
          f"{'ref fwd':>9} {'ref f+b':>9} {'ref n':>6} | {'speed-up f+b':>12}{cmp}")  # fmt: skip
    for n, w, h in configs:
        splats, view = make_scene(n, w, h)
        fwds = timed(renders, splats, view, settings, False, args.reps)
        fbs = timed(renders, splats, view, settings, True, args.reps)
        fwd, fb = fwds[0], fbs[0]
        line = f"{n:>7} {w:>4}x{h:<3} | {fwd:>8.4f}s {fb:>8.4f}s |"
        tail = ""
        if args.compare:
            tail = f" | {fwds[1]:>8.4f}s {fbs[1]:>8.4f}s {fb / fbs[1]:>10.2f}x"
        if args.quick:
            print(f"{line} {'':>9} {'':>9} {'':>6} | {'':>12}{tail}")
            continue
        m = max(1, min(n, int(ref_budget / (w * h))))
        sub = splats.index(torch.randperm(n, generator=torch.Generator().manual_seed(1))[:m])
        sub = sub.to(torch.float64)
        scale = n / m
        rf = step(render_ref, sub, view, settings, False) * scale
        rfb = step(render_ref, sub, view, settings, True) * scale
        print(f"{line} {rf:>8.2f}s {rfb:>8.2f}s {m:>6} | {rfb / fb:>11.0f}x{tail}")
    print("ref n: splats the reference actually rendered (float64); its times are scaled by")
    print("       splats / ref n (linear extrapolation, the dense cost is N x H x W).")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("OpenSplat's single-threaded C++ CPU rasterizer: ~0.10 s per whole training step at")
    print("       239x134 with 23k splats; compare the 25000 240x135 'fast f+b' row.")


if __name__ == "__main__":
    main()
