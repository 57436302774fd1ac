"""The sky in the Unreal export: the panorama convention (splatkit/panorama.py), the
exported panorama read by direction in Unreal's frame equals the training-time background for
the same rays (splatkit/export/sky_export.py), the manifest entry, and import_splat.py putting
the sky in the level (fake ``unreal`` module)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch
from PIL import Image
from test_unreal_editor_script import Recorder, script  # noqa: F401 - the fixture
from unreal_util import random_rotation, synthetic_scene

from splatkit import frames as F
from splatkit import panorama as P
from splatkit.export.unreal import UnrealExportOptions, estimate_upright, export_unreal
from splatkit.sky import SkyMap, pixel_directions
from splatkit.splats import Splats
from splatkit.train.sky import sky_frame
from splatkit.views import WorldNorm, make_view


def test_convention_panorama_centre_is_forward_right_is_plus_y_in_unreal():
    """Unreal axes (+X forward, +Y right, +Z up): the image's centre column looks forward, a
    quarter to the right of it looks +Y (right), the top row up; u wraps at the back. The
    upright frame (+Y left) reads the same image for the same physical directions."""
    ue = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [-1.0, 0, 1e-9]],
                      dtype=torch.float64)  # fmt: skip
    u, v = P.direction_to_uv(ue, y_right=True)
    torch.testing.assert_close(u[:4], torch.tensor([0.5, 0.75, 0.25, 0.5], dtype=torch.float64))
    torch.testing.assert_close(v[:4], torch.tensor([0.5, 0.5, 0.5, 0.0], dtype=torch.float64))
    assert float(u[4]) in (0.0, 1.0) or abs(float(u[4]) - 1.0) < 1e-9 or float(u[4]) < 1e-9
    up = F.upright_to_ue_directions(ue)  # the same directions in upright coordinates
    for a, b in zip(P.direction_to_uv(up), (u, v), strict=True):
        torch.testing.assert_close(a, b)
    # the frames module's position mapping uses the same axes (Y negated, cm)
    torch.testing.assert_close(F.upright_to_ue(up[:3]) / 100.0, ue[:3])
    d = P.texel_directions(32, 16, y_right=True)
    uu, vv = P.direction_to_uv(d, y_right=True)
    torch.testing.assert_close(uu[0], (torch.arange(32, dtype=torch.float64) + 0.5) / 32)
    torch.testing.assert_close(vv[:, 0], (torch.arange(16, dtype=torch.float64) + 0.5) / 16)


def smooth_sky(width: int, rotation: torch.Tensor) -> SkyMap:
    """A smooth sky defined by world direction, stored in the training frame ``rotation``."""
    d_world = P.texel_directions(width, width // 2) @ rotation  # R^T d
    lon = torch.atan2(d_world[..., 1], d_world[..., 0])
    col = torch.stack([0.5 + 0.3 * torch.cos(lon), 0.5 + 0.3 * torch.sin(lon),
                       0.6 + 0.3 * d_world[..., 2]], -1)  # fmt: skip
    return SkyMap(col.float().clamp(0, 1), torch.ones(width // 2, width), rotation, 0.5)


def export_with_sky(tmp_path, R_world, width=128, up="auto"):
    scene, _ = synthetic_scene(R_world, n_cams=12)
    rot = sky_frame(scene.cameras.world_to_cam.double())
    sky = smooth_sky(width, rot)
    g = torch.Generator().manual_seed(0)
    n = 200
    s = Splats.random(n, 0, 0)
    s.means[:] = (torch.randn(n, 3, generator=g) * 0.5) @ R_world.T.float()
    s.log_scales[:] = -3.0
    s.opacity_logits[:] = 2.0
    opts = UnrealExportOptions(plugin="nanogs", up=up, scale="1", name="garden", tiles="none")
    paths = export_unreal(s, scene, tmp_path, opts, sky=sky)
    return scene, sky, json.loads(paths[-1].read_text()), opts


def test_exported_panorama_by_direction_in_unreal_equals_the_training_background(tmp_path):
    """For every held-out camera ray: the training-time background (the sky sampled in the SfM
    world direction) equals the exported PNG sampled at that ray's direction in Unreal's frame
    (SfM -> upright by the export's similarity, then Unreal's axes): within 8-bit rounding and
    one resampling. Pinned for a world rotated arbitrarily and for --up given."""
    for seed, up in ((3, "auto"), (7, "auto"), (3, "+z")):
        R_world = random_rotation(seed) if up == "auto" else torch.eye(3, dtype=torch.float64)
        out = tmp_path / f"{seed}{up}"
        scene, sky, m, opts = export_with_sky(out, R_world, up=up)
        assert m["sky"]["path"] == "garden_sky.png" and m["sky"]["projection"] == "equirectangular"
        tex = torch.from_numpy(np.asarray(Image.open(out / m["sky"]["path"]), dtype=np.float64) / 255.0)
        assert tex.shape == (64, 128, 3)
        T_up, _ = estimate_upright(scene, opts)
        written = torch.tensor(m["frame"]["sfm_to_upright_4x4"], dtype=torch.float64)
        torch.testing.assert_close(written, T_up.matrix())
        for i in range(len(scene.cameras)):
            view = make_view(scene.cameras, i, WorldNorm.identity())
            d_world = pixel_directions(view).double()
            train_bg = sky.background(d_world)
            d_ue = F.upright_to_ue_directions(d_world @ T_up.R.T)
            unreal_bg = P.sample(tex, d_ue, y_right=True)
            err = (train_bg - unreal_bg).abs()
            assert float(err.max()) < 0.01, (seed, up, i, float(err.max()))


def test_export_without_sky_writes_none(tmp_path):
    from test_unreal_editor_script import _export

    m = json.loads(_export(tmp_path).read_text())
    assert m["sky"] is None and not list(tmp_path.glob("*_sky.png"))


def test_import_script_creates_the_sky_sphere(script, tmp_path, monkeypatch):  # noqa: F811
    _, _, m, _ = export_with_sky(tmp_path, torch.eye(3, dtype=torch.float64))
    rec = SkyRecorder()
    monkeypatch.setitem(sys.modules, "unreal", rec.module())
    report = script.main([str(tmp_path / "garden.unreal.json")])
    assert report["ok"] and report["sky"]["ok"], report
    imported = [c[1]["filename"] for c in rec.of("import")]
    assert imported[-1].endswith("garden_sky.png")
    assert ("set", "Texture", "mip_gen_settings", "no-mips") in rec.calls
    assert ("set", "Material", "shading_model", "unlit") in rec.calls
    code = next(c[3] for c in rec.calls if c[:3] == ("set", "MaterialExpressionCustom", "code"))
    assert code == script.SKY_UV_HLSL
    assert ("connect", "MaterialExpressionCameraVectorWS", "", "MaterialExpressionCustom", "V") in rec.calls
    assert ("connect", "MaterialExpressionCustom", "", "MaterialExpressionTextureSample", "UVs") in rec.calls
    assert ("emissive", "MaterialExpressionTextureSample", "RGB") in rec.calls
    spawn = [c for c in rec.of("spawn") if c[1] == script.SKY_MESH]
    assert spawn and spawn[0][2] == (0.0, 0.0, 0.0)
    r = m["sky"]["radius_cm"] / script.SKY_MESH_RADIUS_CM
    assert ("scale", (r, r, r)) in rec.calls and r * script.SKY_MESH_RADIUS_CM >= 100_000
    assert ("material", 0, "M_garden_sky") in rec.calls and ("collision", "none") in rec.calls


def test_the_material_formula_is_the_panorama_convention(script):  # noqa: F811
    """SKY_UV_HLSL, evaluated as Python on Unreal view directions, gives panorama.direction_to_uv."""
    d = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    u, v = P.direction_to_uv(d, y_right=True)
    for k in range(50):
        dx, dy, dz = (float(c) for c in d[k])
        uu = 0.5 + math.atan2(dy, dx) / 6.283185307179586
        vv = 0.5 - math.asin(max(-1.0, min(1.0, dz))) / 3.141592653589793
        assert abs(uu - float(u[k])) < 1e-12 and abs(vv - float(v[k])) < 1e-12
    assert "atan2(d.y, d.x) / 6.283185307179586" in script.SKY_UV_HLSL
    assert "asin(clamp(d.z, -1.0, 1.0)) / 3.141592653589793" in script.SKY_UV_HLSL
    assert "normalize(-V)" in script.SKY_UV_HLSL  # CameraVectorWS points towards the camera


class SkyRecorder(Recorder):
    """The fake ``unreal`` module with what the sky needs: materials and mesh components."""

    def module(self):
        rec = self
        u = super().module()
        base_load = u.EditorAssetLibrary.load_asset

        class Node:
            def __init__(self, kind):
                self.kind, self.props = kind, {}

            def set_editor_property(self, k, v):
                self.props[k] = v
                rec.calls.append(("set", self.kind, k, v))

        class Material(Node):
            def get_path_name(self):
                return "/Game/Splats/garden/M_garden_sky"

        class Component:
            def set_material(self, i, mat):
                rec.calls.append(("material", i, "M_garden_sky" if isinstance(mat, Material) else mat))

            def set_editor_property(self, k, v):
                rec.calls.append(("set", "Component", k, v))

            def set_collision_enabled(self, v):
                rec.calls.append(("collision", v))

        def load_asset(p):
            a = base_load(p)
            if p.endswith("_sky"):
                a.kind = "Texture"
            return a

        class Tools:
            def __init__(self, inner):
                self.inner = inner

            def import_asset_tasks(self, tasks):
                return self.inner.import_asset_tasks(tasks)

            def create_asset(self, name, path, cls, factory):
                rec.calls.append(("create_asset", name, path))
                return Material("Material")

        tools = u.AssetToolsHelpers.get_asset_tools
        u.AssetToolsHelpers = type(u.AssetToolsHelpers)(get_asset_tools=lambda: Tools(tools()))
        u.EditorAssetLibrary = type(u.EditorAssetLibrary)(load_asset=load_asset)
        u.Material, u.MaterialFactoryNew = "Material", lambda: "MaterialFactoryNew"
        u.MaterialShadingModel = type(u.CollisionTraceFlag)(MSM_UNLIT="unlit")
        u.TextureMipGenSettings = type(u.CollisionTraceFlag)(TMGS_NO_MIPMAPS="no-mips")
        u.TextureAddress = type(u.CollisionTraceFlag)(TA_WRAP="wrap", TA_CLAMP="clamp")
        u.CustomMaterialOutputType = type(u.CollisionTraceFlag)(CMOT_FLOAT2="float2")
        u.CustomInput = lambda input_name: ("CustomInput", input_name)
        u.MaterialProperty = type(u.CollisionTraceFlag)(MP_EMISSIVE_COLOR="emissive")
        u.CollisionEnabled = type(u.CollisionTraceFlag)(NO_COLLISION="none")
        u.StaticMeshComponent = "StaticMeshComponent"
        for name in ("MaterialExpressionCameraVectorWS", "MaterialExpressionCustom",
                     "MaterialExpressionTextureSample"):  # fmt: skip
            setattr(u, name, name)
        u.MaterialEditingLibrary = type(u.CollisionTraceFlag)(
            create_material_expression=lambda mat, cls, x, y: Node(cls),
            connect_material_expressions=lambda a, ao, b, bi: rec.calls.append(
                ("connect", a.kind, ao, b.kind, bi)),
            connect_material_property=lambda a, ao, prop: rec.calls.append((prop, a.kind, ao)),
            recompile_material=lambda mat: rec.calls.append(("recompile",)),
        )
        spawn_cls = u.EditorActorSubsystem

        class ActorSubsystem(spawn_cls):
            def spawn_actor_from_object(self, asset, loc, rot):
                actor = super().spawn_actor_from_object(asset, loc, rot)
                if actor is not None:
                    actor.get_component_by_class = lambda cls: Component()
                return actor

        u.EditorActorSubsystem = ActorSubsystem
        return u
