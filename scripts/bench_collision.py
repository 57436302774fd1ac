"""Collision mesh of a trained run (issue 16): triangles, time, and how well it fits.

Builds the mesh the export writes with ``--collision`` (``splatkit/export/collision.py``) from a
run folder (``scene.ply`` + ``sparse/0``) and reports: triangles, build time, and the median
distance from the SfM sparse points (the independent evidence of where surfaces are) to the
mesh, as a fraction of the scene extent (the diagonal of the 2nd-98th percentile box of the
points), in the export's upright metric frame.

Example::

    python scripts/bench_collision.py /tmp/unreal/train_fountain --max-triangles 20000
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splatkit import frames as F
from splatkit.export import collision as K
from splatkit.export import crop as C
from splatkit.export.ply import read_ply
from splatkit.export.unreal import UnrealExportOptions, estimate_upright, upright_cameras
from splatkit.sfm.loaders import load_scene


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder")
    ap.add_argument("--max-triangles", type=int, default=20_000)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--views", type=int, default=24)
    args = ap.parse_args(argv)
    print(f"command: {shlex.join([sys.executable] + sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")
    scene = load_scene(args.run)
    splats = read_ply(args.run / "scene.ply")
    splats = splats.index(torch.where(C.clean_mask(splats))[0])
    T, info = estimate_upright(scene, UnrealExportOptions())
    s_up = F.transform_splats(splats, T)
    cams = upright_cameras(scene.cameras, T, scene.train_idx)
    s_up = s_up.index(torch.where(C.seen_mask(s_up.means, s_up.log_scales, cams))[0])
    opts = K.CollisionOptions(max_triangles=args.max_triangles, resolution=args.resolution, views=args.views)
    mesh = K.build(s_up, cams, opts)
    pts = T.apply(scene.points.double()).numpy()
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    extent = float(np.linalg.norm(hi - lo))
    d = K.median_distance(mesh, pts)
    print(f"{len(splats):,} splats, {len(pts):,} sparse points, scale {info['metres_per_unit']:.4g} m/unit "
          f"({info['scale_source']})\n")
    print("| run | triangles | voxel (m) | build time (s) | median distance to sparse points | / extent |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {args.run.name} | {len(mesh.faces):,} | {mesh.voxel_m:.3f} | {mesh.seconds:.1f} | {d:.3f} m | "
          f"{100 * d / extent:.2f}% of {extent:.1f} m |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
