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
from splatkit.rundir import RunDir


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
    """Export the run in ``out_dir`` for Unreal into ``dest`` (default ``out_dir/unreal``)."""
    from splatkit.cleanup import scene_path
    from splatkit.export.ply import read_ply
    from splatkit.export.scale import read_photo_gps

    rd = RunDir(Path(out_dir))
    check_finished(rd.root)
    options = options or UnrealExportOptions()
    source = scene_path(rd, options.cleanup)
    splats = read_ply(source)
    scene = None
    if rd.sparse.is_dir():
        from splatkit.sfm.loaders import load_scene

        scene = load_scene(rd.root)
    paths = export_unreal(
        splats, scene, Path(dest) if dest else rd.unreal, options, gps=read_photo_gps(rd.root)
    )
    return ExportResult(paths, {**json.loads(paths[-1].read_text(encoding="utf-8")),
                                "source_ply": source.name})


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
        far_txt = f"sky: {sky.get('path', sky) if isinstance(sky, dict) else sky}"
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
