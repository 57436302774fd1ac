"""Unreal Editor Python: import a splatkit export and place it in the open level.

Run inside the editor (Python Editor Script Plugin enabled), e.g.::

    UnrealEditor-Cmd.exe Project.uproject -run=pythonscript
        -script="import_splat.py C:/out/unreal/scene.unreal.json"

or from the editor's Python console::

    import import_splat; import_splat.main(["C:/out/unreal/scene.unreal.json"])

It reads the manifest written by ``splatkit export``, imports the first file Unreal can import
(``.ply``, else ``.spz``) with ``unreal.AssetImportTask`` into ``/Game/Splats/<name>`` (the
factory is picked by Unreal from the extension: the installed splat plugin's), spawns an actor
from the imported asset with the manifest's transform, and prints a report. Standard library
and the ``unreal`` module only.
"""

from __future__ import annotations

import json
import os
import sys

IMPORTABLE = (".ply", ".spz")


def load_manifest(path):
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if m.get("splatkit_manifest") != 1:
        raise ValueError(f"{path} is not a splatkit Unreal manifest")
    return m


def pick_file(manifest, manifest_dir):
    for ext in IMPORTABLE:
        for f in manifest["files"]:
            if f["path"].lower().endswith(ext) and not f["path"].endswith(".compressed.ply"):
                return os.path.join(manifest_dir, f["path"])
    raise ValueError("the manifest lists no .ply or .spz file")


def import_file(unreal, filename, destination_path, name):
    task = unreal.AssetImportTask()
    task.set_editor_property("filename", filename)
    task.set_editor_property("destination_path", destination_path)
    task.set_editor_property("destination_name", name)
    task.set_editor_property("automated", True)
    task.set_editor_property("replace_existing", True)
    task.set_editor_property("save", True)
    unreal.AssetToolsHelpers.get_asset_tools().import_asset_tasks([task])
    paths = list(task.get_editor_property("imported_object_paths") or [])
    if not paths:
        return None, []
    return unreal.EditorAssetLibrary.load_asset(paths[0]), paths


def spawn(unreal, asset, actor):
    loc = unreal.Vector(*actor["location_cm"])
    roll, pitch, yaw = actor["rotation_deg"]
    rot = unreal.Rotator(roll, pitch, yaw)
    subsystem = unreal.get_editor_subsystem(unreal.EditorActorSubsystem)
    a = subsystem.spawn_actor_from_object(asset, loc, rot)
    if a is not None:
        a.set_actor_scale3d(unreal.Vector(*actor["scale"]))
    return a


def main(argv=None):
    """Returns a report dict (also printed); raises nothing for expected failures."""
    import unreal

    argv = sys.argv[1:] if argv is None else argv
    report = {"ok": False}
    if not argv:
        unreal.log_error("usage: import_splat.py path/to/<name>.unreal.json")
        report["error"] = "no manifest given"
        return report
    path = os.path.abspath(argv[0])
    try:
        m = load_manifest(path)
        filename = pick_file(m, os.path.dirname(path))
    except (OSError, ValueError, KeyError) as e:
        unreal.log_error(f"splatkit import: {e}")
        report["error"] = str(e)
        return report
    if not filename.isascii():
        unreal.log_warning(f"splatkit import: non-ASCII path {filename!r}; some importers fail")
    report.update(file=filename, destination=m["destination_path"], plugin=m["plugin"])
    asset, paths = import_file(unreal, filename, m["destination_path"], m["name"])
    report["imported"] = paths
    if asset is None:
        msg = (
            f"Nothing was imported from {filename}. Is the {m.get('plugin_title', m['plugin'])}"
            " plugin enabled? Some plugins import with their own button instead."
        )
        unreal.log_error("splatkit import: " + msg)
        report["error"] = msg
        return report
    actor = spawn(unreal, asset, m["actor"])
    report["actor"] = actor.get_name() if actor is not None else None
    if actor is None:
        unreal.log_warning(
            "splatkit import: imported, but no actor could be spawned from the "
            "asset; drag it from the Content Browser into the level."
        )
    report["ok"] = True
    unreal.log(f"splatkit import: {json.dumps(report)}")
    return report


if __name__ == "__main__":
    main()
