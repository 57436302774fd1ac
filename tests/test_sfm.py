"""SfM on Strecha fountain-P11 (downscaled) against its LIDAR ground truth, caching, loaders.

The fountain run (about 15-25 s on 2 cores at 800 px) happens once, in a module fixture.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch
from PIL import Image
from sfm_util import small_copies

from splatkit.config import IngestConfig, SfmConfig
from splatkit.errors import UserError
from splatkit.events import EventBus
from splatkit.frames import GL_TO_CV
from splatkit.ingest import ingest
from splatkit.sfm import (
    inputs_key,
    load_colmap_project,
    load_scene,
    load_transforms_json,
    read_sfm_record,
    run_sfm,
)
from splatkit.sfm.align import read_strecha_cameras, scene_errors, umeyama
from splatkit.sfm.colmap import REUSED_TEXT

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOUNTAIN = DATA / "strecha_fountain_p11"
FOX = DATA / "fox"
SIZE = 800
#: K.txt of fountain-P11 at full resolution (3072 x 2048).
GT_F = (2759.48, 2764.16)

needs_fountain = pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no strecha_fountain_p11")
needs_fox = pytest.mark.skipif(not FOX.is_dir(), reason="no fox dataset")


def _collect(bus: EventBus) -> list:
    seen: list = []
    bus.subscribe(seen.append)
    return seen


@pytest.fixture(scope="module")
def fountain(tmp_path_factory):
    if not FOUNTAIN.is_dir():
        pytest.skip("no strecha_fountain_p11")
    tmp = tmp_path_factory.mktemp("fountain")
    src = tmp / "photos"
    shutil.copytree(FOUNTAIN / "images", src)
    photos = ingest(src, tmp / "work", IngestConfig(max_image_size=SIZE))
    cfg = SfmConfig(max_image_size=SIZE, num_threads=2)
    bus = EventBus()
    seen = _collect(bus)
    t = time.time()
    scene = run_sfm(photos, tmp / "out", cfg, bus)
    return {
        "tmp": tmp,
        "photos": photos,
        "cfg": cfg,
        "scene": scene,
        "events": seen,
        "seconds": time.time() - t,
    }


@needs_fountain
def test_fountain_all_registered(fountain):
    scene = fountain["scene"]
    assert len(scene.cameras) == 11
    assert scene.unregistered == []
    assert scene.cameras.names == sorted(scene.cameras.names)
    assert scene.points.shape[0] > 1000 and scene.points.dtype == torch.float32
    assert scene.point_colors.min() >= 0 and scene.point_colors.max() <= 1
    rec = read_sfm_record(fountain["tmp"] / "out")
    assert rec["registered"] == 11 and rec["total"] == 11
    assert rec["mean_reprojection_error_px"] < 1.0
    texts = [e.text for e in fountain["events"] if e.kind == "message"]
    assert "Placed 11 of 11 photos." in texts and REUSED_TEXT not in texts
    # INRIA split: every 8th by name is a test view
    assert scene.test_idx == [0, 8] and len(scene.train_idx) == 9


@needs_fountain
def test_fountain_poses_match_ground_truth(fountain):
    """After a similarity alignment of the centres, rotations agree with the LIDAR ground truth.

    Measured at 800 px (pycolmap 4.2.1): median 0.15 deg, max 0.17 deg, median centre error 0.04 %
    of the scene extent (3 mm). With the principal point held at the image centre (COLMAP's
    default) the rotations are off by a near-constant 0.47 deg: the true principal point is 15-17
    px (full resolution) away from the centre. Bounds: 0.5 deg as asked, and 0.5 % of the extent.
    """
    scene = fountain["scene"]
    err = scene_errors(scene, read_strecha_cameras(FOUNTAIN / "gt_dense_cameras"))
    assert err.median_rot_deg < 0.5, err.rot_deg
    assert err.max_rot_deg < 0.5, err.rot_deg
    assert err.median_center_frac < 0.005, err.center
    # the shared focal length, rescaled to full resolution, is within 1 % of K.txt
    w = int(scene.cameras.width[0])
    f_full = float(scene.cameras.K[0, 0, 0]) * 3072 / (w + 0.0)
    assert abs(f_full - GT_F[0]) / GT_F[0] < 0.01, f_full


@needs_fountain
def test_undistorted_outputs_and_load_scene_round_trip(fountain):
    out = fountain["tmp"] / "out"
    scene = fountain["scene"]
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert {c.model.name for c in rec.cameras.values()} == {"PINHOLE"}
    again = load_scene(out)
    assert again.cameras.names == scene.cameras.names
    assert torch.equal(again.cameras.K, scene.cameras.K)
    assert torch.equal(again.cameras.world_to_cam, scene.cameras.world_to_cam)
    assert torch.equal(again.points, scene.points)
    assert again.image_dir == out / "images"
    for i, n in enumerate(again.cameras.names):
        with Image.open(again.image_dir / n) as im:
            assert im.size == (int(again.cameras.width[i]), int(again.cameras.height[i]))
    # world_to_cam is COLMAP's x_cam = R x_world + t: points project in front, inside the image
    c = again.cameras
    x = again.points.double()
    xc = (c.world_to_cam[0, :3, :3].double() @ x.T).T + c.world_to_cam[0, :3, 3].double()
    seen = xc[:, 2] > 0
    uv = (c.K[0].double() @ xc[seen].T).T
    uv = uv[:, :2] / uv[:, 2:]
    inside = (
        (uv[:, 0] >= 0) & (uv[:, 0] <= c.width[0]) & (uv[:, 1] >= 0) & (uv[:, 1] <= c.height[0])
    )
    assert seen.float().mean() > 0.95 and inside.float().mean() > 0.5
    # the same folder read as an existing COLMAP project
    proj = load_colmap_project(out)
    assert torch.equal(proj.cameras.world_to_cam, scene.cameras.world_to_cam)


@needs_fountain
def test_distorted_colmap_project_is_undistorted(fountain, tmp_path):
    """A COLMAP project with a SIMPLE_RADIAL camera: undistorted into out_dir, poses kept."""
    proj = tmp_path / "proj"
    shutil.copytree(fountain["tmp"] / "out" / "sfm_work" / "model", proj / "sparse" / "0")
    shutil.copytree(fountain["photos"].image_dir, proj / "images")
    with pytest.raises(UserError, match="lens distortion"):
        load_colmap_project(proj)
    scene = load_colmap_project(proj, out_dir=tmp_path / "und")
    assert torch.allclose(scene.cameras.world_to_cam, fountain["scene"].cameras.world_to_cam)
    assert (tmp_path / "und" / "sparse" / "0" / "cameras.bin").exists()


@needs_fountain
def test_cache_is_reused(fountain):
    bus = EventBus()
    seen = _collect(bus)
    t = time.time()
    scene = run_sfm(fountain["photos"], fountain["tmp"] / "out", fountain["cfg"], bus)
    dt = time.time() - t
    texts = [e.text for e in seen if e.kind == "message"]
    assert REUSED_TEXT in texts and "Placed 11 of 11 photos." in texts
    assert dt < max(2.0, 0.2 * fountain["seconds"]), (dt, fountain["seconds"])
    assert torch.equal(scene.cameras.world_to_cam, fountain["scene"].cameras.world_to_cam)
    # other options, or a changed photo, give another key (so no stale reuse)
    cfg2 = SfmConfig(**{**fountain["cfg"].__dict__, "max_features": 1000})
    assert inputs_key(fountain["photos"], cfg2) != inputs_key(fountain["photos"], fountain["cfg"])
    record = json.loads((fountain["tmp"] / "out" / "sfm_work" / "inputs.json").read_text())
    assert record["key"] == inputs_key(fountain["photos"], fountain["cfg"])


def test_unrelated_photos_give_a_plain_user_error(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        noise = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
        Image.fromarray(noise).save(src / f"n{k}.png")
    photos = ingest(src, tmp_path / "work", IngestConfig(max_image_size=200))
    with pytest.raises(UserError) as err:
        run_sfm(photos, tmp_path / "out", SfmConfig(max_image_size=200, num_threads=2))
    assert "overlap by about two thirds" in str(err.value)
    assert "3 photos" in err.value.what


def _fox_subset(tmp_path: Path, k: int = 4) -> Path:
    meta = json.loads((FOX / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:k]
    d = tmp_path / "fox"
    (d / "images").mkdir(parents=True)
    for fr in meta["frames"]:
        shutil.copy(FOX / fr["file_path"], d / fr["file_path"])
    (d / "transforms.json").write_text(json.dumps(meta))
    return d


@needs_fox
def test_convention_transforms_json_is_opengl_c2w(tmp_path):
    """transforms.json holds OpenGL camera-to-world matrices: we flip the camera y and z axes."""
    d = _fox_subset(tmp_path)
    meta = json.loads((d / "transforms.json").read_text())
    scene = load_transforms_json(d)
    cams = scene.cameras
    assert cams.names == sorted(fr["file_path"] for fr in meta["frames"])
    by_name = {fr["file_path"]: np.asarray(fr["transform_matrix"]) for fr in meta["frames"]}
    for i, n in enumerate(cams.names):
        c2w_cv = cams.cam_to_world[i].double().numpy()
        np.testing.assert_allclose(c2w_cv, by_name[n] @ GL_TO_CV, atol=1e-5)
        # OpenCV camera: +z forward is OpenGL's -z; +y down is OpenGL's -y
        np.testing.assert_allclose(c2w_cv[:3, 2], -by_name[n][:3, 2], atol=1e-5)
        np.testing.assert_allclose(c2w_cv[:3, 1], -by_name[n][:3, 1], atol=1e-5)
    K = cams.K[0]
    assert K[0, 0] == pytest.approx(meta["fl_x"]) and K[1, 1] == pytest.approx(meta["fl_y"])
    assert K[0, 2] == pytest.approx(meta["cx"]) and K[1, 2] == pytest.approx(meta["cy"])
    assert (int(cams.width[0]), int(cams.height[0])) == (1080, 1920)
    # the fox is in front of every camera: the point nearest all optical axes has depth > 0
    C = cams.centers.double().numpy()
    z = cams.cam_to_world[:, :3, 2].double().numpy()
    A = sum(np.eye(3) - np.outer(a, a) for a in z)
    b = sum((np.eye(3) - np.outer(a, a)) @ c for a, c in zip(z, C, strict=True))
    X = np.linalg.solve(A, b)
    w2c = cams.world_to_cam.double().numpy()
    depth = (w2c[:, :3, :3] @ X + w2c[:, :3, 3])[:, 2]
    assert (depth > 0).all(), depth


@needs_fox
def test_transforms_json_undistorted_into_out_dir(tmp_path):
    d = _fox_subset(tmp_path, k=3)
    plain = load_transforms_json(d / "transforms.json")
    scene = load_transforms_json(d / "transforms.json", out_dir=tmp_path / "out")
    assert scene.cameras.names == plain.cameras.names
    # the undistorter changes K and the image size, never the poses
    assert torch.allclose(scene.cameras.world_to_cam, plain.cameras.world_to_cam, atol=1e-5)
    for i, n in enumerate(scene.cameras.names):
        with Image.open(scene.image_dir / n) as im:
            assert im.size == (int(scene.cameras.width[i]), int(scene.cameras.height[i]))
    f = float(scene.cameras.K[0, 0, 0])
    assert abs(f - float(plain.cameras.K[0, 0, 0])) / f < 0.2


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))
    y = 2.5 * x @ R.T + np.array([1.0, -2.0, 3.0])
    s, R2, t = umeyama(x, y)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1, -2, 3])


@needs_fountain
def test_global_mapper_through_the_cli(tmp_path, capsys):
    """``splatkit sfm --mapper global`` (GLOMAP in pycolmap) on fountain at 400 px."""
    from splatkit.cli import main

    src = tmp_path / "photos"
    src.mkdir()
    for f in sorted((FOUNTAIN / "images").glob("*.jpg")):
        with Image.open(f) as im:
            im.draft("RGB", (800, 800))
            im = im.convert("RGB")
            im.thumbnail((400, 400))
            im.save(src / f.name, quality=92)
    rc = main(["sfm", str(src), "-o", str(tmp_path / "out"), "--mapper", "global"])
    assert rc == 0, capsys.readouterr()
    rec = read_sfm_record(tmp_path / "out")
    assert rec["mapper"] == "global" and rec["registered"] == 11
    err = scene_errors(load_scene(tmp_path / "out"), read_strecha_cameras(FOUNTAIN / "gt_dense_cameras"))
    assert err.median_rot_deg < 0.5 and err.median_center_frac < 0.01, (err.rot_deg, err.center)


def test_reasons_for_photos_left_out():
    from splatkit.sfm.diagnose import clusters, explain, failure

    placed = {"a.jpg", "b.jpg", "c.jpg"}
    inliers = {
        "a.jpg": {"b.jpg": 500, "c.jpg": 400, "d.jpg": 12},
        "b.jpg": {"a.jpg": 500, "c.jpg": 300},
        "c.jpg": {"a.jpg": 400, "b.jpg": 300, "f.jpg": 90},
        "d.jpg": {"a.jpg": 12},
        "e.jpg": {},
        "f.jpg": {"c.jpg": 90},
        "g.jpg": {"h.jpg": 200},
        "h.jpg": {"g.jpg": 200},
        "z.jpg": {"a.jpg": 300},
    }
    left = ["d.jpg", "e.jpg", "f.jpg", "g.jpg", "h.jpg", "z.jpg"]
    groups = clusters(left, inliers)
    assert groups == [["g.jpg", "h.jpg"]]
    flags = {"z.jpg": "blurry (sharpness 12% of the typical photo here)"}
    why = explain(left, placed, groups, inliers, flags)
    assert why["d.jpg"].startswith("few matches") and "12" in why["d.jpg"]
    assert why["e.jpg"].startswith("no matches")
    assert "could not be fixed in place" in why["f.jpg"]
    assert "separate group with h.jpg" in why["g.jpg"]
    assert why["z.jpg"].startswith("blurry")
    err = failure(list(inliers), 3, [sorted(placed), ["g.jpg", "h.jpg", "x.jpg"]], inliers, {})
    assert "fell apart into 2 groups" in err.what and "one place or object per folder" in err.todo
    err = failure(["p.jpg", "q.jpg", "r.jpg"], 0, [], {}, {})
    assert "could not place any of the 3" in err.what and "share enough detail" in err.what


@needs_fountain
def test_same_seed_same_poses(tmp_path):
    """Two identical runs in two folders give identical poses and points (issue 12, class 9).

    Retrieval pairs (vocabulary tree), RANSAC and the mapper are seeded (``SfmConfig.seed``).
    With one thread this holds every time (15 of 15 repeats); with two, about 1 run in 12
    differed (up to 0.16 in a pose entry): pycolmap's threads, so the promise (``--seed`` help)
    is made for one thread only.
    """
    src = small_copies(FOUNTAIN / "images", tmp_path / "photos", 320)
    cfg = SfmConfig(max_image_size=320, max_features=1024, matcher="retrieval",
                    retrieval_neighbours=5, num_threads=1)  # fmt: skip
    scenes, recs = [], []
    for k in range(2):
        photos = ingest(src, tmp_path / f"work{k}", IngestConfig(max_image_size=320))
        scenes.append(run_sfm(photos, tmp_path / f"out{k}", cfg))
        recs.append(read_sfm_record(tmp_path / f"out{k}"))
    a, b = scenes
    assert len(a.cameras) >= 9 and a.cameras.names == b.cameras.names
    assert torch.equal(a.cameras.world_to_cam, b.cameras.world_to_cam)
    assert torch.equal(a.cameras.K, b.cameras.K)
    assert torch.equal(a.points, b.points)
    assert recs[0]["pairs"]["matched"] == recs[1]["pairs"]["matched"]
