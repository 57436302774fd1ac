"""360 frames registered as a COLMAP rig (splatkit.pano.rig, .views, .source)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap
import pytest
from pano_synth import render_pano, rotation_error_deg, walk, wall_textures
from PIL import Image

from splatkit.config import RunConfig
from splatkit.errors import UserError
from splatkit.pano.equirect import LAYOUTS
from splatkit.pano.source import folder_is_pano, is_panorama, pano_tag
from splatkit.pano.views import CutViews
from splatkit.sources import detect_source

WIDTH = 1024
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def pano_walk(tmp_path_factory):
    """Six equirectangular frames of a textured room, with their known poses."""
    d = tmp_path_factory.mktemp("walk") / "pano"
    d.mkdir()
    tex = wall_textures()
    poses = walk(NUM_FRAMES)
    for i, (c, R) in enumerate(poses):
        Image.fromarray(render_pano(c, R, WIDTH, tex)).save(d / f"pano_{i:02d}.jpg", quality=95)
    return d, poses


def _pano_from_world(scene_w2c: np.ndarray, layout: str) -> np.ndarray:
    """The panorama's rotation (pano_from_world) from its view 0's world_to_cam."""
    return LAYOUTS[layout].rotations()[0].T @ scene_w2c[:3, :3]


def test_rig_registers_every_synthetic_panorama_with_known_rotations(pano_walk, tmp_path):
    from splatkit.pano.source import run_pano_sfm

    src, poses = pano_walk
    assert detect_source(src) == "pano"
    cfg = RunConfig()
    cfg.sfm.num_threads = 2
    cfg.sfm.max_features = 2048
    out = tmp_path / "out"
    photo_set, scene = run_pano_sfm(src, "pano", out, cfg)
    layout = cfg.ingest.pano_views
    n_views = len(LAYOUTS[layout])
    assert len(photo_set.photos) == NUM_FRAMES * n_views
    assert not scene.unregistered
    assert len(scene.cameras) == NUM_FRAMES * n_views  # every view of every frame placed
    # the model is a rig: one frame per panorama, its views with the fixed relative rotations
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert len(rec.frames) == NUM_FRAMES and len(rec.rigs) == 1
    w2c = {n: scene.cameras.world_to_cam[i].double().numpy() for i, n in enumerate(scene.cameras.names)}
    frames = [f"pano_{i:02d}.jpg" for i in range(NUM_FRAMES)]
    rots = LAYOUTS[layout].rotations()
    for f in frames:
        P = _pano_from_world(w2c[f"v00/{f}"], layout)
        for k in range(1, n_views):  # every view k = R_k @ pano_from_world
            assert rotation_error_deg(w2c[f"v{k:02d}/{f}"][:3, :3], rots[k] @ P) < 1e-3
    # rotations between frames against the known poses (pano_from_world = pano_to_world^T)
    est = [_pano_from_world(w2c[f"v00/{f}"], layout) for f in frames]
    gt = [R.T for _, R in poses]
    errs = [rotation_error_deg(est[i] @ est[0].T, gt[i] @ gt[0].T) for i in range(1, NUM_FRAMES)]
    assert max(errs) < 0.5, errs
    # the views trained on are pinhole images of the view size, the bottom left out
    im = Image.open(scene.image_dir / scene.cameras.names[0])
    assert im.size == (WIDTH // 4, WIDTH // 4)
    # a second run reuses the poses
    from splatkit.events import EventBus

    seen = []
    bus = EventBus()
    bus.subscribe(lambda e: seen.append(getattr(e, "text", "")))
    run_pano_sfm(src, "pano", out, cfg, bus)
    assert any("Reusing the panorama poses" in t for t in seen)


def test_detection_by_xmp_tag_and_shape(tmp_path):
    xmp_full = (b'<rdf:Description GPano:ProjectionType="equirectangular" '
                b'GPano:FullPanoWidthPixels="4000" GPano:CroppedAreaImageWidthPixels="4000"/>')  # fmt: skip
    xmp_crop = (b"<GPano:ProjectionType>equirectangular</GPano:ProjectionType>"
                b"<GPano:FullPanoWidthPixels>8000</GPano:FullPanoWidthPixels>"
                b"<GPano:CroppedAreaImageWidthPixels>4000</GPano:CroppedAreaImageWidthPixels>")  # fmt: skip
    assert pano_tag(xmp_full) == "full" and pano_tag(xmp_crop) == "partial" and pano_tag(b"") == ""
    rgb = np.zeros((100, 200, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "plain21.jpg")  # 2:1, no tag: a 360 frame
    Image.fromarray(rgb[:, :150]).save(tmp_path / "tagged.jpg", xmp=xmp_full)  # tagged, 3:2 (odd)
    Image.fromarray(rgb).save(tmp_path / "crop.jpg", xmp=xmp_crop)  # a crop of a photo sphere
    Image.fromarray(rgb[:, :150]).save(tmp_path / "photo.jpg")
    assert is_panorama(tmp_path / "plain21.jpg") and is_panorama(tmp_path / "tagged.jpg")
    assert not is_panorama(tmp_path / "crop.jpg") and not is_panorama(tmp_path / "photo.jpg")


def test_a_folder_mixing_360_frames_and_photos_is_refused(tmp_path):
    rgb = np.zeros((100, 200, 3), np.uint8)
    for i in range(3):
        Image.fromarray(rgb).save(tmp_path / f"p{i}.jpg")
    Image.fromarray(rgb[:, :150]).save(tmp_path / "photo.jpg")
    with pytest.raises(UserError) as e:
        folder_is_pano(tmp_path)
    assert "3 360-degree frames" in str(e.value) and "photo.jpg" in str(e.value)
    (tmp_path / "photo.jpg").unlink()
    assert detect_source(tmp_path) == "pano"


def test_frames_of_different_sizes_are_refused(tmp_path):
    from splatkit.pano.views import cut_panoramas

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(a)
    Image.fromarray(np.zeros((128, 256, 3), np.uint8)).save(b)
    with pytest.raises(UserError, match="one size"):
        cut_panoramas([("a.jpg", a), ("b.jpg", b)], tmp_path / "work", "ring8")


def test_cut_views_names_and_camera():
    v = CutViews(["x.jpg", "y.jpg"], Path("i"), Path("m"), "cube5", 256, 128.0)
    assert v.all_names()[:2] == ["v00/x.jpg", "v00/y.jpg"] and len(v.all_names()) == 10
    assert v.frame_of("v03/y.jpg") == "y.jpg"
    cam = v.camera()
    assert cam.model.name == "PINHOLE" and list(cam.params) == [128.0, 128.0, 128.0, 128.0]


def _video(path: Path, w: int, h: int, n: int = 4) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(n):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_a_2_to_1_video_is_a_360_video(tmp_path):
    from splatkit.ingest import SourceKind

    assert detect_source(_video(tmp_path / "walk.mp4", 256, 128)) is SourceKind.PANO_VIDEO
    assert detect_source(_video(tmp_path / "clip.mp4", 192, 128)) is SourceKind.VIDEO
    k = SourceKind.PANO_VIDEO
    assert k.sequential and k.rig and not k.has_cameras
