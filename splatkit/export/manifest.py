"""Writing an Unreal export: each tile's files, the optional collision mesh, and the manifest.

The manifest ``<name>.unreal.json`` (``splatkit_manifest`` 2) is what
``unreal_export/import_splat.py`` reads:

- ``plugin``, ``verified``, ``factory_class`` (the import factory to pin), ``destination_path``;
- ``tiles``: one entry per file set, each with its ``files`` and the actor placement
  (``location_cm`` in Unreal, ``rotation_deg``, ``scale``): the splats of a tile are stored
  relative to its origin; ``files`` lists every file of every tile;
- ``collision``: the collision mesh (file, format, triangles, placement) or null;
- ``sky``: the learned sky as an equirectangular PNG in Unreal's axes (file, size, the
  direction -> texture mapping, sky-sphere radius; :mod:`splatkit.export.sky_export`) or null;
- ``scale_source``, ``metres_per_unit``, ``scale_uncertainty``, ``up`` and the full
  ``frame`` (``sfm_to_ply_4x4`` of the untiled scene, candidates), ``num_splats``, ``crop``,
  ``far_field`` (what :mod:`splatkit.export.farfield` left out, null when kept),
  ``limits`` and ``messages`` (what was dropped, shrunk or would cost quality).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from splatkit import frames as F
from splatkit.export import crop as C
from splatkit.export import limits as L
from splatkit.export import tiles as T
from splatkit.export.plugins import PluginPreset
from splatkit.fileio import write_text_atomic
from splatkit.splats import Splats

MANIFEST_VERSION = 2
#: The editor script, copied beside the manifest so that Tools > Execute Python Script finds it:
#: in an installed splatkit the wheel's copy (``setup.py`` puts it in the package), in a source
#: checkout (or an editable install) the repository's ``unreal_export/import_splat.py``.
EDITOR_SCRIPT_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "unreal_export" / "import_splat.py",
    Path(__file__).resolve().parents[2] / "unreal_export" / "import_splat.py",
)


def editor_script() -> Path:
    """The Unreal editor script every export carries (an installation without it is broken)."""
    for path in EDITOR_SCRIPT_CANDIDATES:
        if path.is_file():
            return path
    raise RuntimeError(f"splatkit's Unreal editor script is missing (looked at "
                       f"{', '.join(map(str, EDITOR_SCRIPT_CANDIDATES))}): reinstall splatkit")


@dataclass
class ExportJob:
    """Everything the writers need besides the splats."""

    options: object
    preset: PluginPreset
    formats: list[str]
    sh_degree: int
    out_dir: Path
    name: str
    frame: dict
    crop: C.CropReport
    counts: dict
    messages: list[str] = field(default_factory=list)
    checks: list = field(default_factory=list)
    #: ``(SkyMap, SfM -> upright similarity)`` when the run learned a sky, else None
    sky: tuple | None = None


def _placement(origin_upright: torch.Tensor) -> dict:
    loc = F.upright_to_ue(origin_upright[None].double())[0]
    return {
        "location_cm": [round(float(v), 4) for v in loc],
        "rotation_deg": [0.0, 0.0, 0.0],
        "scale": [1.0, 1.0, 1.0],
    }


def _write_tile(
    job: ExportJob, s_up: Splats, ply_all: Splats, tile: T.Tile, name: str
) -> tuple[dict, list[Path]]:
    from splatkit.export.formats import write_format
    from splatkit.export.gltf import write_glb

    R_p = F.upright_to_ply(job.preset.ply_axes)
    local = T.local_splats(ply_all, tile, R_p)
    chk = L.check(local, job.options.plugin, where=name)
    job.checks.append(chk)
    local = L.apply(local, job.options.plugin)
    paths, files = [], []
    for fmt in job.formats:
        if fmt == "glb":
            up_local = s_up.index(tile.index)
            up_local = Splats(
                **{**up_local.as_dict(), "means": up_local.means - tile.origin.to(up_local.means.dtype)}
            )
            g = F.transform_splats(
                up_local, F.Similarity(F.upright_to_gltf(), torch.zeros(3, dtype=torch.float64))
            )
            p = write_glb(g, job.out_dir / f"{name}.glb", sh_degree=job.sh_degree)
        else:
            p = write_format(local, job.out_dir, name, fmt, sh_degree=job.sh_degree)
        paths.append(p)
        files.append({"path": p.name, "format": fmt, "bytes": p.stat().st_size})
    entry = {
        "name": name,
        "files": files,
        "num_splats": len(local),
        **_placement(tile.origin),
        "limits": chk.as_dict(),
    }
    if getattr(job.options, "lod", 1) > 1:
        entry["lods"], p = _write_lods(job, T.local_splats(ply_all, tile, R_p), name)
        paths += p
    return entry, paths


def _write_lods(job: ExportJob, local: Splats, name: str) -> tuple[list[dict], list[Path]]:
    """The tile's coarser levels (:mod:`splatkit.export.lod`), one file set each; level 0 is the
    tile's own files. Distances in Unreal centimetres (the splats are in metres)."""
    from splatkit.export.formats import write_format
    from splatkit.export.lod import build_levels

    levels = build_levels(local, levels=job.options.lod)
    out, paths = [{"level": 0, "from_cm": 0.0, "num_splats": len(local)}], []
    for lv in levels[1:]:
        s = L.apply(lv.splats, job.options.plugin)
        fmts = [f for f in job.formats if f != "glb"] or ["ply"]
        files = []
        for fmt in fmts:
            p = write_format(s, job.out_dir, f"{name}_lod{lv.index}", fmt, sh_degree=job.sh_degree)
            paths.append(p)
            files.append({"path": p.name, "format": fmt, "bytes": p.stat().st_size})
        out.append({"level": lv.index, "from_cm": round(lv.distance * 100, 1), "num_splats": len(s),
                    "files": files})
    for a, b in zip(out, out[1:], strict=False):
        a["to_cm"] = b["from_cm"]
    return out, paths


def _write_collision(job: ExportJob, s_up: Splats, cams_up) -> tuple[dict | None, list[Path]]:
    if job.options.collision == "none":
        return None, []
    from splatkit.export import collision as K

    if cams_up is None:
        job.messages.append("no collision mesh: it needs the camera poses")
        return None, []
    mesh = K.build(s_up, cams_up)
    if len(mesh.faces) == 0:
        job.messages.append("no collision mesh: the depth maps gave no surface")
        return None, []
    path = K.write(mesh, job.out_dir / f"{job.name}_collision.{job.options.collision}")
    entry = {
        "path": path.name,
        "format": job.options.collision,
        "triangles": int(len(mesh.faces)),
        "voxel_m": mesh.voxel_m,
        "seconds": round(mesh.seconds, 2),
        "axes": "glTF: +Y up, metres; Unreal's glTF/OBJ import maps (x, y, z) to (x, z, y) x 100",
        **_placement(torch.zeros(3, dtype=torch.float64)),
    }
    return entry, [path]


def write_all(job: ExportJob, s_up: Splats, tiles: list[T.Tile], cams_up) -> list[Path]:
    """Write every tile, the collision mesh, the editor script and the manifest (last)."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    R_p = F.upright_to_ply(job.preset.ply_axes)
    ply_all = F.transform_splats(s_up, F.Similarity(R_p, torch.zeros(3, dtype=torch.float64)))
    entries, paths = [], []
    for tile in tiles:
        name = job.name if len(tiles) == 1 else job.name + tile.suffix
        entry, p = _write_tile(job, s_up, ply_all, tile, name)
        entries.append(entry)
        paths += p
    job.counts["written"] = sum(e["num_splats"] for e in entries)
    job.messages += limit_lines(job.checks)
    collision, p = _write_collision(job, s_up, cams_up)
    paths += p
    sky, p = _write_sky(job, s_up)
    paths += p
    source = editor_script()
    script = job.out_dir / source.name
    shutil.copyfile(source, script)
    paths.append(script)
    mpath = job.out_dir / f"{job.name}.unreal.json"
    write_text_atomic(mpath, json.dumps(manifest(job, entries, collision, sky), indent=2))
    return paths + [mpath]


def _write_sky(job: ExportJob, s_up: Splats) -> tuple[dict | None, list[Path]]:
    if job.sky is None or job.sky[0] is None:
        return None, []
    from splatkit.export.sky_export import sky_radius_cm, write_sky

    entry, path = write_sky(job.sky[0], job.sky[1], job.out_dir, job.name, sky_radius_cm(s_up.means))
    job.messages.append(f"sky: {path.name} ({entry['width']}x{entry['height']} panorama), placed as "
                        "the level's sky by import_splat.py")  # fmt: skip
    return entry, [path]


def limit_lines(checks: list) -> list[str]:
    """What the plugin's limits cost, said once: a single file's own lines, or for tiles one
    line for those that still round too much (and the totals shrunk or out of range)."""
    if len(checks) == 1:
        return checks[0].lines
    out = []
    bad = [c for c in checks if c.position_error_m > L.QUALITY_FRACTION * c.typical_size_m]
    if bad:
        worst = max(bad, key=lambda c: c.position_error_m / max(c.typical_size_m, 1e-12))
        err, typ = 100 * worst.position_error_m, 100 * worst.typical_size_m
        out.append(f"{len(bad)} of {len(checks)} tiles: {worst.plugin} still rounds positions by up to "
                   f"{err:.2g} cm (typical splat {typ:.2g} cm), mostly from the scene's height: "
                   "--drop-background or --crop help there.")  # fmt: skip
    for key, what in (
        ("oversized", "shrunk to the plugin's largest size"),
        ("out_of_range", "out of range, dropped"),
    ):
        n = sum(getattr(c, key) for c in checks)
        if n:
            out.append(f"{n:,} splats {what}")
    return out


def manifest(job: ExportJob, tiles: list[dict], collision: dict | None, sky: dict | None = None) -> dict:
    """The manifest as a dict (see the module docstring)."""
    o, p, fr = job.options, job.preset, job.frame
    return {
        "splatkit_manifest": MANIFEST_VERSION,
        "name": job.name,
        "plugin": o.plugin,
        "plugin_title": p.title,
        "verified": p.verified,
        "factory_class": p.factory_class,
        "factory_import": p.factory_import,
        "destination_path": f"/Game/Splats/{job.name}",
        "tiles": tiles,
        "files": [f for t in tiles for f in t["files"]],
        "actor": {k: tiles[0][k] for k in ("location_cm", "rotation_deg", "scale")},
        "collision": collision,
        "sky": sky,
        "scale_source": fr["scale_source"],
        "metres_per_unit": fr["metres_per_unit"],
        "scale_uncertainty": fr["scale_uncertainty"],
        "up": fr["up"],
        "num_splats": job.counts,
        "crop": job.crop.counts,
        "far_field": job.crop.far_field,
        "sh_degree": job.sh_degree,
        "frame": {
            **fr,
            "ply_to_ue": p.ply_axes,
            "ply_units": "metres (the plugin multiplies by 100)",
        },
        "messages": job.crop.lines + job.messages,
        "options": dataclasses.asdict(o),
        "note": p.note,
    }
