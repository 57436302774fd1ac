"""Run `splatkit train` with a preset on each photo set in ../shared/datasets and print a table.

    python scripts/bench_presets.py --preset quick [--sets fox strecha_fountain_p11 ...]
    python scripts/bench_presets.py --preset quick --sets south_building_128 --every 5 --limit 25

Per set: registered/total, held-out PSNR/SSIM (INRIA split), splat count, wall time per stage,
from each run's metrics.json (outputs in _runs/presets/<preset>/<set>, kept for inspection), and
the run's peak resident memory (the ``splatkit train`` process, from ``wait4``; reused runs show
"-"). ``--every N --limit M`` train on every Nth photo of the set (the first M of them), e.g. a
25-photo orbit; ``--train-args`` passes more options to ``splatkit train``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
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
    ap.add_argument("--every", type=int, default=1, help="train on every Nth photo")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos")
    ap.add_argument("--train-args", default="", help="more options for splatkit train")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for name in a.sets:
        tag = name + (f"_every{a.every}_limit{a.limit}" if a.every > 1 or a.limit else "")
        out = REPO / "_runs" / "presets" / a.preset / tag
        rss = None
        if not (a.reuse and (out / "metrics.json").exists()):
            src = photos(name, out.parent / f"{tag}_photos", a.every, a.limit)
            cmd = [sys.executable, "-m", "splatkit", "train", str(src), "-o", str(out),
                   "--preset", a.preset, "--quiet", *shlex.split(a.train_args)]
            print("running:", " ".join(cmd), flush=True)
            t0 = time.time()
            code, rss = run_measured(cmd)
            if code != 0:
                print(f"{name}: failed with exit code {code}")
                continue
            print(f"{name}: {time.time() - t0:.0f} s, peak RSS {rss / 2**30:.2f} GiB", flush=True)
        m = json.loads((out / "metrics.json").read_text())
        rows.append((tag, m, rss))
    extra = (f" --every {a.every}" if a.every > 1 else "") + (f" --limit {a.limit}" if a.limit else "")
    extra += f" --train-args {shlex.quote(a.train_args)}" if a.train_args else ""
    print(f"\ncommand: python scripts/bench_presets.py --preset {a.preset} --sets {' '.join(a.sets)}"
          + extra)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| set | registered | held-out PSNR | SSIM | splats | ingest | sfm | train | evaluate | total "
          "| peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m, rss in rows:
        s = m["seconds"]
        im = m["images"]
        print(f"| {name} | {im['registered']}/{im['used']} | {m['psnr']:.2f} dB | {m['ssim']:.3f} | "
              f"{m['num_splats']:,} | {s['ingest']:.0f} s | {s['sfm']:.0f} s | {s['train']:.0f} s | "
              f"{s['evaluate']:.0f} s | {s['total']:.0f} s | "
              + (f"{rss / 2**30:.2f} GiB |" if rss else "- |"))
    return 0


def photos(name: str, folder: Path, every: int, limit: int) -> Path:
    """The set's photos, or a folder of links to every Nth of them (the first ``limit``)."""
    src = DATASETS / name / "images"
    if every == 1 and not limit:
        return src
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for f in files[::every][: limit or None]:
        (folder / f.name).symlink_to(f.resolve())
    return folder


def run_measured(cmd: list[str]) -> tuple[int, int]:
    """Run ``cmd``; (exit code, peak resident memory in bytes of it and its children)."""
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024


if __name__ == "__main__":
    sys.exit(main())
