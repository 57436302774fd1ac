"""Phone-scan exports with poses (splatkit.scans): Polycam raw data and Record3D, on small
synthetic exports written in each app's documented layout from a textured room with known poses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pano_synth import look_at, render_pinhole, wall_textures
from PIL import Image
from scipy.spatial.transform import Rotation

from splatkit.config import RunConfig
from splatkit.errors import UserError
from splatkit.frames import GL_TO_CV
from splatkit.ingest import SourceKind
from splatkit.scans import scan_kind
from splatkit.sources import detect_source, import_cameras

W, H = 320, 240
K = np.array([[260.0, 0, 161.0], [0, 260.0, 119.0], [0, 0, 1]])
N = 8


def _poses() -> list[np.ndarray]:
    """OpenCV camera-to-world of N cameras on an arc, all looking at one corner of the room."""
    out = []
    for i in range(N):
        a = np.radians(-25 + 50 * i / (N - 1))
        c = np.array([1.2 * np.sin(a) - 0.5, -0.3 + 0.1 * np.cos(3 * a), 1.2 * np.cos(a) - 1.0])
        out.append(look_at(c, np.array([-1.0, -0.5, -4.0])))
    return out


@pytest.fixture(scope="module")
def frames():
    tex = wall_textures(seed=3)
    return [(m, *render_pinhole(m, K, W, H, tex)) for m in _poses()]


def _cfg() -> RunConfig:
    cfg = RunConfig()
    cfg.sfm.num_threads = 2
    cfg.sfm.max_features = 2048
    return cfg


def write_polycam(root: Path, frames, blurry: int | None = None) -> Path:
    kf = root / "keyframes"
    for d in ("corrected_images", "corrected_cameras", "depth", "confidence"):
        (kf / d).mkdir(parents=True)
    for i, (c2w_cv, img, z) in enumerate(frames):
        stem = str(1000 + 37 * i)  # Polycam names keyframes by timestamp-like ids
        Image.fromarray(img).save(kf / "corrected_images" / f"{stem}.jpg", quality=95)
        gl = c2w_cv @ GL_TO_CV  # ARKit camera axes: y up, looking down -z
        cam = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "width": W, "height": H,
               "blur_score": 10.0 if i == blurry else 80.0}
        cam |= {f"t_{r}{c}": float(gl[r, c]) for r in range(3) for c in range(4)}
        (kf / "corrected_cameras" / f"{stem}.json").write_text(json.dumps(cam))
        small = Image.fromarray(np.round(z * 1000).astype(np.uint16)).resize((W // 2, H // 2), Image.NEAREST)
        small.save(kf / "depth" / f"{stem}.png")
        Image.fromarray(np.full((H // 2, W // 2), 2, np.uint8)).save(kf / "confidence" / f"{stem}.png")
    return root


def write_record3d(root: Path, frames) -> Path:
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    poses = []
    for i, (c2w_cv, img, z) in enumerate(frames):
        Image.fromarray(img).save(root / "rgb" / f"{i}.jpg", quality=95)
        gl = c2w_cv @ GL_TO_CV
        poses.append([*Rotation.from_matrix(gl[:3, :3]).as_quat().tolist(), *gl[:3, 3].tolist()])
        # stands in for Record3D's OpenEXR depth (metres), which is copied, not decoded
        (root / "depth" / f"{i}.exr").write_bytes(z.astype(np.float32).tobytes())
    meta = {"K": K.T.reshape(-1).tolist(), "w": W, "h": H, "fps": 60, "dw": W // 2, "dh": H // 2,
            "poses": poses}
    (root / "metadata.json").write_text(json.dumps(meta))
    (root / "rgb" / "3(1).jpg").write_bytes((root / "rgb" / "3.jpg").read_bytes())  # a copy: ignored
    return root


def _check_scene(scene, frames, names):
    """Poses used directly (the given OpenCV poses), and triangulated points that agree with the
    depth the frames were rendered with (pins the ARKit -> OpenCV axes)."""
    assert scene.cameras.names == sorted(names)
    by = dict(zip(names, frames, strict=True))
    pts = scene.points.double().numpy()
    assert len(pts) > 100
    for i, n in enumerate(scene.cameras.names):
        c2w, _, z = by[n]
        w2c = scene.cameras.world_to_cam[i].double().numpy()
        np.testing.assert_allclose(w2c, np.linalg.inv(c2w), atol=1e-5)
        np.testing.assert_allclose(scene.cameras.K[i].double().numpy(), K, atol=1e-4)
    c2w, _, z = by[scene.cameras.names[0]]
    p = (pts - c2w[:3, 3]) @ c2w[:3, :3]
    p = p[p[:, 2] > 0.1]
    u = np.floor(K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]).astype(int)
    v = np.floor(K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]).astype(int)
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    assert ok.sum() > 50
    rel = np.abs(p[ok, 2] / z[v[ok], u[ok]] - 1)
    assert np.median(rel) < 0.02


def test_polycam_export(frames, tmp_path):
    src = write_polycam(tmp_path / "scan", frames, blurry=5)
    assert scan_kind(src) == "polycam" and detect_source(src) == "polycam"
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    photo_set, scene = import_cameras(src, SourceKind.POLYCAM, tmp_path / "out", _cfg())
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the export is only read
    names = [f"{1000 + 37 * i}.jpg" for i in range(N)]
    kept = [f for i, f in enumerate(frames) if i != 5]
    _check_scene(scene, kept, [n for i, n in enumerate(names) if i != 5])  # the blurry one is left out
    assert photo_set.source_kind is SourceKind.POLYCAM and len(photo_set.photos) == N - 1
    rec = json.loads((tmp_path / "out" / "depth" / "depth.json").read_text())
    assert rec["app"] == "Polycam" and rec["metres_per_unit"] == 0.001 and len(rec["frames"]) == N - 1
    row = rec["frames"][0]
    d = np.asarray(Image.open(tmp_path / "out" / "depth" / row["depth"]))
    assert d.dtype == np.uint16 and d.shape == (H // 2, W // 2)
    assert (tmp_path / "out" / "depth" / row["confidence"]).is_file()


def test_record3d_export(frames, tmp_path):
    src = write_record3d(tmp_path / "rec", frames)
    assert scan_kind(src) == "record3d" and detect_source(src) == "record3d"
    photo_set, scene = import_cameras(src, SourceKind.RECORD3D, tmp_path / "out", _cfg())
    _check_scene(scene, frames, [f"{i:05d}.jpg" for i in range(N)])
    assert len(photo_set.photos) == N  # 3(1).jpg, a copy, ignored
    rec = json.loads((tmp_path / "out" / "depth" / "depth.json").read_text())
    assert rec["app"] == "Record3D" and rec["metres_per_unit"] == 1.0
    assert [r["image"] for r in rec["frames"]] == [f"{i:05d}.jpg" for i in range(N)]
    kept = tmp_path / "out" / "depth" / rec["frames"][2]["depth"]
    assert kept.read_bytes() == (src / "depth" / "2.exr").read_bytes()


def test_polycam_refusals_name_the_file_and_field(frames, tmp_path):
    src = write_polycam(tmp_path / "scan", frames[:4])
    cams = src / "keyframes" / "corrected_cameras"
    first = sorted(cams.iterdir())[0]
    cam = json.loads(first.read_text())
    cam["fx"] = "wide"
    first.write_text(json.dumps(cam))
    with pytest.raises(UserError, match="fx is 'wide', not a number"):
        import_cameras(src, SourceKind.POLYCAM, tmp_path / "o1", _cfg())
    cam["fx"], cam["width"] = K[0, 0], W + 100  # the camera is for another image size
    first.write_text(json.dumps(cam))
    with pytest.raises(UserError, match="420x240"):
        import_cameras(src, SourceKind.POLYCAM, tmp_path / "o2", _cfg())
    first.unlink()
    with pytest.raises(UserError, match="has no camera file"):
        import_cameras(src, SourceKind.POLYCAM, tmp_path / "o3", _cfg())
    assert not (tmp_path / "o3" / "sparse").exists()  # refused before anything is written


def test_record3d_refusals(frames, tmp_path):
    src = write_record3d(tmp_path / "rec", frames[:4])
    meta = json.loads((src / "metadata.json").read_text())
    (src / "metadata.json").write_text(json.dumps({**meta, "poses": meta["poses"][:2]}))
    with pytest.raises(UserError, match="2 poses but rgb/ holds frame 2.jpg"):
        import_cameras(src, SourceKind.RECORD3D, tmp_path / "o1", _cfg())
    (src / "metadata.json").write_text(json.dumps({**meta, "K": [1, 2, 3]}))
    with pytest.raises(UserError, match="K is not the 9 numbers"):
        import_cameras(src, SourceKind.RECORD3D, tmp_path / "o2", _cfg())
    bad = [list(p) for p in meta["poses"]]
    bad[1][:4] = [0, 0, 0, 0]
    (src / "metadata.json").write_text(json.dumps({**meta, "poses": bad}))
    with pytest.raises(UserError, match="pose of frame 1"):
        import_cameras(src, SourceKind.RECORD3D, tmp_path / "o3", _cfg())
    (src / "metadata.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot be read as JSON"):
        import_cameras(src, SourceKind.RECORD3D, tmp_path / "o4", _cfg())


@pytest.mark.parametrize("app", ["record3d", "polycam"])
def test_splatkit_train_on_a_scan_export(frames, tmp_path, capsys, app):
    """The export trains end to end through the CLI (tiny preset): the app's poses are used
    (SfM skipped), the export folder is only read, the run folder holds a scene and metrics."""
    from input_util import run_cli

    src = (write_record3d if app == "record3d" else write_polycam)(tmp_path / "scan", frames)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["train", src, "-o", out, "--preset", "tiny"], src)
    assert rc == 0, text
    assert "structure from motion skipped" in text, text
    m = json.loads((out / "metrics.json").read_text())
    assert m["images"]["registered"] == N and (out / "scene.ply").stat().st_size > 0
    assert m["psnr"] > 10, m["psnr"]
