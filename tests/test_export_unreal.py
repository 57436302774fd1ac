"""Unreal export: render equivalence per plugin and SH degree, auto-up, datasets, manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from splatkit.export import frames as F
from splatkit.export.ply import read_ply
from splatkit.export.unreal import (
    PLUGINS,
    UnrealExportOptions,
    estimate_up,
    export_transform,
    export_unreal,
)
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats

DATASETS = Path("/work/shared/datasets")


def look_at(center: torch.Tensor, target: torch.Tensor, up: torch.Tensor, roll: float = 0.0):
    """OpenCV world_to_cam for a camera at ``center`` looking at ``target`` with world ``up``."""
    z = target - center
    z = z / z.norm()
    x = torch.linalg.cross(z, up)  # right = forward x up (with y down)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        R = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]], dtype=R.dtype) @ R
    w2c = torch.eye(4, dtype=center.dtype)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ center
    return w2c


def synthetic_scene(R_world: torch.Tensor, n_cams: int = 12, seed: int = 0, roll_deg: float = 1.0):
    """Cameras at eye height around an object, gravity -Z, then the world rotated by R_world."""
    g = torch.Generator().manual_seed(seed)
    up = torch.tensor([0, 0, 1.0], dtype=torch.float64)
    w2cs = []
    for i in range(n_cams):
        a = 2 * math.pi * i / n_cams * 0.6  # a 216-degree arc
        h = 1.6 + 0.2 * torch.rand(1, generator=g).item()
        c = torch.tensor([4 * math.cos(a), 4 * math.sin(a), h], dtype=torch.float64)
        tgt = torch.tensor([0, 0, 0.5 + torch.rand(1, generator=g).item()], dtype=torch.float64)
        roll = math.radians(roll_deg) * (2 * torch.rand(1, generator=g).item() - 1)
        w2cs.append(look_at(c, tgt, up, roll))
    w2c = torch.stack(w2cs)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = R_world
    w2c = w2c @ torch.linalg.inv(T)  # world' = R_world @ world
    K = torch.tensor([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]]).repeat(n_cams, 1, 1)
    cams = Cameras([f"{i:03d}.jpg" for i in range(n_cams)], K, w2c.float(),
                   torch.full((n_cams,), 128), torch.full((n_cams,), 96))  # fmt: skip
    pts = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.3])
    pts[:, 2] = pts[:, 2].abs()  # on and above the floor z = 0
    pts = pts @ R_world.T
    return Scene(cams, Path("."), pts.float(), torch.rand(500, 3)), R_world @ up


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    return F.Similarity.identity().R if q.norm() == 0 else _qmat(q / q.norm())


def _qmat(q):
    from splatkit.render.projection import quat_to_rotmat

    return quat_to_rotmat(q[None])[0]


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    c = float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@pytest.mark.parametrize("seed", range(6))
def test_auto_up_synthetic(seed):
    scene, true_up = synthetic_scene(random_rotation(seed), seed=seed)
    up, method = estimate_up(scene.cameras.world_to_cam, scene.cameras.centers)
    assert angle_deg(up, true_up) < 2.0, method


def test_upright_transform_synthetic():
    scene, true_up = synthetic_scene(random_rotation(7), seed=7)
    T, info = export_transform(scene, UnrealExportOptions(plugin="nanogs"))
    # The true up ends, after NanoGS's own mapping, on UE +Z.
    R_total = T.R
    ue_up = F.ply_to_ue((R_total @ true_up)[None], "nanogs")[0]
    assert angle_deg(ue_up, torch.tensor([0, 0, 1.0])) < 2.0
    # The origin is on the floor: the lowest points sit near z = 0 in UE.
    z = F.ply_to_ue(T.apply(scene.points.double()), "nanogs")[:, 2]
    assert abs(float(torch.quantile(z, 0.02))) < 1.0  # cm


def _strecha_w2c(name: str) -> torch.Tensor:
    rows = []
    for ln in (DATASETS / name / "reference_colmap_txt" / "images.txt").read_text().splitlines():
        tok = ln.split()
        if ln.startswith("#") or len(tok) < 10:
            continue
        qw, qx, qy, qz, tx, ty, tz = map(float, tok[1:8])
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = _qmat(torch.tensor([qw, qx, qy, qz], dtype=torch.float64))
        w2c[:3, 3] = torch.tensor([tx, ty, tz], dtype=torch.float64)
        rows.append(w2c)
    return torch.stack(rows)


def _centers(w2c):
    return -(w2c[:, :3, :3].transpose(1, 2) @ w2c[:, :3, 3:])[:, :, 0]


@pytest.mark.parametrize("name", ["strecha_fountain_p11", "strecha_castle_p19"])
def test_auto_up_strecha(name):
    if not (DATASETS / name).exists():
        pytest.skip("dataset not available")
    w2c = _strecha_w2c(name)
    up, method = estimate_up(w2c, _centers(w2c))
    # Strecha's LIDAR frame: the cameras' image-down axis is close to world +Z, so up is -Z.
    assert angle_deg(up, torch.tensor([0, 0, -1.0])) < 10.0, method


def test_auto_up_fox():
    path = DATASETS / "fox" / "transforms.json"
    if not path.exists():
        pytest.skip("dataset not available")
    meta = json.loads(path.read_text())
    c2w = torch.tensor([f["transform_matrix"] for f in meta["frames"]], dtype=torch.float64)
    c2w[:, :3, 1:3] *= -1  # OpenGL -> OpenCV camera axes
    w2c = torch.linalg.inv(c2w)
    up, method = estimate_up(w2c, _centers(w2c))
    assert angle_deg(up, torch.tensor([0, 0, 1.0])) < 10.0, method


# ---------------------------------------------------------------------------------------------
# Render equivalence


def random_splats(n: int, degree: int, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(
        means=torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.5,
        log_scales=torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 - 2.5,
        quats=torch.randn(n, 4, generator=g, dtype=torch.float64),
        opacity_logits=torch.randn(n, generator=g, dtype=torch.float64),
        sh0=torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * 0.5,
        shN=torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=g, dtype=torch.float64) * 0.3,
    )


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
    s.means[1] = 1e6  # far outside
    s.opacity_logits[2] = -20.0  # invisible
    opts = UnrealExportOptions(plugin="uefn", format="ply,spz,splat,compressed-ply", max_splats=200,
                               name="Café scène")  # fmt: skip
    paths = export_unreal(s, scene, tmp_path, opts)
    names = [p.name for p in paths]
    assert names == ["Cafe_scene.ply", "Cafe_scene.spz", "Cafe_scene.splat",
                     "Cafe_scene.compressed.ply", "Cafe_scene.unreal.json"]  # fmt: skip
    m = json.loads(paths[-1].read_text())
    assert m["num_splats"] == {"input": 300, "after_crop": 297, "written": 200}
    assert m["destination_path"] == "/Game/Splats/Cafe_scene"
    assert read_ply(paths[0]).sh_degree == 3 and len(read_ply(paths[0])) == 200
    assert len(torch.tensor(m["frame"]["sfm_to_ply_4x4"])) == 4


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
