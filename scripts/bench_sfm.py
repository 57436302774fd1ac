"""Benchmark ingest + SfM on the shared photo sets against their reference cameras.

For each set: registered/total, rotation error (median, max; degrees) and median camera-centre
error as a fraction of the scene extent, after a similarity (Umeyama) alignment of the centres to
the reference (Strecha: LIDAR ground truth in gt_dense_cameras/; fox: transforms.json, itself a
COLMAP result), mean reprojection error and wall time per stage.

    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11
    python scripts/bench_sfm.py --size 1600            # every set (fox and castle take minutes)
    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11 --mapper global
    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11 --colmap-cli

``--colmap-cli`` also runs the COLMAP command-line program (Debian's ``colmap``) on the same
working copies with the same options (feature_extractor, exhaustive_matcher, mapper,
image_undistorter) and evaluates its poses the same way (row ``<set> [colmap CLI]``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from splatkit.config import IngestConfig, SfmConfig
from splatkit.errors import UserError
from splatkit.events import EventBus
from splatkit.ingest import ingest
from splatkit.sfm import load_scene, read_sfm_record, run_sfm
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


def bench_colmap_cli(set_dir: Path, out: Path, size: int, threads: int, cfg_kw: dict) -> dict:
    """The same working copies through the COLMAP program; same options as run_sfm."""
    exe = shutil.which("colmap")
    if exe is None:
        raise UserError("colmap is not installed", "apt-get install colmap")
    work, cli = out / "work", out / "colmap_cli"
    if cli.exists():
        shutil.rmtree(cli)
    (cli / "sparse").mkdir(parents=True)
    db = cli / "database.db"
    th = str(threads)
    cfg = SfmConfig()
    names = sorted(p.name for p in work.iterdir() if p.suffix in (".jpg", ".png"))
    (cli / "list.txt").write_text("\n".join(names) + "\n")
    steps = {
        "extract": [exe, "feature_extractor", "--database_path", db, "--image_path", work,
                    "--image_list_path", cli / "list.txt",
                    "--ImageReader.single_camera", "1", "--ImageReader.camera_model", cfg.camera_model,
                    "--SiftExtraction.max_image_size", str(size),
                    "--SiftExtraction.max_num_features", str(cfg.max_features),
                    "--SiftExtraction.num_threads", th, "--SiftExtraction.use_gpu", "0"],
        "match": [exe, "exhaustive_matcher", "--database_path", db, "--SiftMatching.num_threads", th,
                  "--SiftMatching.use_gpu", "0"],
        "map": [exe, "mapper", "--database_path", db, "--image_path", work, "--output_path",
                cli / "sparse", "--Mapper.num_threads", th,
                "--Mapper.ba_refine_principal_point",
                "1" if cfg_kw.get("refine_principal_point", True) else "0"],
    }
    row = {"set": f"{set_dir.name} [colmap CLI]"}
    for k, cmd in steps.items():
        t = time.time()
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
        row[f"{k}_s"] = time.time() - t
    models = sorted((cli / "sparse").iterdir())
    import pycolmap

    recs = [pycolmap.Reconstruction(str(m)) for m in models]
    best_i = max(range(len(recs)), key=lambda i: recs[i].num_reg_images())
    t = time.time()
    subprocess.run([exe, "image_undistorter", "--image_path", str(work), "--input_path",
                    str(models[best_i]), "--output_path", str(cli / "und"), "--output_type", "COLMAP"],
                   check=True, capture_output=True)
    (cli / "und" / "sparse" / "0").mkdir()
    for f in (cli / "und" / "sparse").glob("*.bin"):
        f.rename(cli / "und" / "sparse" / "0" / f.name)
    row["undistort_s"] = time.time() - t
    scene = load_scene(cli / "und", unregistered=[])
    best = recs[best_i]
    cam = next(iter(best.cameras.values()))
    row.update(
        reg=f"{best.num_reg_images()}/{len(names)}",
        points=best.num_points3D(),
        reproj=best.compute_mean_reprojection_error(),
        ingest_s=0.0,
        sfm_s=sum(row[f"{k}_s"] for k in ("extract", "match", "map", "undistort")),
        colmap=subprocess.run([exe, "-h"], capture_output=True, text=True).stdout.split("\n")[0],
        cam=f"f={cam.params[0]:.1f}",
    )
    ref_name, ref = reference(set_dir)
    if ref:
        err = scene_errors(scene, ref)
        row.update(ref=ref_name, rot_med=err.median_rot_deg, rot_max=err.max_rot_deg,
                   ctr_med=err.median_center_frac)
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
    ap.add_argument("--mapper", choices=("incremental", "global"), default="incremental")
    ap.add_argument("--colmap-cli", action="store_true",
                    help="also run the COLMAP program on the same working copies (cross-check)")
    args = ap.parse_args(argv)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    sets = args.sets or sorted(p.name for p in args.datasets.iterdir() if (p / "images").is_dir())
    cfg_kw = {"refine_principal_point": not args.fixed_principal_point, "mapper": args.mapper}
    rows = []
    for name in sets:
        print(f"== {name} at {args.size} px", flush=True)
        try:
            row = bench_one(
                args.datasets / name,
                args.out / f"{name}_{args.size}_{args.mapper}",
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
        if args.colmap_cli:
            cli_row = bench_colmap_cli(
                args.datasets / name, args.out / f"{name}_{args.size}_{args.mapper}", args.size,
                args.threads, cfg_kw,
            )
            print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in cli_row.items()})
            rows.append(cli_row)
    hdr = (
        f"{'set':34} {'reg':>6} {'points':>7} {'rot med':>8} {'rot max':>8} {'ctr med':>8} "
        f"{'reproj':>7} {'ingest':>7} {'extract':>8} {'match':>7} {'map':>7} {'undist':>7} "
        f"{'total':>7}  reference"
    )
    print()
    print(hdr)
    for r in rows:
        print(
            f"{r['set']:34} {r['reg']:>6} {r['points']:>7} "
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
