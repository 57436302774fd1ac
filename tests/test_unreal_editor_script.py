"""unreal_export/import_splat.py against a recording fake ``unreal`` module."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "unreal_export" / "import_splat.py"


class Recorder:
    def __init__(self, import_works=True, spawn_works=True):
        self.calls = []
        self.import_works = import_works
        self.spawn_works = spawn_works

    def module(self):
        rec = self
        u = types.ModuleType("unreal")

        class Obj:
            def __init__(self, kind, *args):
                self.kind, self.args, self.props = kind, args, {}
                rec.calls.append(("new", kind, args))

            def set_editor_property(self, k, v):
                self.props[k] = v

            def get_editor_property(self, k):
                return self.props.get(k)

        class Task(Obj):
            def __init__(self):
                super().__init__("AssetImportTask")

        class Tools:
            def import_asset_tasks(self, tasks):
                rec.calls.append(("import_asset_tasks", [dict(t.props) for t in tasks]))
                for t in tasks:
                    if rec.import_works:
                        t.props["imported_object_paths"] = [
                            t.props["destination_path"] + "/" + t.props["destination_name"]
                        ]

        class Actor(Obj):
            def get_name(self):
                return "GaussianSplatActor_0"

            def set_actor_scale3d(self, v):
                rec.calls.append(("scale", v.args))

        class Subsystem:
            def spawn_actor_from_object(self, asset, loc, rot):
                rec.calls.append(("spawn", asset, loc.args, rot.args))
                return Actor("Actor") if rec.spawn_works else None

        u.AssetImportTask = Task
        u.AssetToolsHelpers = types.SimpleNamespace(get_asset_tools=lambda: Tools())
        u.EditorAssetLibrary = types.SimpleNamespace(
            load_asset=lambda p: rec.calls.append(("load_asset", p)) or f"asset:{p}"
        )
        u.Vector = lambda *a: Obj("Vector", *a)
        u.Rotator = lambda *a: Obj("Rotator", *a)
        u.EditorActorSubsystem = "EditorActorSubsystem"
        u.get_editor_subsystem = lambda cls: Subsystem()
        for lvl in ("log", "log_warning", "log_error"):
            setattr(u, lvl, lambda msg, lvl=lvl: rec.calls.append((lvl, msg)))
        return u


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("import_splat", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def manifest(tmp_path):
    import torch

    from splatkit.export.unreal import UnrealExportOptions, export_unreal
    from splatkit.splats import Splats

    n = 20
    s = Splats(torch.randn(n, 3), torch.full((n, 3), -3.0), torch.randn(n, 4), torch.ones(n),
               torch.zeros(n, 1, 3), torch.zeros(n, 15, 3))  # fmt: skip
    paths = export_unreal(s, None, tmp_path, UnrealExportOptions(up="-y", name="garden"))
    return paths[-1]


def run(script, monkeypatch, rec, argv):
    monkeypatch.setitem(sys.modules, "unreal", rec.module())
    return script.main(argv)


def test_import_and_spawn(script, manifest, monkeypatch):
    rec = Recorder()
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert report["ok"] and report["actor"] == "GaussianSplatActor_0"
    imp = [c for c in rec.calls if c[0] == "import_asset_tasks"][0][1][0]
    assert imp["destination_path"] == "/Game/Splats/garden"
    assert imp["destination_name"] == "garden"
    assert imp["filename"].endswith("garden.ply") and imp["automated"] and imp["replace_existing"]
    spawn = [c for c in rec.calls if c[0] == "spawn"][0]
    assert spawn[1] == "asset:/Game/Splats/garden/garden"
    assert spawn[2] == (0.0, 0.0, 0.0) and spawn[3] == (0.0, 0.0, 0.0)
    assert ("scale", (1.0, 1.0, 1.0)) in rec.calls


def test_import_fails_reports(script, manifest, monkeypatch):
    rec = Recorder(import_works=False)
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert not report["ok"] and "plugin enabled" in report["error"]
    assert any(c[0] == "log_error" for c in rec.calls)
    assert not any(c[0] == "spawn" for c in rec.calls)


def test_spawn_fails_warns(script, manifest, monkeypatch):
    rec = Recorder(spawn_works=False)
    report = run(script, monkeypatch, rec, [str(manifest)])
    assert report["ok"] and report["actor"] is None
    assert any(c[0] == "log_warning" for c in rec.calls)


def test_bad_manifest(script, tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    report = run(script, monkeypatch, Recorder(), [str(p)])
    assert not report["ok"]
    assert not run(script, monkeypatch, Recorder(), [])["ok"]
    assert not run(script, monkeypatch, Recorder(), [str(tmp_path / "missing.json")])["ok"]
