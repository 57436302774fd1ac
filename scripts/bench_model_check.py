"""What checking a COLMAP model's files costs before pycolmap reads them (splatkit.sfm.model_files).

Writes a large synthetic binary model (pycolmap's synthetic dataset generator: many images and
points) and times the walk over each file against pycolmap's own read of the model.

    python scripts/bench_model_check.py [--images 200] [--points 50000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pycolmap

from splatkit.sfm.model_files import FILES, OPTIONAL, _walk_binary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--points", type=int, default=50_000)
    a = ap.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs, opts.num_cameras_per_rig, opts.num_frames_per_rig = 1, 1, a.images
    opts.num_points3D = a.points
    rec = pycolmap.synthesize_dataset(opts)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rec.write_binary(str(d))
        total = 0.0
        for name in (*FILES, *OPTIONAL):
            f = d / f"{name}.bin"
            t = time.perf_counter()
            _walk_binary(f, name)
            dt = time.perf_counter() - t
            total += dt
            print(f"check {name + '.bin':14s} {f.stat().st_size / 1e6:8.1f} MB {dt:7.3f} s")
        t = time.perf_counter()
        pycolmap.Reconstruction(str(d))
        read = time.perf_counter() - t
    print(f"check all files {total:.3f} s; pycolmap read {read:.3f} s "
          f"({a.images} images, {a.points} points)")


if __name__ == "__main__":
    main()
