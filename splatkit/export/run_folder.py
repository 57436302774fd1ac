"""One run-folder export for every front end: ``splatkit export``, ``splatkit train --export
unreal`` and the classroom server's Unreal zip all call :func:`export_run`.

It reads what a run left in its output folder (``scene.ply``, the poses in ``sparse/0``, the
photos' GPS recorded by ingest), says in two lines why when the run has not finished, and writes
``OUT/unreal/`` (or another folder) with :func:`splatkit.export.unreal.export_unreal`.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from splatkit.errors import UserError
from splatkit.export.unreal import UnrealExportOptions, export_unreal
from splatkit.fileio import write_text_atomic
from splatkit.rundir import RunDir, check_layout
from splatkit.runlock import writing


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the files (manifest last) and the manifest's content."""

    paths: list[Path]
    manifest: dict = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.paths[-1]


def _photos_source(rd: RunDir) -> str:
    """The photos the run was started on (the run's record, else ingest's), for our commands."""
    from splatkit.ingest.photos import MANIFEST

    rec = rd.read_record()
    if rec is not None and rec.source:
        return shlex.quote(rec.source)
    try:
        return shlex.quote(str(json.loads((rd.work_images / MANIFEST).read_text(encoding="utf-8"))["src"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "PHOTOS"


def check_finished(out_dir: Path) -> None:
    """Raise a two-line UserError saying why ``out_dir`` has nothing to export yet."""
    rd = RunDir(Path(out_dir))
    q = shlex.quote(str(rd.root))
    if not rd.root.is_dir():
        raise UserError(
            f"There is no folder {rd.root}.", "Give the output folder that `splatkit train` wrote."
        )
    check_layout(rd)
    if rd.scene_ply.is_file():
        return
    src = _photos_source(rd)
    if rd.checkpoints.is_dir() and any(rd.checkpoints.glob("*.pt")):
        raise UserError(
            f"training has not finished: {rd.root} has checkpoints but no {rd.scene_ply.name} yet.",
            f"resume with `splatkit train {src} -o {q} --resume`",
        )
    if rd.sparse.is_dir():
        raise UserError(
            f"{rd.root} holds camera poses only (no {rd.scene_ply.name}): nothing is trained yet.",
            f"train with `splatkit train {src} -o {q}`",
        )
    raise UserError(
        f"{rd.root} is not a splatkit output folder (no {rd.scene_ply.name}).",
        "Give the folder `splatkit train` wrote, or run `splatkit train PHOTOS -o OUT` first.",
    )


def export_run(
    out_dir: Path, options: UnrealExportOptions | None = None, dest: Path | None = None
) -> ExportResult:
    """Export the run in ``out_dir`` for Unreal into ``dest`` (default ``out_dir/unreal``).

    An export writes in the run folder, so it holds the folder's writer lock while it reads the
    scene and writes: it never runs beside training (a live run is named as such) nor writes an
    earlier scene's export into a run that replaced it. An earlier export in ``OUT/unreal`` made
    with other settings is moved to ``OUT/previous/unreal-<time>/`` (and said), not replaced.
    """
    rd = RunDir(Path(out_dir))
    if not rd.meta.is_dir():  # not a folder splatkit keeps: say why before adding anything to it
        check_finished(rd.root)
    with writing(rd.root, "export") as rd:
        return _export_locked(rd, options or UnrealExportOptions(), dest)


def _export_locked(rd: RunDir, options: UnrealExportOptions, dest: Path | None) -> ExportResult:
    from splatkit.export.ply import read_ply
    from splatkit.export.scale import read_photo_gps

    check_finished(rd.root)
    record = rd.read_record()
    source = rd.scene_in_use(options.cleanup)
    splats = read_ply(source)
    scene = None
    if rd.sparse.is_dir():
        from splatkit.sfm.loaders import load_scene

        scene = load_scene(rd)
    sky = None
    if rd.sky.is_file():
        from splatkit.sky import load as load_sky

        sky = load_sky(rd.sky)
    target = Path(dest) if dest else rd.unreal
    notes = _keep_other_export(rd, target, options, record) if dest is None else []
    paths = export_unreal(splats, scene, target, options, gps=read_photo_gps(rd.root), sky=sky)
    manifest = json.loads(paths[-1].read_text(encoding="utf-8"))
    manifest["run_id"] = record.run_id if record else ""  # which run this export came from
    manifest["messages"] = list(manifest.get("messages", [])) + notes
    manifest["source_ply"] = source.name  # the cleaned scene, or scene.ply as trained
    write_text_atomic(paths[-1], json.dumps(manifest, indent=2))
    return ExportResult(paths, manifest)


def _keep_other_export(rd: RunDir, target: Path, options, record) -> list[str]:
    """Move an earlier export with other settings out of ``target`` (kept, and said)."""
    import dataclasses
    import shutil
    import time

    earlier = [rd.read_json_object(p) or {} for p in sorted(target.glob("*.unreal.json"))]
    if not earlier or all(m.get("options") == json.loads(json.dumps(dataclasses.asdict(options)))
                          for m in earlier):
        return []
    dest = rd.previous / ("unreal-" + time.strftime("%Y%m%d-%H%M%S"))
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(dest.name.split("~")[0] + f"~{n}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(target), str(dest))
    if record is not None:
        record.written |= {rd.previous.name, rd.unreal.name}
        rd.write_record(record)
    what = ", ".join(_changed(earlier[0].get("options") or {}, dataclasses.asdict(options)))
    return [f"The earlier export in {target} was made with other settings ({what}); it was kept "
            f"in {dest}."]


def _changed(old: dict, new: dict) -> list[str]:
    keys = sorted(k for k in set(old) | set(new) if json.dumps(old.get(k)) != json.dumps(new.get(k)))
    return [f"{k} {old.get(k)} -> {new.get(k)}" for k in keys[:4]] or ["other settings"]


def made_line(m: dict) -> str:
    """One line: what the export made (files, splats, tiles, far field or sky)."""
    tiles = m.get("tiles", [])
    sizes = [t["num_splats"] for t in tiles]
    n_files = len(m.get("files", []))
    tile_txt = (f"in {len(tiles)} tiles (smallest {min(sizes):,})" if len(tiles) > 1
                else "in 1 file set")  # fmt: skip
    far = (m.get("crop") or {}).get("far_field")
    sky = m.get("sky")
    if sky:
        name = sky.get("path", sky.get("file", "panorama")) if isinstance(sky, dict) else sky
        far_txt = f"sky: {name}" + (f" ({far:,} far splats went to it)" if far else "")
    elif far is None:
        far_txt = "far field kept"
    else:
        far_txt = f"sky: none, {far:,} far splats dropped"
    src = f" from {m['source_ply']}" if m.get("source_ply") else ""
    return (f"made {n_files} files for {m.get('plugin')}: {sum(sizes):,} splats {tile_txt}{src}; "
            f"{far_txt}")


def summary_lines(result: ExportResult) -> list[str]:
    """What to tell the user: what was made, files, up, scale (with every candidate), warnings,
    next step."""
    m = result.manifest
    out = ["Unreal export: " + made_line(m)] + [f"  {p}" for p in result.paths]
    out.append(f"  up: {m['up']} (to override: --up -y, or +z, ...)")
    for c in m["frame"].get("scale_candidates", []):
        unc = "?" if c["uncertainty"] is None else f"{100 * c['uncertainty']:.1f}%"
        out.append(
            f"  scale candidate {c['source']}: {c['metres_per_unit']:.4g} m/unit +-{unc} ({c['detail']})"
        )
    out.append(
        f"  scale used: {m['frame']['scale']} "
        "(to override: --known-distance A.jpg,B.jpg,METRES, --known-size, --scale N)"
    )
    if m["scale_source"] == "eye-height":
        out.append("  note: eye height is a heuristic; measure one distance for true scale")
    out += [f"  {line}" for line in m.get("messages", [])]
    if len(m["tiles"]) > 1:
        out.append(f"  {len(m['tiles'])} tiles, placed by the manifest")
    script = result.manifest_path.parent / "import_splat.py"
    out.append(f"  in Unreal: Tools > Execute Python Script > {script}")
    return out


def print_result(result: ExportResult) -> None:
    print("\n".join(summary_lines(result)))
