"""Cleanup and export defaults on trained runs: what cleanup removes (per rule), what it costs
on the held-out photos, the far field before and after, and every plugin's default export.

    python scripts/bench_cleanup_export.py _runs/presets/quick/fox _runs/presets/quick/strecha_fountain_p11

Each argument is a finished run folder (``splatkit train ... --preset quick``). Cleanup runs on
its ``scene.ply`` when the folder has no ``scene_clean.ply`` yet (or with ``--redo``) and writes
``scene_clean.ply`` and the before/after previews there, as training does; the exports go to
``_runs/bench_export/<run>/<plugin>/`` (the run's own ``unreal/`` is left alone).

Rows (stable): one per run for cleanup (splats, removed per rule, held-out PSNR before/after,
file sizes, seconds), one per run for the far field (splats larger than the cameras' extent or
farther than 10x it, in scene.ply and in scene_clean.ply), one per run and plugin for the export
(files, splats written, far splats left out, tiles, smallest tile and its share).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cleanup_row(rd, redo: bool) -> dict:
    from splatkit.cleanup import RULES, run_cleanup
    from splatkit.config import RunConfig
    from splatkit.export.ply import read_ply
    from splatkit.sfm.loaders import load_scene

    m = json.loads(rd.metrics.read_text())
    if "cleanup" in m and rd.scene_clean_ply.is_file() and not redo:
        c, secs = m["cleanup"], m.get("seconds", {}).get("cleanup", float("nan"))
    else:
        cfg = RunConfig.load(rd.config)
        splats, scene = read_ply(rd.scene_ply), load_scene(rd)
        t0 = time.perf_counter()
        res = run_cleanup(rd, splats, scene, int(m.get("resolution") or cfg.train.resolution), cfg.cleanup,
                          lambda s: print("   ", s, flush=True))  # fmt: skip
        secs = time.perf_counter() - t0
        c = res.record().to_json()
        m["cleanup"] = c
        m.setdefault("seconds", {})["cleanup"] = round(secs, 2)
        from splatkit.fileio import write_text_atomic

        write_text_atomic(rd.metrics, json.dumps(m, indent=2))
    n = c["kept"] + c["removed_total"]
    return {"run": rd.root.name, "splats": n, **{r: c["removed"][r] for r in RULES},
            "total": c["removed_total"], "share": c["removed_total"] / max(n, 1),
            "psnr_before": c["psnr_before"], "psnr_after": c["psnr_after"],
            "bytes_before": rd.scene_ply.stat().st_size, "bytes_after": rd.scene_clean_ply.stat().st_size,
            "seconds": secs, "levels": c["levels"]}  # fmt: skip


def far_row(rd) -> dict:
    from splatkit.export.farfield import classify
    from splatkit.export.ply import read_ply
    from splatkit.sfm.loaders import load_scene

    scene = load_scene(rd)
    centers = scene.cameras.centers[scene.train_idx]
    out = {"run": rd.root.name}
    for key, path in (("trained", rd.scene_ply), ("cleaned", rd.scene_clean_ply)):
        ff = classify(read_ply(path), centers)
        out[key] = (int(ff.larger.sum()), int(ff.farther.sum()), ff.count)
        out["extent"] = ff.extent
    return out


def export_rows(rd, dest_root: Path) -> list[dict]:
    from splatkit.export.plugins import PLUGINS
    from splatkit.export.run_folder import export_run, made_line
    from splatkit.export.unreal import UnrealExportOptions

    rows = []
    for plugin in PLUGINS:
        t0 = time.perf_counter()
        try:
            res = export_run(rd.root, UnrealExportOptions(plugin=plugin),
                             dest=dest_root / rd.root.name / plugin)
        except Exception as e:  # noqa: BLE001 - a failing default export is a result to print
            rows.append({"run": rd.root.name, "plugin": plugin, "error": f"{type(e).__name__}: {e}"})
            continue
        m = res.manifest
        m["source_ply"] = m.get("source_ply") or "?"
        sizes = [t["num_splats"] for t in m["tiles"]]
        rows.append({"run": rd.root.name, "plugin": plugin, "files": len(m["files"]),
                     "bytes": sum(f["bytes"] for f in m["files"]), "written": sum(sizes),
                     "far": (m.get("crop") or {}).get("far_field", 0), "tiles": len(sizes),
                     "smallest": min(sizes), "share": min(sizes) / max(sum(sizes), 1),
                     "seconds": time.perf_counter() - t0, "line": made_line(m)})  # fmt: skip
    return rows


def main() -> int:
    from splatkit.rundir import RunDir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    ap.add_argument("--redo", action="store_true", help="clean again even where scene_clean.ply exists")
    ap.add_argument("--no-export", action="store_true", help="cleanup and far field only")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    dest = REPO / "_runs" / "bench_export"
    clean, far, exp = [], [], []
    for run in a.runs:
        rd = RunDir(run.resolve())
        print(f"== {rd.root}", flush=True)
        clean.append(cleanup_row(rd, a.redo))
        far.append(far_row(rd))
        if not a.no_export:
            exp += export_rows(rd, dest)
    print(f"\ncommand: python scripts/bench_cleanup_export.py {' '.join(map(str, a.runs))}"
          f"{' --redo' if a.redo else ''}{' --no-export' if a.no_export else ''}")
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print("| run | splats | unseen | isolated | clearance | removed | held-out PSNR before -> after (delta) "
          "| scene.ply -> scene_clean.ply | cleanup s | levels (unseen / isolated / clearance) |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|---|")
    for r in clean:
        lv = r["levels"]
        print(f"| {r['run']} | {r['splats']:,} | {r['unseen']:,} | {r['isolated']:,} | "
              f"{r['clearance']:,} | "
              f"{r['total']:,} ({100 * r['share']:.1f}%) | {r['psnr_before']:.3f} -> {r['psnr_after']:.3f} "
              f"({r['psnr_after'] - r['psnr_before']:+.3f} dB) | {r['bytes_before'] / 2**20:.2f} -> "
              f"{r['bytes_after'] / 2**20:.2f} MiB | {r['seconds']:.0f} | "
              f"{lv['unseen']} / {lv['isolated']} / {lv['clearance']} |")  # fmt: skip
    print("\n| run | camera extent | scene.ply: larger / beyond 10x / far "
          "| scene_clean.ply: larger / beyond / far |")
    print("|---|---:|---|---|")
    for r in far:
        t, c = r["trained"], r["cleaned"]
        print(f"| {r['run']} | {r['extent']:.3g} | {t[0]:,} / {t[1]:,} / {t[2]:,} | "
              f"{c[0]:,} / {c[1]:,} / {c[2]:,} |")
    if exp:
        print("\n| run | plugin | files | MiB | splats written | far left out | tiles "
              "| smallest tile (share) | s |")
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for r in exp:
            if "error" in r:
                print(f"| {r['run']} | {r['plugin']} | FAILED: {r['error']} |||||||")
                continue
            print(f"| {r['run']} | {r['plugin']} | {r['files']} | {r['bytes'] / 2**20:.2f} | "
                  f"{r['written']:,} | {r['far']:,} | {r['tiles']} | {r['smallest']:,} "
                  f"({100 * r['share']:.1f}%) | {r['seconds']:.1f} |")
        print()
        for r in exp:
            if "line" in r:
                print(f"    {r['run']}/{r['plugin']}: {r['line']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
