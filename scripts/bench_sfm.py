"""Benchmark ingest + SfM on the shared photo sets against their reference cameras.

For each set: registered/total, rotation error (median, max; degrees) and median camera-centre
error as a fraction of the scene extent, after a similarity (Umeyama) alignment of the centres to
the reference (Strecha: LIDAR ground truth in gt_dense_cameras/; fox: transforms.json, itself a
COLMAP result), mean reprojection error and wall time per stage.

    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11
    python scripts/bench_sfm.py --size 1600            # every set (fox and castle take minutes)
    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11 --mapper global
    python scripts/bench_sfm.py --size 800 --sets strecha_fountain_p11 --colmap-cli
    python scripts/bench_sfm.py --size 1600 --sets south_building_128 --plain --compare-pairs
    python scripts/bench_sfm.py --size 800 --max-features 2048 --sets south_building_128 \
        --every 5 --limit 25 --plain
    python scripts/bench_sfm.py --size 1600 --sets south_building_128 --both-mappers

``--colmap-cli`` also runs the COLMAP command-line program (Debian's ``colmap``) on the same
working copies with the same options (feature_extractor, exhaustive_matcher, mapper,
image_undistorter) and evaluates its poses the same way (row ``<set> [colmap CLI]``).

``--plain`` also runs plain pycolmap with its defaults (8192 SIFT features at full size, one
camera per EXIF camera, exhaustive matching, incremental mapping) on the original photos (row
``<set> [plain pycolmap]``): the registration floor that no preset may fall below.
``--compare-pairs`` matches the same features exhaustively too and prints the share of its
verified pairs that the run's pair selection found (row ``<set> [pairs]``).
``--both-mappers`` places the cameras of the same matches with the incremental and the global
mapper and prints their agreement after a similarity alignment (row ``<set> [mappers]``).
``--every N --limit M`` take every Nth photo (the first M of them): e.g. a 25-photo orbit.
``--two-zooms`` makes every other photo of the set "zoomed" (central 2/3 cropped and resized
back: the same pixel size, 1.5 x the focal length, the same pose) and runs it twice: with EXIF
focal lengths (two cameras) and without EXIF (forced into one camera), rows ``[two zooms, ...]``.
The second table gives the pair selection and the second chance of each run.
"""

from __future__ import annotations

import argparse
import os
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
from splatkit.sfm.align import (
    pose_errors,
    read_strecha_cameras,
    read_transforms_cameras,
    scene_errors,
)
from splatkit.sfm.database import verified_pairs

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / ".." / "shared" / "datasets"


def reference(set_dir: Path):
    if (set_dir / "gt_dense_cameras").is_dir():
        return "Strecha GT", read_strecha_cameras(set_dir / "gt_dense_cameras")
    if (set_dir / "transforms.json").is_file():
        return "transforms.json", read_transforms_cameras(set_dir / "transforms.json")
    return None, None


def subset(set_dir: Path, out: Path, every: int, limit: int) -> Path:
    """``set_dir/images``, or a folder of links to every ``every``-th photo (the first ``limit``)."""
    if every == 1 and not limit:
        return set_dir / "images"
    d = out / "subset"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    files = sorted(f for f in (set_dir / "images").iterdir() if f.suffix.lower() in (".jpg", ".png"))
    files = files[::every][: limit or None]
    for f in files:
        (d / f.name).symlink_to(f.resolve())
    return d


def two_zooms(set_dir: Path, out: Path, size: int, exif: bool) -> Path:
    """Copies at ``size`` px, every other one zoomed 1.5 x; EXIF focal lengths when ``exif``."""
    from PIL import Image

    d = out / ("two_zooms_exif" if exif else "two_zooms_no_exif")
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    files = sorted(f for f in (set_dir / "images").iterdir() if f.suffix.lower() in (".jpg", ".png"))
    for k, f in enumerate(files):
        with Image.open(f) as im:
            im.draft("RGB", (2 * size, 2 * size))
            im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        w, h = im.size
        zoom = 1.5 if k % 2 else 1.0
        if k % 2:
            box = (w / 2 - w / 3, h / 2 - h / 3, w / 2 + w / 3, h / 2 + h / 3)
            im = im.resize((w, h), Image.Resampling.LANCZOS, box=box)
        e = Image.Exif()
        if exif:
            e[0x010F], e[0x0110] = "BenchCam", "Z1"
            e.get_ifd(0x8769)[0x920A] = 10.0 * zoom
        im.save(d / f.with_suffix(".jpg").name, quality=92, **({"exif": e.tobytes()} if exif else {}))
    return d


def bench_one(set_dir: Path, out: Path, size: int, threads: int, keep: bool, cfg_kw: dict,
              images: Path | None = None, ingest_size: int | None = None,
              work: Path | None = None) -> dict:  # fmt: skip
    if out.exists() and not keep:
        shutil.rmtree(out)
    images = images or subset(set_dir, out, 1, 0)
    bus = EventBus()
    bus.subscribe(
        lambda e: (
            print(f"    [{e.level}] {e.text}", flush=True)
            if e.kind == "message" and e.level == "warning"
            else None
        )
    )
    t = time.time()
    photos = ingest(images, work or out / "work", IngestConfig(max_image_size=ingest_size or size), bus)
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
        "record": rec,
        "out": out,
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


def rec_errors(rec, ref: dict):
    """Pose errors of a pycolmap Reconstruction's registered images against ``ref`` (by stem)."""
    import numpy as np

    by_stem = {Path(k).stem: v for k, v in ref.items()}
    est_R, est_C, ref_R, ref_C = [], [], [], []
    for im in rec.images.values():
        r = by_stem.get(Path(im.name).stem)
        if r is None or not im.has_pose:
            continue
        cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        m = np.asarray(cfw.matrix())
        est_R.append(m[:3, :3].T)
        est_C.append(-m[:3, :3].T @ m[:3, 3])
        ref_R.append(r[0])
        ref_C.append(r[1])
    if len(est_C) < 3:
        return None
    return pose_errors(np.stack(est_R), np.stack(est_C), np.stack(ref_R), np.stack(ref_C))


def bench_plain(set_dir: Path, images: Path, out: Path) -> dict:
    """Plain pycolmap, defaults only, on the original photos (the registration floor)."""
    import pycolmap

    d = out / "plain_pycolmap"
    if d.exists():
        shutil.rmtree(d)
    (d / "sparse").mkdir(parents=True)
    db = str(d / "database.db")
    names = sorted(f.name for f in images.iterdir() if f.suffix.lower() in (".jpg", ".png"))
    row = {"set": f"{set_dir.name} [plain pycolmap]"}
    pycolmap.logging.minloglevel = 2
    steps = {
        "extract": lambda: pycolmap.extract_features(db, str(images), image_names=names),
        "match": lambda: pycolmap.match_exhaustive(db),
        "map": lambda: pycolmap.incremental_mapping(db, str(images), str(d / "sparse")),
    }
    maps = {}
    for k, fn in steps.items():
        t = time.time()
        maps = fn() or maps
        row[f"{k}_s"] = time.time() - t
    best = max(maps.values(), key=lambda r: r.num_reg_images())
    row.update(reg=f"{best.num_reg_images()}/{len(names)}", points=best.num_points3D(),
               reproj=best.compute_mean_reprojection_error(), ingest_s=0.0, undistort_s=0.0,
               sfm_s=sum(row[f"{k}_s"] for k in steps),
               models=sorted((m.num_reg_images() for m in maps.values()), reverse=True))  # fmt: skip
    ref_name, ref = reference(set_dir)
    err = rec_errors(best, ref) if ref else None
    if err is not None:
        row.update(ref=ref_name, rot_med=err.median_rot_deg, rot_max=err.max_rot_deg,
                   ctr_med=err.median_center_frac)  # fmt: skip
    return row


def compare_pairs(row: dict, threads: int, size: int, cfg_kw: dict) -> dict:
    """Exhaustive matching of the same features: the share of its verified pairs the run found."""
    from splatkit.sfm.calls import quiet_colmap
    from splatkit.sfm.pairs import match_photos

    out = row["out"]
    work = out / "sfm" / "sfm_work"
    ex = out / "exhaustive"
    if ex.exists():
        shutil.rmtree(ex)
    ex.mkdir()
    shutil.copy(work / "database.db", ex / "database.db")
    d = __import__("pycolmap").Database.open(str(ex / "database.db"))
    d.clear_matches()
    d.clear_two_view_geometries()
    names = sorted(im.name for im in d.read_all_images())
    d.close()
    cfg = SfmConfig(max_image_size=size, num_threads=threads, **cfg_kw)
    with quiet_colmap():
        st = match_photos(ex / "database.db", ex, names, "exhaustive", cfg)
    ref, got = verified_pairs(ex / "database.db"), verified_pairs(work / "database.db")
    strong = {p for p, n in ref.items() if n >= 100}
    rec = row["record"]
    return {
        "set": row["set"] + " [pairs]",
        "exhaustive_pairs": st.pairs, "exhaustive_verified": len(ref), "exhaustive_s": st.seconds,
        "selected": rec["matcher"], "selected_pairs": rec["pairs"]["matched"],
        "selected_verified": rec["pairs"]["verified"], "selected_s": rec["seconds"]["match"],
        "recall": len(set(got) & set(ref)) / max(1, len(ref)),
        "recall_100": len(set(got) & strong) / max(1, len(strong)),
    }  # fmt: skip


def bench_mappers(set_dir: Path, out: Path, size: int, threads: int, cfg_kw: dict,
                  images: Path) -> list[dict]:  # fmt: skip
    """Incremental and global mapping of the same matches, and their agreement."""
    rows = []
    for mapper in ("incremental", "global"):
        o = out / mapper
        if mapper == "global":  # same features and matches: the database is reused
            if o.exists():
                shutil.rmtree(o)
            (o / "sfm" / "sfm_work").mkdir(parents=True)
            for f in ("database.db", "database.json"):
                shutil.copy(out / "incremental" / "sfm" / "sfm_work" / f, o / "sfm" / "sfm_work" / f)
        # the global run uses the incremental run's working copies: same photos, same keys
        r = bench_one(set_dir, o, size, threads, mapper == "global", {**cfg_kw, "mapper": mapper},
                      images, work=out / "incremental" / "work")  # fmt: skip
        r["set"] += f" [{mapper}]"
        rows.append(r)
    a, b = (load_scene(out / m / "sfm") for m in ("incremental", "global"))
    c2w = a.cameras.cam_to_world.double().numpy()
    ref = {n: (c2w[i, :3, :3], c2w[i, :3, 3]) for i, n in enumerate(a.cameras.names)}
    err = scene_errors(b, ref)
    rows.append({"set": f"{set_dir.name} [mappers]", "common": len(err.rot_deg),
                 "rot_med": err.median_rot_deg, "rot_max": err.max_rot_deg,
                 "ctr_med": err.median_center_frac,
                 "ctr_max": float(err.center.max() / err.extent)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1600, help="max image size (ingest and SfM)")
    ap.add_argument("--ingest-size", type=int, default=None,
                    help="working copies' size when other than --size (the second chance's size)")
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
    ap.add_argument("--matcher", default="auto", help="SfmConfig.matcher (default auto)")
    ap.add_argument("--max-features", type=int, default=None, help="SIFT features (default 8192)")
    ap.add_argument("--no-second-chance", action="store_true")
    ap.add_argument("--every", type=int, default=1, help="take every Nth photo")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos")
    ap.add_argument("--colmap-cli", action="store_true",
                    help="also run the COLMAP program on the same working copies (cross-check)")
    ap.add_argument("--plain", action="store_true", help="also run plain pycolmap defaults")
    ap.add_argument("--compare-pairs", action="store_true",
                    help="also match exhaustively: share of its verified pairs found")
    ap.add_argument("--two-zooms", action="store_true",
                    help="every other photo zoomed 1.5x: with EXIF (two cameras) and without")
    ap.add_argument("--both-mappers", action="store_true",
                    help="incremental and global on the same matches, and their agreement")
    args = ap.parse_args(argv)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sets = args.sets or sorted(p.name for p in args.datasets.iterdir() if (p / "images").is_dir())
    cfg_kw = {"refine_principal_point": not args.fixed_principal_point, "mapper": args.mapper,
              "matcher": args.matcher, "second_chance": not args.no_second_chance}  # fmt: skip
    if args.max_features:
        cfg_kw["max_features"] = args.max_features
    rows, extra = [], []
    for name in sets:
        print(f"== {name} at {args.size} px", flush=True)
        tag = f"{name}_{args.size}_{args.mapper}"
        tag += f"_ingest{args.ingest_size}" if args.ingest_size else ""
        tag += f"_every{args.every}_limit{args.limit}" if args.every > 1 or args.limit else ""
        tag += "_two_zooms" if args.two_zooms else ""
        out = args.out / tag
        if out.exists() and not args.keep:
            shutil.rmtree(out)
        images = subset(args.datasets / name, out, args.every, args.limit)
        try:
            if args.two_zooms:
                for exif in (True, False):
                    zoomed = two_zooms(args.datasets / name, out, args.size, exif)
                    r = bench_one(args.datasets / name, out / f"{zoomed.name}_run", args.size, args.threads,
                                  False, cfg_kw, zoomed)  # fmt: skip
                    r["set"] += " [two zooms, EXIF]" if exif else " [two zooms, no EXIF]"
                    rows.append(r)
            elif args.both_mappers:
                got = bench_mappers(args.datasets / name, out, args.size, args.threads, cfg_kw, images)
                rows += got[:2]
                extra.append(got[2])
            else:
                rows.append(bench_one(args.datasets / name, out, args.size, args.threads, True,
                                      cfg_kw, images, args.ingest_size))  # fmt: skip
        except UserError as e:
            print(f"    FAILED: {e}")
            continue
        print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()
                      if k not in ("record", "out")})  # fmt: skip
        if args.compare_pairs:
            extra.append(compare_pairs(rows[-1], args.threads, args.size, cfg_kw))
            print("   ", extra[-1])
        if args.plain:
            rows.append(bench_plain(args.datasets / name, images, out))
            print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()})
        if args.colmap_cli:
            cli_row = bench_colmap_cli(args.datasets / name, out, args.size, args.threads, cfg_kw)
            print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in cli_row.items()})
            rows.append(cli_row)
    print_tables(rows, extra)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def print_tables(rows: list[dict], extra: list[dict]) -> None:
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
    runs = [r for r in rows if "record" in r]
    if runs:
        print(f"\n{'set':34} {'matcher':>10} {'pairs':>6} {'verified':>8} {'retr s':>6} "
              f"{'1st pass':>8} {'2nd tried':>9} {'2nd placed':>10} {'2nd s':>6} cameras")  # fmt: skip
        for r in runs:
            rec = r["record"]
            sc = rec.get("second_chance", {})
            print(f"{r['set']:34} {rec['matcher']:>10} {rec['pairs']['matched']:>6} "
                  f"{rec['pairs']['verified']:>8} {rec['pairs']['retrieval_seconds']:>6.1f} "
                  f"{'+'.join(str(n) for n in rec['first_pass_models']):>8} {sc.get('tried', 0):>9} "
                  f"{len(sc.get('placed', [])):>10} {rec['seconds'].get('second_chance', 0):>6.1f} "
                  f"{len(rec['cameras'])}")  # fmt: skip
    for e in extra:
        if "recall" in e:
            print(f"{e['set']:34} exhaustive {e['exhaustive_verified']}/{e['exhaustive_pairs']} verified "
                  f"in {e['exhaustive_s']:.0f} s; {e['selected']} {e['selected_verified']}/"
                  f"{e['selected_pairs']} in {e['selected_s']:.0f} s: found {100 * e['recall']:.1f} % "
                  f"of exhaustive's verified pairs ({100 * e['recall_100']:.1f} % of those with "
                  "100+ inliers)")  # fmt: skip
        else:
            print(f"{e['set']:34} global vs incremental, {e['common']} common cameras: rotation "
                  f"{e['rot_med']:.3f}° median / {e['rot_max']:.3f}° max, centres "
                  f"{100 * e['ctr_med']:.3f} % / {100 * e['ctr_max']:.3f} % of the extent")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
