"""Unreal export pipeline: render equivalence per plugin and SH degree, upright transform, files,
manifest, crop reporting, tiles and glTF through the pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from splatkit import frames as F
from splatkit.errors import UserError
from splatkit.export.plugins import PLUGINS
from splatkit.export.ply import read_ply
from splatkit.export.unreal import UnrealExportOptions, export_transform, export_unreal
from splatkit.splats import Splats
from tests.unreal_util import angle_deg, random_rotation, random_splats, synthetic_scene


def test_upright_transform_synthetic():
    scene, true_up = synthetic_scene(random_rotation(7), seed=7)
    T, info = export_transform(scene, UnrealExportOptions(plugin="nanogs"))
    # The true up ends, after NanoGS's own mapping, on UE +Z.
    R_total = T.R
    ue_up = F.ply_to_ue((R_total @ true_up)[None], PLUGINS["nanogs"].ply_axes)[0]
    assert angle_deg(ue_up, torch.tensor([0, 0, 1.0])) < 2.0
    # The origin is on the floor: the lowest points sit near z = 0 in UE.
    z = F.ply_to_ue(T.apply(scene.points.double()), PLUGINS["nanogs"].ply_axes)[:, 2]
    assert abs(float(torch.quantile(z, 0.02))) < 1.0  # cm


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_render_equivalence(plugin, degree):
    ref = pytest.importorskip("splatkit.render.reference")
    from splatkit.render import RenderSettings, View

    scene, _ = synthetic_scene(random_rotation(11), n_cams=6, seed=3)
    scene.points = scene.points * 0.3
    T, _ = export_transform(scene, UnrealExportOptions(plugin=plugin, scale="2.5"))
    s = random_splats(40, degree, seed=degree)
    s = Splats(**{**s.as_dict(), "means": s.means @ T.R.double() + T.origin})  # near the scene
    out = F.transform_splats(s, T)
    settings = RenderSettings(sh_degree=degree, background=(0.2, 0.3, 0.4))
    for i in (0, 3):
        w2c = scene.cameras.world_to_cam[i].double()
        K = scene.cameras.K[i].double().clone()
        K[:2] *= 0.25  # 32 x 24 pixels
        a = ref.render(s, View(w2c, K, 32, 24), settings).image
        b = ref.render(out, View(T.transform_world_to_cam(w2c), K, 32, 24), settings).image
        assert a.std() > 0.01
        assert (a - b).abs().max() < 1e-4, (plugin, degree, i)


# ---------------------------------------------------------------------------------------------
# Files and manifest


def test_export_unreal_files(tmp_path):
    scene, _ = synthetic_scene(random_rotation(5), seed=5)
    s = random_splats(300, 3, seed=1).to(torch.float32)
    s.means[:] = scene.points[:300]
    s.means[0] = float("nan")
    s.opacity_logits[2] = -20.0  # invisible
    opts = UnrealExportOptions(
        plugin="uefn",
        format="ply,spz,splat,compressed-ply,glb",
        max_splats=200,
        name="Café scène",
        tiles="none",
    )
    paths = export_unreal(s, scene, tmp_path, opts)
    names = [p.name for p in paths]
    assert names == [
        "Cafe_scene.ply",
        "Cafe_scene.spz",
        "Cafe_scene.splat",
        "Cafe_scene.compressed.ply",
        "Cafe_scene.glb",
        "import_splat.py",
        "Cafe_scene.unreal.json",
    ]
    m = json.loads(paths[-1].read_text())
    assert m["num_splats"] == {"input": 300, "after_crop": 298, "written": 200}
    assert m["crop"] == {"invalid": 2, "not_seen": 0, "far_field": 0}
    assert m["destination_path"] == "/Game/Splats/Cafe_scene"
    assert m["verified"] is False and m["factory_class"] is None  # UEFN: an assumed preset
    assert read_ply(paths[0]).sh_degree == 3 and len(read_ply(paths[0])) == 200
    assert len(torch.tensor(m["frame"]["sfm_to_ply_4x4"])) == 4
    assert m["scale_source"] == "eye-height" and m["metres_per_unit"] > 0
    assert m["up"] == "level-cameras" and m["tiles"][0]["location_cm"] == [0.0, 0.0, 0.0]


def test_manifest_records_known_distance(tmp_path):
    scene, _ = synthetic_scene(random_rotation(4), seed=4)
    s = random_splats(100, 0, seed=2).to(torch.float32)
    s.means[:] = scene.points[:100]
    c = scene.cameras.centers.double()
    d = float((c[0] - c[5]).norm())
    opts = UnrealExportOptions(known_distance=f"000.jpg,005.jpg,{2 * d}")
    m = json.loads(export_unreal(s, scene, tmp_path, opts)[-1].read_text())
    assert m["scale_source"] == "known-distance"
    assert m["metres_per_unit"] == pytest.approx(2.0, rel=1e-6)
    assert m["scale_uncertainty"] == pytest.approx(0.02 / (2 * d))


def test_crop_keeps_what_the_cameras_see_and_reports_the_background(tmp_path):
    scene, _ = synthetic_scene(torch.eye(3, dtype=torch.float64), seed=6)
    s = random_splats(300, 0, seed=3).to(torch.float32)
    s.log_scales[:] = -4.0
    s.means[:200] = scene.points[:200]
    s.means[200:250] = torch.tensor([0.0, 0.0, 40.0])  # high above: no camera sees it (they look level)
    c0 = scene.cameras.centers[0]
    fwd = scene.cameras.world_to_cam[0, 2, :3]
    s.means[250:] = c0 + 300.0 * fwd  # far background straight ahead of camera 0
    opts = UnrealExportOptions(tiles="none", far_field="keep")
    m = json.loads(export_unreal(s, scene, tmp_path / "a", opts)[-1].read_text())
    assert m["crop"]["not_seen"] == 50 and m["num_splats"]["written"] == 250
    assert any("no training camera sees them" in x for x in m["messages"])
    # By default the far field (300 units away, cameras 8 apart) is left out, said in one line.
    opts = UnrealExportOptions(tiles="none")
    m = json.loads(export_unreal(s, scene, tmp_path / "ff", opts)[-1].read_text())
    assert m["crop"]["far_field"] == 50 and m["num_splats"]["written"] == 200
    assert m["far_field"]["beyond_far_factor"] == 50
    assert sum("50 far splats dropped" in x for x in m["messages"]) == 1
    opts = UnrealExportOptions(tiles="none", drop_background=30.0, scale="1", far_field="keep")
    m = json.loads(export_unreal(s, scene, tmp_path / "b", opts)[-1].read_text())
    assert m["crop"]["background"] == 50 and m["num_splats"]["written"] == 200
    assert any("farther than 30 m from every training camera" in x for x in m["messages"])


def test_bad_options_are_user_errors(tmp_path):
    scene, _ = synthetic_scene(random_rotation(1), seed=1)
    s = random_splats(20, 0).to(torch.float32)
    s.means[:] = scene.points[:20]
    for opts in (
        UnrealExportOptions(tiles="-3"),
        UnrealExportOptions(max_splats=0),
        UnrealExportOptions(known_size="000.jpg,1,2,3"),
        UnrealExportOptions(scale="big"),
    ):
        with pytest.raises(UserError):
            export_unreal(s, scene, tmp_path, opts)


def test_italink_defaults(tmp_path):
    scene, _ = synthetic_scene(random_rotation(2), seed=2)
    s = random_splats(50, 3).to(torch.float32)
    s.means[:] = scene.points[:50]
    paths = export_unreal(s, scene, tmp_path, UnrealExportOptions(plugin="italink"))
    data = paths[0].read_bytes()
    head = data[: data.find(b"end_header\n")].decode().splitlines()
    assert head[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 50"]
    assert all(ln.startswith("property float ") for ln in head[3:])
    assert not any("f_rest" in ln for ln in head)  # Italink uses DC only
