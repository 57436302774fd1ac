"""One block against several: held-out PSNR overall and across block borders, peak memory, time.

    python scripts/bench_blocks.py DATA --blocks 1 4 [--preset quick] [--out _runs/blocks]
                                   [-- MORE TRAIN OPTIONS, e.g. --steps 600 --ray-address local]

DATA is what ``splatkit train`` takes (a COLMAP project such as a finished SfM folder, so that
every run trains on the same poses). Each block count trains in a fresh process; the rows give
held-out PSNR over every held-out photo and over those that look across a border (the
border views of the run with the most blocks), the process's peak RSS and the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _run(data: Path, out: Path, blocks: int, preset: str, extra: list[str]) -> dict:
    args = ["train", str(data), "-o", str(out), "--preset", preset, "--blocks", str(blocks), "--quiet",
            *extra]
    out.parent.mkdir(parents=True, exist_ok=True)
    rss = out.parent / f".peak_{blocks}"
    cmd = [sys.executable, "-c", _MEASURED, str(rss), *args]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, check=False).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}")
    m = json.loads((out / "metrics.json").read_text())
    summary = out / "blocks" / "blocks.json"
    borders = json.loads(summary.read_text())["border_views"] if summary.is_file() else {}
    return {"blocks": blocks, "metrics": m, "borders": borders, "seconds": seconds,
            "peak_rss_mb": float(rss.read_text()) / 1024, "cmd": "splatkit " + " ".join(args)}


#: ``splatkit ARGS`` in this process, its own peak RSS (KiB) written to argv[1] at the end.
_MEASURED = """
import resource, runpy, sys
path = sys.argv[1]
sys.argv = ["splatkit", *sys.argv[2:]]
try:
    runpy.run_module("splatkit", run_name="__main__")
finally:
    open(path, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--out", type=Path, default=Path("_runs/blocks"))
    a, extra = ap.parse_known_args(argv)  # more `splatkit train` options, after --
    extra = [x for x in extra if x != "--"]
    runs = [_run(a.data, a.out / f"blocks_{n}", n, a.preset, extra) for n in sorted(a.blocks)]
    border_names = set(max(runs, key=lambda r: r["blocks"])["borders"])
    print(f"{'blocks':>6} {'psnr':>7} {'border psnr':>11} {'border views':>12} {'splats':>8} "
          f"{'peak MB':>8} {'seconds':>8}")
    for r in runs:
        per = {p["name"]: p["psnr"] for p in r["metrics"]["per_image"]}
        b = [per[n] for n in border_names if n in per]
        bp = sum(b) / len(b) if b else float("nan")
        print(f"{r['blocks']:>6} {r['metrics']['psnr']:>7.2f} {bp:>11.2f} {len(b):>12} "
              f"{r['metrics']['num_splats']:>8} {r['peak_rss_mb']:>8.0f} {r['seconds']:>8.1f}")
    print("command: python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
