"""Benchmark the export writers: time (median of --repeat) and size of each format.

Two scenes of ``--n`` splats, SH degree 3:

- ``random``: every attribute i.i.d. normal (the worst case for the entropy coders: SH of
  std 0.2 everywhere, uniformly random rotations, positions spread over a unit normal);
- ``realistic``: shaped like a trained scene: means on a few hundred surface patches (thin
  clusters), log-scales correlated with the local spacing and with each other (flat discs),
  opacities bimodal (most near 1, a tail of faint ones), DC colours per patch with noise, and
  sparse small SH (60% of splats have no view dependence, the rest decay with the band).

Example::

    python scripts/bench_export.py --n 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splatkit.export import formats as FM
from splatkit.splats import Splats


def random_scene(n: int, degree: int = 3, seed: int = 0) -> Splats:
    return Splats.random(n, degree, seed)


def realistic_scene(n: int, degree: int = 3, seed: int = 0) -> Splats:
    rng = np.random.default_rng(seed)
    n_patch = 400
    centre = rng.normal(0, 3, (n_patch, 3))
    normal = rng.normal(size=(n_patch, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    extent = rng.uniform(0.2, 1.5, n_patch)
    patch = rng.integers(0, n_patch, n)
    # Points on a disc around each patch centre, thin along the normal.
    u = np.cross(normal, [0.0, 0.0, 1.0])
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
    v = np.cross(normal, u)
    a, b = rng.normal(size=(2, n)) * extent[patch] * 0.5
    means = centre[patch] + a[:, None] * u[patch] + b[:, None] * v[patch]
    means += normal[patch] * rng.normal(0, 0.01, (n, 1))
    # Spacing ~ patch area / splats per patch; scales near it, one axis flat.
    per_patch = np.bincount(patch, minlength=n_patch).clip(1)
    spacing = np.log(extent / np.sqrt(per_patch))[patch]
    log_scales = spacing[:, None] + rng.normal(0, 0.3, (n, 1)) + rng.normal(0, 0.15, (n, 3))
    log_scales[:, 2] -= 1.5
    quats = rng.normal(size=(n, 4))
    opac = np.where(rng.random(n) < 0.7, rng.normal(4.0, 1.0, n), rng.normal(-2.0, 1.5, n))
    base = rng.uniform(-1.5, 1.5, (n_patch, 3))
    sh0 = base[patch] + rng.normal(0, 0.2, (n, 3))
    k = (degree + 1) ** 2 - 1
    band = np.floor(np.sqrt(np.arange(1, k + 1))).astype(int)  # 1, 1, 1, 2, ..., 3
    shN = rng.normal(0, 1, (n, k, 3)) * (0.08 / band**2)[None, :, None]
    shN[rng.random(n) < 0.6] = 0.0
    f = torch.float32
    return Splats(
        means=torch.tensor(means, dtype=f),
        log_scales=torch.tensor(log_scales, dtype=f),
        quats=torch.tensor(quats, dtype=f),
        opacity_logits=torch.tensor(opac, dtype=f),
        sh0=torch.tensor(sh0, dtype=f)[:, None, :],
        shN=torch.tensor(shN, dtype=f),
    )


SCENES = {"random": random_scene, "realistic": realistic_scene}


def cpu_model() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu_model()}, os.cpu_count()={os.cpu_count()}, usable={usable}, load {load}, "
            f"torch threads={torch.get_num_threads()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, torch {torch.__version__}")  # fmt: skip


def bench(splats: Splats, fmt: str, out: Path, repeat: int) -> tuple[float, list[float], int]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = FM.write_format(splats, out, f"bench_{fmt}", fmt, sh_degree=3)
        times.append(time.perf_counter() - t0)
    size = p.stat().st_size
    p.unlink()
    return statistics.median(times), times, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default=",".join(FM.EXTENSIONS))
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--out", type=Path, default=None, help="directory for the files (temp dir)")
    args = ap.parse_args(argv)
    fmts = args.formats.split(",")
    print(f"command: {shlex.join([sys.executable] + sys.argv)}")
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"{args.n} splats, SH degree 3, median of {args.repeat}\n")
    print("| scene | format | time (s) | all runs (s) | size (MB) | size / PLY | bytes/splat |")
    print("|---|---|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for scene in args.scenes.split(","):
            s = SCENES[scene](args.n)
            ply_size = None
            for fmt in fmts:
                t, ts, size = bench(s, fmt, Path(tmp), args.repeat)
                if fmt == "ply":
                    ply_size = size
                ratio = f"{size / ply_size:.3f}" if ply_size else "-"
                runs = ", ".join(f"{x:.2f}" for x in ts)
                print(f"| {scene} | {fmt} | {t:.2f} | {runs} | {size / 1e6:.1f} | {ratio} | "
                      f"{size / args.n:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
