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

SCENE_PLY = "scene.ply"
SPARSE = Path("sparse") / "0"
CHECKPOINTS = "checkpoints"


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the files (manifest last) and the manifest's content."""

    paths: list[Path]
    manifest: dict = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.paths[-1]


def _photos_source(out_dir: Path) -> str:
    """The photos the run was started on (ingest's record), for the command we suggest."""
    from splatkit.ingest.photos import MANIFEST

    try:
        src = json.loads((out_dir / "work" / "images" / MANIFEST).read_text(encoding="utf-8"))["src"]
        return shlex.quote(str(src))
    except (OSError, ValueError, KeyError, TypeError):
        return "PHOTOS"


def check_finished(out_dir: Path) -> None:
    """Raise a two-line UserError saying why ``out_dir`` has nothing to export yet."""
    q = shlex.quote(str(out_dir))
    if not out_dir.is_dir():
        raise UserError(
            f"There is no folder {out_dir}.", "Give the output folder that `splatkit train` wrote."
        )
    if (out_dir / SCENE_PLY).is_file():
        return
    src = _photos_source(out_dir)
    ckpt = out_dir / CHECKPOINTS
    if ckpt.is_dir() and any(ckpt.glob("*.pt")):
        raise UserError(
            f"training has not finished: {out_dir} has checkpoints but no {SCENE_PLY} yet.",
            f"resume with `splatkit train {src} -o {q} --resume`",
        )
    if (out_dir / SPARSE).is_dir():
        raise UserError(
            f"{out_dir} holds camera poses only (no {SCENE_PLY}): nothing is trained yet.",
            f"train with `splatkit train {src} -o {q}`",
        )
    raise UserError(
        f"{out_dir} is not a splatkit output folder (no {SCENE_PLY}).",
        "Give the folder `splatkit train` wrote, or run `splatkit train PHOTOS -o OUT` first.",
    )


def export_run(
    out_dir: Path, options: UnrealExportOptions | None = None, dest: Path | None = None
) -> ExportResult:
    """Export the run in ``out_dir`` for Unreal into ``dest`` (default ``out_dir/unreal``)."""
    from splatkit.export.ply import read_ply
    from splatkit.export.scale import read_photo_gps

    out_dir = Path(out_dir)
    check_finished(out_dir)
    options = options or UnrealExportOptions()
    splats = read_ply(out_dir / SCENE_PLY)
    scene = None
    if (out_dir / SPARSE).is_dir():
        from splatkit.sfm.loaders import load_scene

        scene = load_scene(out_dir)
    paths = export_unreal(
        splats, scene, Path(dest) if dest else out_dir / "unreal", options, gps=read_photo_gps(out_dir)
    )
    return ExportResult(paths, json.loads(paths[-1].read_text(encoding="utf-8")))


def summary_lines(result: ExportResult) -> list[str]:
    """What to tell the user: files, up, scale (with every candidate), warnings, next step."""
    m = result.manifest
    out = ["Unreal export:"] + [f"  {p}" for p in result.paths]
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
