"""Run `splatkit train` with a preset on each photo set in ../shared/datasets and print a table.

    python scripts/bench_presets.py --preset quick [--sets fox strecha_fountain_p11 ...]

Per set: registered/total, held-out PSNR/SSIM (INRIA split), splat count, wall time per stage,
from each run's metrics.json (outputs in _runs/presets/<preset>/<set>, kept for inspection).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--sets", nargs="*", default=["strecha_fountain_p11", "strecha_castle_p19", "fox"])
    ap.add_argument("--reuse", action="store_true", help="print finished runs without re-running")
    a = ap.parse_args()
    rows = []
    for name in a.sets:
        out = REPO / "_runs" / "presets" / a.preset / name
        if not (a.reuse and (out / "metrics.json").exists()):
            cmd = [sys.executable, "-m", "splatkit", "train", str(DATASETS / name / "images"),
                   "-o", str(out), "--preset", a.preset, "--quiet"]
            print("running:", " ".join(cmd), flush=True)
            t0 = time.time()
            res = subprocess.run(cmd)
            if res.returncode != 0:
                print(f"{name}: failed with exit code {res.returncode}")
                continue
            print(f"{name}: {time.time() - t0:.0f} s", flush=True)
        m = json.loads((out / "metrics.json").read_text())
        rows.append((name, m))
    print(f"\ncommand: python scripts/bench_presets.py --preset {a.preset} --sets {' '.join(a.sets)}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| set | registered | held-out PSNR | SSIM | splats | ingest | sfm | train | evaluate | total |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in rows:
        s = m["seconds"]
        im = m["images"]
        print(f"| {name} | {im['registered']}/{im['used']} | {m['psnr']:.2f} dB | {m['ssim']:.3f} | "
              f"{m['num_splats']:,} | {s['ingest']:.0f} s | {s['sfm']:.0f} s | {s['train']:.0f} s | "
              f"{s['evaluate']:.0f} s | {s['total']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
