"""unreal_export/import_splat.py against a recording fake ``unreal`` module: finding the manifest,
the factory pinned to the manifest's plugin, files checked before import, failures reported,
every tile and the collision mesh placed, the level saved in headless runs."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "unreal_export" / "import_splat.py"


class Recorder:
    def __init__(self, import_works=True, spawn_works=True, classes=None, command_line="UnrealEditor.exe P"):
        self.calls = []
        self.import_works, self.spawn_works = import_works, spawn_works
        self.classes = (
            {
                "/Script/NanoGSEditor.GaussianSplatAssetFactory",
                "/Script/PICOSplatEditor.SplatAssetFactory",
                "/Script/GaussianSplattingEditor.GaussianSplattingPointCloudAssetFactory",
            }
            if classes is None
            else classes
        )
        self.command_line = command_line

    def of(self, kind):
        return [c for c in self.calls if c[0] == kind]

    def module(self):  # noqa: C901 - one fake module
        rec = self
        u = types.ModuleType("unreal")

        class Obj:
            def __init__(self, kind, *args):
                self.kind, self.args, self.props = kind, args, {}

            def set_editor_property(self, k, v):
                self.props[k] = v
                rec.calls.append(("set", self.kind, k, v))

            def get_editor_property(self, k):
                return self.props.get(k)

        class Asset(Obj):
            def __init__(self, path):
                super().__init__("Asset", path)
                self.props["body_setup"] = Obj("BodySetup")

        class Tools:
            def import_asset_tasks(self, tasks):
                for t in tasks:
                    rec.calls.append(("import", dict(t.props)))
                    if rec.import_works:
                        t.props["imported_object_paths"] = [
                            t.props["destination_path"] + "/" + t.props["destination_name"]
                        ]

        class Actor(Obj):
            def get_name(self):
                return "Actor_" + self.args[0]

            def set_actor_scale3d(self, v):
                rec.calls.append(("scale", v.args))

            def set_actor_label(self, label):
                self.args = (label,)

            def set_actor_hidden_in_game(self, h):
                rec.calls.append(("hidden", self.args[0], h))

            def get_components_by_class(self, cls):
                if not hasattr(self, "comps"):
                    self.comps = [Obj("Component", self.args[0])]
                return self.comps

        class ActorSubsystem:
            def spawn_actor_from_object(self, asset, loc, rot):
                rec.calls.append(("spawn", asset.args[0], loc.args, rot.args))
                return Actor("Actor", asset.args[0]) if rec.spawn_works else None

        class LevelSubsystem:
            def load_level(self, path):
                rec.calls.append(("load_level", path))
                return path.startswith("/Game/")

            def save_current_level(self):
                rec.calls.append(("save_level",))
                return True

        u.AssetImportTask = lambda: Obj("AssetImportTask")
        u.AssetToolsHelpers = types.SimpleNamespace(get_asset_tools=lambda: Tools())
        u.EditorAssetLibrary = types.SimpleNamespace(load_asset=lambda p: Asset(p))
        u.Vector = lambda *a: Obj("Vector", *a)
        u.Rotator = lambda *a: Obj("Rotator", *a)
        u.EditorActorSubsystem, u.LevelEditorSubsystem = ActorSubsystem, LevelSubsystem
        u.get_editor_subsystem = lambda cls: cls()
        u.load_class = lambda outer, path: path if path in rec.classes else None
        u.new_object = lambda cls: Obj("Factory", cls)
        u.PrimitiveComponent = "PrimitiveComponent"
        u.CollisionTraceFlag = types.SimpleNamespace(CTF_USE_COMPLEX_AS_SIMPLE="complex-as-simple")
        u.SystemLibrary = types.SimpleNamespace(get_command_line=lambda: rec.command_line)
        for lvl in ("log", "log_warning", "log_error"):
            setattr(u, lvl, lambda msg, lvl=lvl: rec.calls.append((lvl, msg)))
        return u


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("import_splat", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _export(folder, plugin="nanogs", tiles="none", n=40, collision="none", name="garden", lod=1):
    from splatkit.export.unreal import UnrealExportOptions, export_unreal
    from splatkit.splats import Splats

    s = Splats.random(n, 0, 0)
    s.means[:] = torch.rand(n, 3) * torch.tensor([20.0, 20.0, 2.0])
    s.log_scales[:] = -3.0
    s.opacity_logits[:] = 2.0
    opts = UnrealExportOptions(plugin=plugin, up="+z", scale="1", name=name, tiles=tiles, collision=collision,
                               lod=lod)
    return export_unreal(s, None, folder, opts)[-1]


def run(script, monkeypatch, rec, argv):
    monkeypatch.setitem(sys.modules, "unreal", rec.module())
    return script.main(argv)


def test_import_pins_the_factory_and_places_every_tile(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path, tiles="10", n=40_000)  # tiles hold ~10,000 splats at the least
    m = json.loads(manifest.read_text())
    assert len(m["tiles"]) > 1
    rec = Recorder()
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert report["ok"] and len(report["tiles"]) == len(m["tiles"]) and not report["saved"]
    imports = [c[1] for c in rec.of("import")]
    assert [os.path.basename(i["filename"]) for i in imports] == [t["files"][0]["path"] for t in m["tiles"]]
    assert all(i["factory"].args == ("/Script/NanoGSEditor.GaussianSplatAssetFactory",) for i in imports)
    assert all(
        i["automated"] and i["replace_existing"] and i["destination_path"] == "/Game/Splats/garden"
        for i in imports
    )
    spawns = rec.of("spawn")
    assert [s[2] for s in spawns] == [tuple(t["location_cm"]) for t in m["tiles"]]
    assert len({s[2] for s in spawns}) == len(spawns)  # each tile at its own place


def test_missing_factory_imports_nothing(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path, plugin="italink")
    rec = Recorder(classes=set())
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert not report["ok"] and "is the plugin enabled" in report["error"]
    assert not rec.of("import") and rec.of("log_error")


def test_italink_file_checked_before_its_importer_sees_it(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path, plugin="italink")
    ply = tmp_path / json.loads(manifest.read_text())["files"][0]["path"]
    data = ply.read_bytes()
    ply.write_bytes(
        data.replace(b"format binary_little_endian 1.0\n", b"format binary_little_endian 1.0\ncomment x\n")
    )
    rec = Recorder()
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert not report["ok"] and "strict PLY reader" in report["tiles"][0]["error"]
    assert not rec.of("import")
    ply.write_bytes(data[: len(data) // 2])  # truncated
    report = run(script, monkeypatch, Recorder(), [str(manifest)])
    assert "truncated" in report["tiles"][0]["error"]


def test_failed_import_and_spawn_are_reported(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path)
    report = run(script, monkeypatch, Recorder(import_works=False), [str(manifest)])
    assert not report["ok"] and "nothing was imported" in report["tiles"][0]["error"]
    report = run(script, monkeypatch, Recorder(spawn_works=False), [str(manifest)])
    assert not report["ok"] and "drag it" in report["tiles"][0]["error"]


def test_folder_argument_and_no_argument_find_the_newest_manifest(script, tmp_path, monkeypatch):
    _export(tmp_path, name="old")
    time.sleep(0.01)
    newest = _export(tmp_path, name="new")
    os.utime(tmp_path / "old.unreal.json", (1, 1))
    report = run(script, monkeypatch, Recorder(), [str(tmp_path)])
    assert report["manifest"] == str(newest) and report["ok"]
    monkeypatch.setenv(script.ENV_FOLDER, str(tmp_path))
    monkeypatch.setitem(script.__dict__, "__file__", None)
    report = run(script, monkeypatch, Recorder(), [])
    assert report["manifest"] == str(newest)
    report = run(script, monkeypatch, Recorder(), [str(tmp_path / "nothing-here")])
    assert not report["ok"] and "no manifest" in report["error"]


def test_the_copy_beside_the_manifest_finds_it_by_itself(tmp_path, monkeypatch):
    _export(tmp_path)
    spec = importlib.util.spec_from_file_location("import_splat_copy", tmp_path / "import_splat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.delenv(mod.ENV_FOLDER, raising=False)
    report = run(mod, monkeypatch, Recorder(), [])
    assert report["ok"] and report["manifest"] == str(tmp_path / "garden.unreal.json")


def test_headless_run_saves_the_level_and_places_the_collision(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path, n=400)
    m = json.loads(manifest.read_text())
    m["collision"] = {
        "path": "garden_collision.glb",
        "format": "glb",
        "location_cm": [0.0, 0.0, 0.0],
        "rotation_deg": [0.0, 0.0, 0.0],
        "scale": [1.0, 1.0, 1.0],
    }
    (tmp_path / "garden_collision.glb").write_bytes(b"glTF")
    manifest.write_text(json.dumps(m))
    rec = Recorder(command_line="UnrealEditor-Cmd.exe P.uproject -run=pythonscript -script=x")
    report = run(script, monkeypatch, rec, [str(manifest), "--level", "/Game/Maps/Main"])
    assert report["ok"] and report["saved"] and report["collision"]["ok"]
    assert ("load_level", "/Game/Maps/Main") in rec.calls and rec.of("save_level")
    assert ("set", "BodySetup", "collision_trace_flag", "complex-as-simple") in rec.calls
    assert rec.of("hidden") == [("hidden", "garden_collision", True)]
    report = run(script, monkeypatch, Recorder(), [str(manifest), "--level", "Maps/Main"])
    assert not report["ok"] and "could not open level" in report["error"]


def test_bad_manifest(script, tmp_path, monkeypatch):
    p = tmp_path / "x.unreal.json"
    p.write_text(json.dumps({"hello": 1}))
    assert "not a splatkit" in run(script, monkeypatch, Recorder(), [str(p)])["error"]
    p.write_text("{")
    assert "cannot read" in run(script, monkeypatch, Recorder(), [str(p)])["error"]


def test_multi_asset_import_spawns_the_splat_asset(script):
    paths = ["/Game/Splats/garden/M_garden", "/Game/Splats/garden/garden.garden", "/Game/Splats/garden/T_x"]
    assert script.main_asset(paths, "garden") == "/Game/Splats/garden/garden.garden"
    assert script.main_asset(["/Game/a/other"], "garden") == "/Game/a/other"


def test_levels_of_detail_are_placed_with_their_draw_distances(script, tmp_path, monkeypatch):
    manifest = _export(tmp_path, tiles="10", n=4000, lod=3)
    m = json.loads(manifest.read_text())
    lods = [t["lods"] for t in m["tiles"] if "lods" in t]
    assert lods and all(len(x) >= 2 for x in lods)
    for x in lods:  # fewer splats and farther with each level, each level's range meeting the next
        assert [lv["num_splats"] for lv in x] == sorted((lv["num_splats"] for lv in x), reverse=True)
        assert all(a["to_cm"] == b["from_cm"] for a, b in zip(x, x[1:], strict=False))
    rec = Recorder()
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert report["ok"]
    sets = [c for c in rec.calls if c[0] == "set" and c[1] == "Component"]
    far = {v for _, _, k, v in sets if k == "ld_max_draw_distance"}
    near = {v for _, _, k, v in sets if k == "min_draw_distance"}
    assert far and near and far & near  # one level's far end is the next one's near end
    unloaded = [c for c in rec.calls if c[0] == "set" and c[2] == "is_spatially_loaded"]
    assert len(unloaded) == len(lods) and all(c[3] is False for c in unloaded)  # the coarsest, always loaded
    assert len(rec.of("spawn")) == sum(len(x) for x in lods) + len(m["tiles"]) - len(lods)
