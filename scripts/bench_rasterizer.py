"""Benchmark the fast CPU renderer ('cpu', numba) against the dense reference.

Times one forward and one forward+backward (a training step's rendering part: projection, SH,
rasterization and their gradients) per configuration. The reference evaluates every Gaussian at
every pixel (memory ~ N x H x W x 8 bytes per intermediate), so it runs on a random subset of the
splats and its time is extrapolated linearly in N (its cost is exactly proportional to N x H x W).

Usage: python scripts/bench_rasterizer.py [--reps 3] [--quick]
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


def timed(render, splats, view, settings, backward, reps):
    step(render, splats, view, settings, backward)  # warm-up (and numba cache load)
    return min(step(render, splats, view, settings, backward) for _ in range(reps))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fast renderer only, no reference")
    args = ap.parse_args()
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
    print(f"{'splats':>7} {'size':>8} | {'fast fwd':>9} {'fast f+b':>9} | "
          f"{'ref fwd':>9} {'ref f+b':>9} {'ref n':>6} | {'speed-up f+b':>12}")  # fmt: skip
    for n, w, h in configs:
        splats, view = make_scene(n, w, h)
        fwd = timed(render_cpu, splats, view, settings, False, args.reps)
        fb = timed(render_cpu, splats, view, settings, True, args.reps)
        line = f"{n:>7} {w:>4}x{h:<3} | {fwd:>8.4f}s {fb:>8.4f}s |"
        if args.quick:
            print(line)
            continue
        m = max(1, min(n, int(ref_budget / (w * h))))
        sub = splats.index(torch.randperm(n, generator=torch.Generator().manual_seed(1))[:m])
        sub = sub.to(torch.float64)
        scale = n / m
        rf = step(render_ref, sub, view, settings, False) * scale
        rfb = step(render_ref, sub, view, settings, True) * scale
        print(f"{line} {rf:>8.2f}s {rfb:>8.2f}s {m:>6} | {rfb / fb:>11.0f}x")
    print("ref n: splats the reference actually rendered (float64); its times are scaled by")
    print("       splats / ref n (linear extrapolation, the dense cost is N x H x W).")
    print("OpenSplat's single-threaded C++ CPU rasterizer: ~0.10 s per whole training step at")
    print("       239x134 with 23k splats; compare the 25000 240x135 'fast f+b' row.")


if __name__ == "__main__":
    main()
