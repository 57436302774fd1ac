"""Unreal Editor Python: import a splatkit export and place it in the level.

``splatkit export`` copies this script beside the manifest (``OUT/unreal/import_splat.py``), so
any of these works:

- **Tools > Execute Python Script**, pick ``OUT/unreal/import_splat.py``: it imports the newest
  ``*.unreal.json`` in its own folder;
- the editor's Python console: ``import sys; sys.path.append("C:/out/unreal"); import
  import_splat; import_splat.main(["C:/out/unreal"])`` (a manifest or a folder);
- headless, where the level is saved at the end::

      UnrealEditor-Cmd.exe Project.uproject -run=pythonscript
          -script="C:/out/unreal/import_splat.py C:/out/unreal --level /Game/Maps/Main"

What it does: for every tile of the manifest, checks the file is one the plugin's importer
accepts (Italink's importer crashes the editor on a file it cannot parse, so that is checked
first), imports it with ``unreal.AssetImportTask`` and the plugin's own import factory
(``factory_class``; when that class is missing the plugin is not enabled, and nothing is
imported rather than letting another plugin's ``.ply`` importer try), spawns an actor at the
tile's place; imports the collision mesh, if any, as a static mesh with complex collision,
hidden in game; imports the sky panorama, if any, and shows it on a sky sphere (Unreal's
``/Engine/BasicShapes/Sphere`` scaled around the scene) whose unlit, two-sided material looks
the texture up by the view direction (``SKY_UV_HLSL``: the manifest's ``sky.mapping``), so the
sky stays at infinity and aligned with the splats wherever the camera goes; saves the level
when running headless (or with ``--save``). Every failure is
reported in the returned dict and the log, not raised. Standard library and ``unreal`` only.
"""

from __future__ import annotations

import glob
import json
import os
import sys

IMPORTABLE = (".ply", ".spz")
ITALINK_MAX_SPLATS = 10 * 1024 * 1024  # splatkit.export.plugins (Unreal cannot import splatkit)
ENV_FOLDER = "SPLATKIT_UNREAL_EXPORT"


class ImportProblem(Exception):
    """An expected failure, reported to the user in one line."""


# --------------------------------------------------------------------------------------------
# Finding and reading the manifest


def find_manifest(arg):
    """A manifest path from ``arg`` (a manifest, or a folder: its newest ``*.unreal.json``)."""
    if arg and os.path.isfile(arg):
        return os.path.abspath(arg)
    folder = arg or os.environ.get(ENV_FOLDER) or _script_folder()
    if not folder or not os.path.isdir(folder):
        raise ImportProblem(
            f"no manifest: {arg or folder!r} is neither a manifest nor a folder; "
            "give OUT/unreal or OUT/unreal/<name>.unreal.json"
        )
    found = glob.glob(os.path.join(folder, "*.unreal.json"))
    if not found:
        raise ImportProblem(f"no *.unreal.json in {folder}; run `splatkit export OUT --for unreal` first")
    return os.path.abspath(max(found, key=os.path.getmtime))


def _script_folder():
    f = globals().get("__file__")
    return os.path.dirname(os.path.abspath(f)) if f else None


def load_manifest(path):
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise ImportProblem(f"cannot read {path}: {e}") from None
    if m.get("splatkit_manifest") not in (1, 2):
        raise ImportProblem(f"{path} is not a splatkit Unreal manifest")
    if "tiles" not in m:  # version 1: one file set at the manifest's actor placement
        m["tiles"] = [{"name": m["name"], "files": m["files"], **m["actor"]}]
    return m


def pick_file(files, folder):
    for ext in IMPORTABLE:
        for f in files:
            if f["path"].lower().endswith(ext) and not f["path"].endswith(".compressed.ply"):
                return os.path.join(folder, f["path"])
    raise ImportProblem("the manifest lists no .ply or .spz file")


# --------------------------------------------------------------------------------------------
# Checking a file before an importer sees it


def ply_header(path):
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    end = head.find(b"end_header\n")
    if not head.startswith(b"ply\n") or end < 0:
        raise ImportProblem(f"{os.path.basename(path)} is not a PLY file")
    return head[: end + len(b"end_header\n")].decode("ascii", "replace")


def check_file(path, plugin):
    """Raise ImportProblem if ``plugin``'s importer would reject ``path`` (or crash on it)."""
    if not os.path.isfile(path):
        raise ImportProblem(f"missing file {path}")
    if not path.lower().endswith(".ply"):
        return
    header = ply_header(path)
    lines = header.splitlines()
    if lines[1] != "format binary_little_endian 1.0":
        raise ImportProblem(f"{os.path.basename(path)}: not binary little-endian PLY")
    props = [ln.split() for ln in lines if ln.startswith("property ")]
    try:
        n = int(next(ln for ln in lines if ln.startswith("element vertex ")).split()[2])
    except (StopIteration, ValueError, IndexError):
        raise ImportProblem(f"{os.path.basename(path)}: no vertex count") from None
    sizes = {"float": 4, "double": 8, "uchar": 1, "int": 4, "short": 2}
    stride = sum(sizes.get(p[1], 4) for p in props)
    if os.path.getsize(path) < len(header) + n * stride:
        raise ImportProblem(f"{os.path.basename(path)} is truncated ({n} splats announced)")
    if plugin == "italink":
        ok = lines[2].startswith("element vertex ") and all(p[1] == "float" for p in props)
        if not ok or not 0 < n <= ITALINK_MAX_SPLATS:
            raise ImportProblem(
                f"{os.path.basename(path)}: Italink's strict PLY reader would fail "
                "on it (and crash the editor); re-export with --plugin italink"
            )


# --------------------------------------------------------------------------------------------
# Unreal calls


def make_factory(unreal, class_path):
    """An instance of the import factory ``class_path`` (None: let Unreal pick by extension)."""
    if not class_path:
        return None
    cls = unreal.load_class(None, class_path)
    if cls is None:
        raise ImportProblem(
            f"import factory {class_path} not found: is the plugin enabled "
            "(Edit > Plugins)? Nothing was imported."
        )
    return unreal.new_object(cls)


def import_file(unreal, filename, destination_path, name, factory=None):
    task = unreal.AssetImportTask()
    for k, v in (
        ("filename", filename),
        ("destination_path", destination_path),
        ("destination_name", name),
        ("automated", True),
        ("replace_existing", True),
        ("save", True),
    ):
        task.set_editor_property(k, v)
    if factory is not None:
        task.set_editor_property("factory", factory)
    unreal.AssetToolsHelpers.get_asset_tools().import_asset_tasks([task])
    paths = list(task.get_editor_property("imported_object_paths") or [])
    if not paths:
        raise ImportProblem(f"nothing was imported from {os.path.basename(filename)}")
    return unreal.EditorAssetLibrary.load_asset(main_asset(paths, name)), paths


def main_asset(paths, name):
    """Of the objects an import made (some importers add materials, textures, Niagara systems),
    the one named after the file, else the first."""
    for p in paths:
        leaf = p.rsplit("/", 1)[-1]
        if leaf == name or leaf == f"{name}.{name}":
            return p
    return paths[0]


def spawn(unreal, asset, place, label):
    loc = unreal.Vector(*place["location_cm"])
    roll, pitch, yaw = place["rotation_deg"]
    subsystem = unreal.get_editor_subsystem(unreal.EditorActorSubsystem)
    actor = subsystem.spawn_actor_from_object(asset, loc, unreal.Rotator(roll, pitch, yaw))
    if actor is None:
        raise ImportProblem(
            f"imported {label}, but no actor could be spawned from it; drag it "
            "from the Content Browser into the level"
        )
    actor.set_actor_scale3d(unreal.Vector(*place["scale"]))
    actor.set_actor_label(label)
    return actor


def import_tile(unreal, m, tile, folder, factory):
    out = {"name": tile["name"], "ok": False}
    try:
        filename = pick_file(tile["files"], folder)
        out["file"] = filename
        check_file(filename, m["plugin"])
        asset, paths = import_file(unreal, filename, m["destination_path"], tile["name"], factory)
        out["imported"] = paths
        actor = spawn(unreal, asset, tile, tile["name"])
        out["actor"] = actor.get_name()
        lods = tile.get("lods") or []
        if len(lods) > 1:
            set_draw_range(unreal, actor, 0.0, lods[0].get("to_cm"))
            out["lods"] = [import_lod(unreal, m, tile, lod, folder, factory) for lod in lods[1:]]
        out["ok"] = True
    except ImportProblem as e:
        out["error"] = str(e)
        unreal.log_error(f"splatkit import: {tile['name']}: {e}")
    return out


def set_draw_range(unreal, actor, near_cm, far_cm):
    """Show the actor only between ``near_cm`` and ``far_cm`` from the camera (its components'
    min and max draw distances: Unreal switches the levels of detail by distance itself)."""
    comps = actor.get_components_by_class(unreal.PrimitiveComponent) or []
    for c in comps:
        if near_cm:
            c.set_editor_property("min_draw_distance", float(near_cm))
        if far_cm:
            c.set_editor_property("ld_max_draw_distance", float(far_cm))
    return len(comps)


def import_lod(unreal, m, tile, lod, folder, factory):
    """A tile's coarser level: its own asset and actor at the tile's place, drawn only within its
    distances; the coarsest level stays loaded when World Partition unloads the tile's cell, so
    far tiles still show."""
    label = f"{tile['name']}_lod{lod['level']}"
    filename = pick_file(lod["files"], folder)
    check_file(filename, m["plugin"])
    asset, _ = import_file(unreal, filename, m["destination_path"], label, factory)
    actor = spawn(unreal, asset, tile, label)
    set_draw_range(unreal, actor, lod.get("from_cm"), lod.get("to_cm"))
    if "to_cm" not in lod:
        actor.set_editor_property("is_spatially_loaded", False)
    return {"level": lod["level"], "actor": actor.get_name(), "from_cm": lod.get("from_cm")}


def import_collision(unreal, m, folder):
    c = m["collision"]
    out = {"file": c["path"], "ok": False}
    try:
        path = os.path.join(folder, c["path"])
        if not os.path.isfile(path):
            raise ImportProblem(f"missing file {path}")
        asset, paths = import_file(unreal, path, m["destination_path"], m["name"] + "_collision")
        body = asset.get_editor_property("body_setup")
        if body is not None:
            body.set_editor_property(
                "collision_trace_flag", unreal.CollisionTraceFlag.CTF_USE_COMPLEX_AS_SIMPLE
            )
        actor = spawn(unreal, asset, c, m["name"] + "_collision")
        actor.set_actor_hidden_in_game(True)
        out.update(imported=paths, actor=actor.get_name(), ok=True)
    except ImportProblem as e:
        out["error"] = str(e)
        unreal.log_error(f"splatkit import: collision: {e}")
    return out


#: The sky material's lookup: the view direction (the negated CameraVectorWS) in Unreal's world
#: axes -> equirectangular UV, as splatkit/panorama.py writes the panorama.
SKY_UV_HLSL = (
    "float3 d = normalize(-V);\n"
    "float u = 0.5 + atan2(d.y, d.x) / 6.283185307179586;\n"
    "float v = 0.5 - asin(clamp(d.z, -1.0, 1.0)) / 3.141592653589793;\n"
    "return float2(u, v);"
)
SKY_MESH = "/Engine/BasicShapes/Sphere"
#: The engine sphere's radius in centimetres (a 1 m sphere).
SKY_MESH_RADIUS_CM = 50.0


def sky_texture(unreal, tex):
    """Settings that keep the panorama exact: no mips (no seam where u wraps), sRGB, wrap in u."""
    for k, v in (
        ("mip_gen_settings", unreal.TextureMipGenSettings.TMGS_NO_MIPMAPS),
        ("srgb", True),
        ("address_x", unreal.TextureAddress.TA_WRAP),
        ("address_y", unreal.TextureAddress.TA_CLAMP),
    ):
        tex.set_editor_property(k, v)
    return tex


def sky_material(unreal, name, destination, tex):
    """An unlit two-sided material: emissive = the panorama at the view direction's UV."""
    tools = unreal.AssetToolsHelpers.get_asset_tools()
    mat = tools.create_asset(name, destination, unreal.Material, unreal.MaterialFactoryNew())
    if mat is None:
        raise ImportProblem(f"could not create the sky material {destination}/{name}")
    mat.set_editor_property("shading_model", unreal.MaterialShadingModel.MSM_UNLIT)
    mat.set_editor_property("two_sided", True)
    mel = unreal.MaterialEditingLibrary
    cam = mel.create_material_expression(mat, unreal.MaterialExpressionCameraVectorWS, -900, 0)
    uv = mel.create_material_expression(mat, unreal.MaterialExpressionCustom, -600, 0)
    uv.set_editor_property("code", SKY_UV_HLSL)
    uv.set_editor_property("output_type", unreal.CustomMaterialOutputType.CMOT_FLOAT2)
    uv.set_editor_property("inputs", [unreal.CustomInput(input_name="V")])
    sample = mel.create_material_expression(mat, unreal.MaterialExpressionTextureSample, -300, 0)
    sample.set_editor_property("texture", tex)
    mel.connect_material_expressions(cam, "", uv, "V")
    mel.connect_material_expressions(uv, "", sample, "UVs")
    mel.connect_material_property(sample, "RGB", unreal.MaterialProperty.MP_EMISSIVE_COLOR)
    mel.recompile_material(mat)
    return mat


def import_sky(unreal, m):
    """Import the sky panorama and put it in the level on a sky sphere; returns a report."""
    s = m["sky"]
    out = {"file": s["path"], "ok": False}
    try:
        path = os.path.join(m["_folder"], s["path"])
        if not os.path.isfile(path):
            raise ImportProblem(f"missing file {path}")
        name = m["name"] + "_sky"
        tex, paths = import_file(unreal, path, m["destination_path"], name)
        sky_texture(unreal, tex)
        mat = sky_material(unreal, "M_" + name, m["destination_path"], tex)
        mesh = unreal.EditorAssetLibrary.load_asset(SKY_MESH)
        r = float(s["radius_cm"]) / SKY_MESH_RADIUS_CM
        actor = spawn(unreal, mesh, {**s, "scale": [r, r, r]}, name)
        comp = actor.get_component_by_class(unreal.StaticMeshComponent)
        comp.set_material(0, mat)
        comp.set_editor_property("cast_shadow", False)
        comp.set_collision_enabled(unreal.CollisionEnabled.NO_COLLISION)
        out.update(imported=paths, material=mat.get_path_name(), actor=actor.get_name(), ok=True)
    except ImportProblem as e:
        out["error"] = str(e)
        unreal.log_error(f"splatkit import: sky: {e}")
    return out


def headless(unreal):
    try:
        cmd = unreal.SystemLibrary.get_command_line().lower()
    except AttributeError:
        return False
    return "-run=pythonscript" in cmd or "-unattended" in cmd


def parse_args(argv):
    args = {"manifest": None, "level": None, "save": False}
    it = iter(argv)
    for a in it:
        if a == "--level":
            args["level"] = next(it, None)
        elif a == "--save":
            args["save"] = True
        elif args["manifest"] is None:
            args["manifest"] = a
    return args


def main(argv=None):
    """Import and place everything the manifest names; returns a report (also logged)."""
    import unreal

    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = {"ok": False, "tiles": [], "collision": None, "sky": None, "saved": False}
    try:
        path = find_manifest(args["manifest"])
        m = load_manifest(path)
        report.update(manifest=path, plugin=m["plugin"], destination=m["destination_path"])
        levels = unreal.get_editor_subsystem(unreal.LevelEditorSubsystem)
        if args["level"] and not levels.load_level(args["level"]):
            raise ImportProblem(f"could not open level {args['level']}")
        factory = make_factory(unreal, m.get("factory_class"))
    except ImportProblem as e:
        report["error"] = str(e)
        unreal.log_error(f"splatkit import: {e}")
        return report
    folder = os.path.dirname(path)
    report["tiles"] = [import_tile(unreal, m, t, folder, factory) for t in m["tiles"]]
    if m.get("collision"):
        report["collision"] = import_collision(unreal, m, folder)
    if m.get("sky"):
        report["sky"] = import_sky(unreal, {**m, "_folder": folder})
    report["ok"] = all(t["ok"] for t in report["tiles"]) and all(
        (report[k] or {"ok": True})["ok"] for k in ("collision", "sky"))
    if args["save"] or headless(unreal):
        report["saved"] = bool(levels.save_current_level())
        if not report["saved"]:
            unreal.log_error("splatkit import: the level could not be saved (give --level /Game/...)")
    unreal.log(f"splatkit import: {json.dumps(report)}")
    return report


if __name__ == "__main__":
    main()
