"""The capture coach: each degradation of a capture is named as its cause, from measurements.

Small synthetic inputs: textured photos (some blurred), hand-made camera models with tracks
(a ring, half a ring, photos taken from one spot), and held-out previews whose render differs
from the photo in one known way (exposure, a moved object, blur).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from fake_run import _rotmat_to_qvec, intrinsics, make_fake_run, ring_cameras
from PIL import Image, ImageFilter
from test_report import parse

from splatkit.metrics import RunMetrics
from splatkit.report import build_report, coach
from splatkit.report.coach import Model

W, H = 160, 120


def texture(seed: int, size=(W, H)) -> Image.Image:
    """A photo-like random texture (blobs at several scales)."""
    rng = np.random.default_rng(seed)
    a = np.zeros((size[1], size[0], 3))
    for s in (4, 8, 16):
        small = rng.random((size[1] // s + 1, size[0] // s + 1, 3))
        a += np.kron(small, np.ones((s, s, 1)))[: size[1], : size[0]]
    return Image.fromarray((a / 3 * 255).astype(np.uint8))


def ring(n: int, arc_deg: float = 360.0, radius: float = 4.0) -> list[np.ndarray]:
    """``n`` cameras on an arc of ``arc_deg`` around the origin, looking at it (fake_run's)."""
    full = ring_cameras(n=int(round(n * 360 / arc_deg)), radius=radius)
    return full[:n]


def model(w2cs, points: np.ndarray, seen_by: list[list[int]]) -> Model:
    w2c = np.stack(w2cs)
    c2w = np.linalg.inv(w2c)
    K = intrinsics()
    return Model([f"{i + 1:04d}.jpg" for i in range(len(w2cs))], c2w[:, :3, 3], w2c[:, 2, :3].copy(),
                 w2c, np.stack([K] * len(w2cs)), np.array([[W, H]] * len(w2cs)), points,
                 [np.array(s, int) for s in seen_by])


def blob_points(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3)) - 0.5) * np.array([2.0, 1.0, 2.0])


def seen_by_all_facing(w2cs, points) -> list[list[int]]:
    """Each point is seen by every camera it is in front of and in the image of."""
    K = intrinsics()
    out = []
    for p in points:
        cams = []
        for i, m in enumerate(w2cs):
            x = m[:3, :3] @ p + m[:3, 3]
            u, v = (K @ x)[:2] / x[2]
            if x[2] > 0 and 0 <= u < W and 0 <= v < H:
                cams.append(i)
        out.append(cams)
    return out


# -- capture-level findings --------------------------------------------------------------------
def test_one_side_left_out_is_named_with_its_angle():
    pts = blob_points()
    half = ring(8, arc_deg=180)
    m = model(half, pts, seen_by_all_facing(half, pts))
    centre, around = coach.aim_point(m)
    assert around and np.linalg.norm(centre) < 0.5  # the cameras aim at the object
    gap, _ = coach.side_gap(m, np.array([0.0, -1.0, 0.0]), centre)
    assert 200 < gap < 205  # 8 cameras 22.5 degrees apart: 360 - 7 x 22.5
    full = ring(16)
    m_full = model(full, pts, seen_by_all_facing(full, pts))
    gap_full, _ = coach.side_gap(m_full, np.array([0.0, -1.0, 0.0]), coach.aim_point(m_full)[0])
    assert gap_full < 30
    found, meas = coach._capture_findings(m, coach.coverage(m, coach.up_vector(m)), {}, 8)
    side = [f for f in found if f.key == "side"]
    assert side and "never photographed" in side[0].text and meas["side_gap_deg"] > 200
    found_full, _ = coach._capture_findings(m_full, coach.coverage(m_full, coach.up_vector(m_full)),
                                            {}, 16)
    assert not [f for f in found_full if f.key == "side"]
    # the same half ring in front of a wall (points on a plane behind the subject): there is no
    # back to walk around to, so no side is called missing
    rng = np.random.default_rng(1)
    fw = half[0][2, :3] + half[-1][2, :3]
    fw /= np.linalg.norm(fw)
    a = np.cross(fw, [0.0, 1.0, 0.0])
    wall = 1.2 * fw + np.outer(rng.uniform(-2, 2, 300), a) + np.outer(rng.uniform(-1, 1, 300), [0, 1, 0])
    pts_w = np.concatenate([pts, wall])
    m_wall = model(half, pts_w, seen_by_all_facing(half, pts_w))
    assert coach.backed_by_wall(m_wall, coach.aim_point(m_wall)[0])
    assert not coach.backed_by_wall(m, centre)
    found_wall, meas_wall = coach._capture_findings(m_wall, None, {}, 8)
    assert meas_wall["against_wall"] and not [f for f in found_wall if f.key == "side"]


def test_photos_from_one_spot_are_called_turning_not_walking():
    pts = blob_points()
    walk = ring(12, arc_deg=270)
    # four more photos from the spot of camera 0, turned by a few degrees (pure rotation)
    turned = []
    for yaw in (-8, -4, 4, 8):
        a = math.radians(yaw)
        Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        m = walk[0].copy()
        c = -walk[0][:3, :3].T @ walk[0][:3, 3]
        m[:3, :3] = Ry @ walk[0][:3, :3]
        m[:3, 3] = -m[:3, :3] @ c
        turned.append(m)
    cams = walk + turned
    m = model(cams, pts, seen_by_all_facing(cams, pts))
    still = coach.same_spot(m)
    assert set(still) == {m.names[0]} | {m.names[i] for i in range(12, 16)}
    found, meas = coach._capture_findings(m, None, {}, len(cams))
    f = next(f for f in found if f.key == "no_parallax")
    assert "same spot" in f.text and meas["same_spot"] == 5
    walked = model(walk, pts, seen_by_all_facing(walk, pts))
    assert coach.same_spot(walked) == []
    # a video's next frame: a small step along the path, barely turned, is not turning
    step = walk[0].copy()
    c = -walk[0][:3, :3].T @ walk[0][:3, 3]
    step[:3, 3] = -step[:3, :3] @ (c + 0.05 * step[0, :3])  # 5 cm sideways at 4 m, same heading
    frames = model(walk + [step], pts, seen_by_all_facing(walk + [step], pts))
    assert coach.same_spot(frames) == []


def test_the_map_counts_the_photos_that_saw_each_part():
    pts = np.array([[x, 0.0, z] for x in np.linspace(-1, 1, 12) for z in np.linspace(-1, 1, 12)])
    cams = ring(8)
    left = pts[:, 0] < 0  # the left half seen by 2 photos, the right half by all 8
    seen = [[0, 1] if lft else list(range(8)) for lft in left]
    m = model(cams, pts, seen)
    cov = coach.coverage(m, np.array([0.0, -1.0, 0.0]))
    counts = cov["photos"][cov["photos"] > 0]
    assert set(counts.tolist()) == {2, 8}
    assert 0.4 < cov["thin_share"] < 0.6
    # a hole in the middle: unseen cells inside the outline
    hole = (np.abs(pts[:, 0]) < 0.3) & (np.abs(pts[:, 2]) < 0.3)
    m2 = model(cams, pts[~hole], [s for s, h in zip(seen, hole, strict=True) if not h])
    cov2 = coach.coverage(m2, np.array([0.0, -1.0, 0.0]))
    assert cov2["unseen"].sum() >= 4 and cov2["unseen_share"] > 0.02
    assert cov["unseen"].sum() == 0


def test_blurry_photos_are_found_by_sharpness(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        im = texture(i)
        if i in (2, 5):
            im = im.filter(ImageFilter.BoxBlur(4))
        im.save(folder / f"{i + 1:04d}.jpg", quality=95)
    rel = coach.relative(coach.sharpness(folder))
    blurry = sorted(n for n, r in rel.items() if r < coach.BLUR_RATIO)
    assert blurry == ["0003.jpg", "0006.jpg"]


def test_unplaced_photos_get_their_kind(tmp_path):
    (tmp_path / "sfm_work").mkdir()
    reasons = {
        "a.jpg": "no matches with any other photo: it does not overlap them",
        "b.jpg": "few matches with the other photos (at most 12, with c.jpg): too little overlap",
        "c.jpg": "it matches d.jpg (80 points) but could not be fixed in place (too little change "
                 "of viewpoint, or repetitive texture)",
        "d.jpg": "blurry (sharpness 12% of the typical photo here)",
        "e.jpg": "it forms a separate group with f.jpg that shares nothing with the placed photos",
        "g.jpg": "no matches with any other photo: it does not overlap them",
    }
    (tmp_path / "sfm_work" / "inputs.json").write_text(json.dumps(
        {"unregistered": list(reasons), "unregistered_reasons": reasons}))
    rows = coach.unplaced(tmp_path, RunMetrics(), {"g.jpg": 0.1})  # g.jpg measured blurry here
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds == {"a.jpg": "no_overlap", "b.jpg": "no_overlap", "c.jpg": "no_parallax",
                     "d.jpg": "blurry", "e.jpg": "elsewhere", "g.jpg": "blurry"}
    found = coach._unplaced_findings(rows, 20)
    assert {f.key for f in found} == {"no_overlap", "no_parallax", "blurry", "elsewhere"}
    assert next(f for f in found if f.key == "blurry").photos == ["d.jpg", "g.jpg"]


def write_preview(path: Path, photo: np.ndarray, render: np.ndarray) -> None:
    from splatkit.evaluate import preview_image

    path.parent.mkdir(parents=True, exist_ok=True)
    preview_image(photo, render).save(path)


# -- the whole run: report and metrics ---------------------------------------------------------
def write_model(sparse: Path, w2cs, points: np.ndarray, seen_by: list[list[int]]) -> None:
    """COLMAP binary model with tracks (each observation a 2D point of its image)."""
    K = intrinsics()
    sparse.mkdir(parents=True, exist_ok=True)
    obs: list[list[tuple[float, float, int]]] = [[] for _ in w2cs]
    tracks = []
    for j, (p, cams) in enumerate(zip(points, seen_by, strict=True)):
        tr = []
        for i in cams:
            x = w2cs[i][:3, :3] @ p + w2cs[i][:3, 3]
            u, v = (K @ x)[:2] / x[2]
            tr.append((i + 1, len(obs[i])))
            obs[i].append((u, v, j + 1))
        tracks.append(tr)
    with open(sparse / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<iiQQ", 1, 1, W, H))
        f.write(struct.pack("<4d", K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    with open(sparse / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(w2cs)))
        for i, mtx in enumerate(w2cs):
            f.write(struct.pack("<i4d3di", i + 1, *_rotmat_to_qvec(mtx[:3, :3]), *mtx[:3, 3], 1))
            f.write(f"{i + 1:04d}.jpg".encode() + b"\0")
            f.write(struct.pack("<Q", len(obs[i])))
            for u, v, pid in obs[i]:
                f.write(struct.pack("<ddq", u, v, pid))
    with open(sparse / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for j, (p, tr) in enumerate(zip(points, tracks, strict=True)):
            f.write(struct.pack("<Q3d3BdQ", j + 1, *p, 128, 128, 128, 0.5, len(tr)))
            for img, idx in tr:
                f.write(struct.pack("<ii", img, idx))


@pytest.fixture()
def half_ring_run(tmp_path):
    """A fake run whose 8 cameras cover half a ring, 2 of them blurry, one view exposed darker."""
    out = make_fake_run(tmp_path / "run")
    cams = ring(8, arc_deg=180)
    pts = blob_points(400)
    write_model(out / "sparse" / "0", cams, pts, seen_by_all_facing(cams, pts))
    work = out / "work" / "images"
    work.mkdir(parents=True)
    for i in range(8):
        im = texture(10 + i)
        if i in (3, 6):
            im = im.filter(ImageFilter.BoxBlur(4))
        im.save(work / f"{i + 1:04d}.jpg", quality=95)
    photo = np.asarray(texture(10), dtype=np.float32)
    write_preview(out / "previews" / "0001.png", photo.astype(np.uint8),
                  (photo * 0.6).astype(np.uint8))
    m = json.loads((out / "metrics.json").read_text())
    m["per_image"] = [{"name": "0001.jpg", "psnr": 16.0, "ssim": 0.5}]
    (out / "metrics.json").write_text(json.dumps(m))
    return out


def test_report_shows_the_coach_and_metrics_keep_its_diagnosis(half_ring_run):
    out = half_ring_run
    path = build_report(out)
    page = parse(path)
    text = path.read_text()
    saved = json.loads((out / "metrics.json").read_text())["coach"]
    assert page.keys["coach.diagnosis"] == saved["diagnosis"]
    assert saved["diagnosis"].startswith("Weak result (20.0 dB)")
    keys = {f["key"] for f in saved["findings"]}
    assert {"side", "blurry", "exposure"} <= keys, keys
    assert "never photographed" in text and "0004.jpg" in text and "0007.jpg" in text
    assert saved["views"] == [{"name": "0001.jpg", "psnr": 16.0, "cause": "exposure"}]
    assert 1 <= len(saved["advice"]) <= 2
    assert len(page.coach_imgs) == 2  # the map from above, the worst view's error picture
    before = (out / "metrics.json").read_text()
    build_report(out)  # rebuilding changes nothing
    assert (out / "metrics.json").read_text() == before


def test_coach_of_an_unfinished_run_writes_no_metrics(tmp_path):
    out = make_fake_run(tmp_path / "run")
    (out / "metrics.json").unlink()
    build_report(out)
    assert not (out / "metrics.json").exists()
    c = coach.analyse(out)
    assert c.diagnosis  # says something without measurements


def test_diagnosis_grades_and_names_the_main_cause():
    f = [coach.Finding("blurry", 0.6, "9 placed photos are blurry", "x"),
         coach.Finding("thin", 0.1, "much was thin", "y")]
    assert coach.diagnosis(23.4, f) == "Fair result (23.4 dB): 9 placed photos are blurry."
    assert coach.diagnosis(31.0, []) == "Good result (31.0 dB): no capture problem found."
    two = [f[0], coach.Finding("side", 0.5, "one side was never photographed", "z")]
    assert coach.diagnosis(18.0, two).endswith("; also one side was never photographed.")


def test_courtyard_and_facade_are_not_objects_with_a_missing_side():
    """Cameras on a ring looking across a courtyard at the walls beyond them: no object in the
    middle, so no side to walk around to. A relief on a wall (every point on one plane facing
    the cameras): the back cannot be photographed."""
    rng = np.random.default_rng(2)
    cams = ring(12)
    a = rng.uniform(0, 2 * np.pi, 600)
    walls = np.stack([7 * np.sin(a), rng.uniform(-1.5, 0.5, 600), -7 * np.cos(a)], 1)
    m = model(cams, walls, [list(range(12))] * len(walls))
    assert not coach.aim_point(m)[1]
    half = ring(8, arc_deg=180)
    fw = half[0][2, :3] + half[-1][2, :3]
    fw /= np.linalg.norm(fw)
    side = np.cross(fw, [0.0, 1.0, 0.0])
    relief = (0.05 * np.outer(rng.normal(size=500), fw) + np.outer(rng.uniform(-1.5, 1.5, 500), side)
              + np.outer(rng.uniform(-1, 1, 500), [0.0, 1.0, 0.0]))
    m2 = model(half, relief, seen_by_all_facing(half, relief))
    centre, around = coach.aim_point(m2)
    assert around and coach.backed_by_wall(m2, centre)


def test_pairs_without_parallax_mean_turning(tmp_path, monkeypatch):
    """SfM's own measure (the share of matched pairs a homography explains) feeds the coach."""
    import splatkit.sfm.database as database

    (tmp_path / "sfm_work").mkdir()
    (tmp_path / "sfm_work" / "database.db").write_bytes(b"")
    monkeypatch.setattr(database, "no_parallax_share", lambda db: 0.95)
    meas = {}
    found = coach._pairs_finding(tmp_path, meas)
    assert [f.key for f in found] == ["no_parallax"] and "95%" in found[0].text
    assert coach._pairs_finding(tmp_path, {"against_wall": True}) == []  # a flat wall fits too
    monkeypatch.setattr(database, "no_parallax_share", lambda db: 0.73)  # the fox's video frames
    assert coach._pairs_finding(tmp_path, meas) == [] and meas["no_parallax_pairs"] == 0.73
