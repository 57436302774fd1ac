"""Metric scale from evidence (splatkit/export/scale.py), each source on a case with a known answer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from splatkit.errors import UserError
from splatkit.export import scale as S
from splatkit.scene import Scene
from splatkit.up import Plane
from tests.unreal_util import cameras_from_w2c, centers, look_dir, strecha_w2c

TRUE = 0.37  # metres per scene unit of the constructed scenes


def strecha_in_sfm_units(name: str, seed: int = 0) -> tuple[Scene, np.ndarray, torch.Tensor]:
    """The Strecha ground-truth cameras (metres, up -Z) seen by an 'SfM' that works in units
    of TRUE metres, rotated; returns (scene, ground-truth centres in metres, up in SfM frame)."""
    w2c = strecha_w2c(name)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    from splatkit.render.projection import quat_to_rotmat

    R = quat_to_rotmat((q / q.norm())[None])[0]
    c = centers(w2c)
    w2c_sfm = w2c.clone()
    w2c_sfm[:, :3, :3] = w2c[:, :3, :3] @ R.T  # world' = R x / TRUE
    w2c_sfm[:, :3, 3] = -(w2c_sfm[:, :3, :3] @ ((c @ R.T) / TRUE)[:, :, None])[:, :, 0]
    cams = cameras_from_w2c(w2c_sfm)
    pts = torch.zeros(0, 3)
    return Scene(cams, None, pts, pts), c.numpy(), R @ torch.tensor([0, 0, -1.0], dtype=torch.float64)


def gps_of(c_m: np.ndarray, rng, sigma: float) -> list[tuple]:
    import pymap3d

    x, y, h = c_m[:, 0], -c_m[:, 1], -c_m[:, 2]  # up -Z: turn half a turn about x (right-handed)
    e = x + rng.normal(0, sigma, len(x))
    n = y + rng.normal(0, sigma, len(x))
    lat, lon, alt = pymap3d.enu2geodetic(e, n, h + rng.normal(0, 3 * sigma + 1e-9, len(x)), 46.5, 6.6, 400)
    return list(zip(lat, lon, alt, strict=True))


def test_gps_exact_and_noisy(shared_datasets):
    scene, c_m, up = strecha_in_sfm_units("strecha_castle_p19")
    rng = np.random.default_rng(0)
    exact = dict(zip(scene.cameras.names, gps_of(c_m, rng, 0.0), strict=True))
    e = S.scale_from_gps(scene, exact, up)
    assert e.source == "gps" and e.metres_per_unit == pytest.approx(TRUE, rel=1e-4)
    errors, uncs = [], []
    for _ in range(30):
        noisy = dict(zip(scene.cameras.names, gps_of(c_m, rng, 1.0), strict=True))
        e = S.scale_from_gps(scene, noisy, up)
        errors.append(e.metres_per_unit / TRUE - 1)
        uncs.append(e.uncertainty)
    # 1 m GPS noise over a 40 m courtyard: within 2%, and the reported uncertainty is honest
    assert np.median(np.abs(errors)) < 0.02
    assert 0.5 < np.std(errors) / np.mean(uncs) < 2.0


def test_gps_is_robust_to_a_wild_fix(shared_datasets):
    scene, c_m, up = strecha_in_sfm_units("strecha_castle_p19", seed=1)
    rng = np.random.default_rng(1)
    fixes = gps_of(c_m, rng, 0.3)
    lat, lon, alt = fixes[3]
    fixes[3] = (lat + 0.001, lon, alt)  # one photo 110 m off
    e = S.scale_from_gps(scene, dict(zip(scene.cameras.names, fixes, strict=True)), up)
    assert abs(e.metres_per_unit / TRUE - 1) < 0.02


def test_read_photo_gps(tmp_path):
    d = tmp_path / "work" / "images"
    d.mkdir(parents=True)
    photos = {
        "a.jpg": {"photo": {"name": "a.jpg", "gps": [46.5, 6.6, 400.0]}},
        "b.jpg": {"photo": {"name": "b.jpg", "gps": None}},
        "c.jpg": {"photo": {"name": "c.jpg", "gps": [float("nan"), 6.6, 400.0]}},
    }
    (d / "ingest.json").write_text(json.dumps({"src": "x", "photos": photos}))
    assert S.read_photo_gps(tmp_path) == {"a.jpg": (46.5, 6.6, 400.0)}
    assert S.read_photo_gps(tmp_path / "nowhere") == {}


def _line_scene(n: int = 5, spacing: float = 2.0) -> Scene:
    w2c = torch.stack([look_dir([i * spacing, 0, 1.5], [0, 1.0, 0], [0, 0, 1.0]) for i in range(n)])
    g = torch.Generator().manual_seed(0)
    wall = torch.cat(
        [
            torch.rand(4000, 1, generator=g) * 12 - 2,
            torch.full((4000, 1), 5.0),
            torch.rand(4000, 1, generator=g) * 4,
        ],
        1,
    ).double()
    return Scene(cameras_from_w2c(w2c), None, wall.float(), wall.float())


def test_known_distance():
    scene = _line_scene()
    e = S.scale_from_known_distance("000.jpg,003.jpg,3.0", scene)  # 6 units apart
    assert e.metres_per_unit == pytest.approx(0.5) and e.uncertainty == pytest.approx(0.02 / 3.0)
    e = S.scale_from_known_distance("000.jpg,003.jpg,3.0,0.3", scene)
    assert e.uncertainty == pytest.approx(0.1)
    for bad in ("000.jpg,003.jpg", "000.jpg,nope.jpg,3", "000.jpg,003.jpg,-1", "000.jpg,000.jpg,2"):
        with pytest.raises(UserError):
            S.scale_from_known_distance(bad, scene)


def test_known_size():
    """A 2 m tall door on the wall 5 units in front of camera 000 (1 unit = 0.8 m)."""
    scene = _line_scene()
    K = scene.cameras.K[0].double()
    # camera at (0, 0, 1.5) looking +Y; door edge from z = 0.2 to z = 2.7 on the wall (y = 5)
    top = K[1, 1] * -(2.7 - 1.5) / 5 + K[1, 2]
    bottom = K[1, 1] * -(0.2 - 1.5) / 5 + K[1, 2]
    x = float(K[0, 2])
    e = S.scale_from_known_size(f"000.jpg,{x},{float(top)},{x},{float(bottom)},2.0", scene)
    assert e.source == "known-size" and e.metres_per_unit == pytest.approx(2.0 / 2.5, rel=0.01)
    assert e.uncertainty < 0.05
    with pytest.raises(UserError):  # an end beside the wall: no points around it
        S.scale_from_known_size(f"000.jpg,20,{float(top)},{x},{float(bottom)},2.0", scene)


def test_eye_height_from_the_ground_plane():
    scene = _line_scene()
    ground = Plane(torch.tensor([0, 0, 1.0], dtype=torch.float64), -0.5)  # floor 2 units below
    e = S.scale_from_eye_height(scene.cameras.centers, ground)
    assert e.metres_per_unit == pytest.approx(S.EYE_HEIGHT_M / 2.0)
    assert e.uncertainty == pytest.approx(S.EYE_HEIGHT_SPREAD_M / S.EYE_HEIGHT_M)
    assert S.scale_from_eye_height(scene.cameras.centers, Plane(ground.normal, 5.0)) is None


def test_choose_scale_prefers_the_surer_source(shared_datasets):
    scene, c_m, up = strecha_in_sfm_units("strecha_castle_p19", seed=2)
    gps = dict(zip(scene.cameras.names, gps_of(c_m, np.random.default_rng(2), 0.5), strict=True))
    h = scene.cameras.centers.double() @ up
    ground = Plane(up, float(h.median()) - 1.4 / TRUE)
    est, cands = S.choose_scale("auto", scene, ground, up, gps)
    assert est.source == "gps" and {c.source for c in cands} == {"gps", "eye-height"}
    est, _ = S.choose_scale("eye", scene, ground, up, gps)
    assert est.source == "eye-height"
    est, _ = S.choose_scale("2.5", scene, ground, up, gps)
    assert est.source == "factor" and est.metres_per_unit == 2.5
    est, cands = S.choose_scale("auto", None, None, None)
    assert est.source == "none" and est.metres_per_unit == 1.0 and not cands
    with pytest.raises(UserError):
        S.choose_scale("gps", scene, ground, up, {})
    assert math.isfinite(S.ScaleEstimate(1.0, "x", None, "y").metres_per_unit)
