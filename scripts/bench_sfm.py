"""Benchmark ingest + SfM on the shared photo sets against their reference cameras.

For each set: registered/total, rotation error (median, max; degrees) and median camera-centre
error as a fraction of the scene extent, after a similarity (Umeyama) alignment of the centres to
the reference (Strecha: LIDAR ground truth in gt_dense_cameras/; fox: transforms.json, itself a
COLMAP result), mean reprojection error and wall time per stage.

    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11
    python scripts/bench_sfm.py --size 1600            # every set (fox and castle take minutes)
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

from splatkit.config import IngestConfig, SfmConfig
from splatkit.errors import UserError
from splatkit.events import EventBus
from splatkit.ingest import ingest
from splatkit.sfm import read_sfm_record, run_sfm
from splatkit.sfm.align import read_strecha_cameras, read_transforms_cameras, scene_errors

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / ".." / "shared" / "datasets"


def reference(set_dir: Path):
    if (set_dir / "gt_dense_cameras").is_dir():
        return "Strecha GT", read_strecha_cameras(set_dir / "gt_dense_cameras")
    if (set_dir / "transforms.json").is_file():
        return "transforms.json", read_transforms_cameras(set_dir / "transforms.json")
    return None, None


def bench_one(set_dir: Path, out: Path, size: int, threads: int, keep: bool, cfg_kw: dict) -> dict:
    if out.exists() and not keep:
        shutil.rmtree(out)
    bus = EventBus()
    bus.subscribe(
        lambda e: (
            print(f"    [{e.level}] {e.text}", flush=True)
            if e.kind == "message" and e.level == "warning"
            else None
        )
    )
    t = time.time()
    photos = ingest(set_dir / "images", out / "work", IngestConfig(max_image_size=size), bus)
    t_ingest = time.time() - t
    cfg = SfmConfig(max_image_size=size, num_threads=threads, **cfg_kw)
    t = time.time()
    scene = run_sfm(photos, out / "sfm", cfg, bus)
    t_sfm = time.time() - t
    rec = read_sfm_record(out / "sfm")
    row = {
        "set": set_dir.name,
        "reg": f"{len(scene.cameras)}/{len(photos)}",
        "points": int(scene.points.shape[0]),
        "reproj": rec["mean_reprojection_error_px"],
        "ingest_s": t_ingest,
        **{f"{k}_s": v for k, v in rec["seconds"].items()},
        "sfm_s": t_sfm,
    }
    ref_name, ref = reference(set_dir)
    if ref:
        err = scene_errors(scene, ref)
        row.update(
            ref=ref_name,
            rot_med=err.median_rot_deg,
            rot_max=err.max_rot_deg,
            ctr_med=err.median_center_frac,
        )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1600, help="max image size (ingest and SfM)")
    ap.add_argument("--sets", nargs="*", help="set names (default: every set with images/)")
    ap.add_argument("--datasets", type=Path, default=DATASETS)
    ap.add_argument("--out", type=Path, default=ROOT / "_runs" / "bench_sfm")
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--keep", action="store_true", help="reuse earlier results (cache)")
    ap.add_argument(
        "--fixed-principal-point",
        action="store_true",
        help="COLMAP's default: principal point held at the image centre",
    )
    args = ap.parse_args(argv)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    sets = args.sets or sorted(p.name for p in args.datasets.iterdir() if (p / "images").is_dir())
    cfg_kw = {"refine_principal_point": not args.fixed_principal_point}
    rows = []
    for name in sets:
        print(f"== {name} at {args.size} px", flush=True)
        try:
            row = bench_one(
                args.datasets / name,
                args.out / f"{name}_{args.size}",
                args.size,
                args.threads,
                args.keep,
                cfg_kw,
            )
        except UserError as e:
            print(f"    FAILED: {e}")
            continue
        print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        rows.append(row)
    hdr = (
        f"{'set':22} {'reg':>6} {'points':>7} {'rot med':>8} {'rot max':>8} {'ctr med':>8} "
        f"{'reproj':>7} {'ingest':>7} {'extract':>8} {'match':>7} {'map':>7} {'undist':>7} "
        f"{'total':>7}  reference"
    )
    print()
    print(hdr)
    for r in rows:
        print(
            f"{r['set']:22} {r['reg']:>6} {r['points']:>7} "
            f"{r.get('rot_med', float('nan')):>7.3f}° {r.get('rot_max', float('nan')):>7.3f}° "
            f"{100 * r.get('ctr_med', float('nan')):>7.3f}% {r['reproj']:>5.3f}px "
            f"{r['ingest_s']:>6.1f}s {r['extract_s']:>7.1f}s {r['match_s']:>6.1f}s "
            f"{r['map_s']:>6.1f}s {r['undistort_s']:>6.1f}s {r['ingest_s'] + r['sfm_s']:>6.1f}s"
            f"  {r.get('ref', '-')}"
        )
    print("rot: angle between aligned and reference orientations; ctr: centre error / scene extent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
