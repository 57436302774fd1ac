"""Existing cameras into the output layout (``OUT/sparse/0`` + ``OUT/images``), SfM skipped.

* a COLMAP project (``sparse/0`` + ``images``): pinhole models are copied, others undistorted;
* a ``transforms.json``: written as a PINHOLE model (undistorted first when it has distortion).

Training starts the splats from the model's 3D points; a model without any (every
``transforms.json``, some exported COLMAP models) gets them triangulated from the known poses:
SIFT features and exhaustive matching as in :func:`run_sfm`, then ``pycolmap.triangulate_points``
with the poses held fixed. ``OUT/sfm_work/import.json`` records the source so that a second run
reuses the result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap

from ..config import SfmConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..fileio import write_text_atomic
from ..rundir import RunDir, as_rundir
from ..scene import Scene
from .loaders import (
    _rotmat_to_qvec,
    is_pinhole,
    load_cached,
    load_scene,
    read_colmap_project,
    scene_from_transforms,
    undistort_reconstruction,
)
from .transforms import read_transforms, transforms_file

STAGE = "sfm"
RECIPE = 1


def import_colmap(project: Path, out_dir: RunDir | Path, cfg: SfmConfig, bus: EventBus = NULL_BUS) -> Scene:
    project, rd = Path(project), as_rundir(out_dir)
    out_dir = rd.root
    key = _key(project, cfg)
    if _cached(out_dir, key) and (scene := load_cached(out_dir, [])) is not None:
        return scene
    rec, image_dir, names = read_colmap_project(project, bus)  # checked before anything is written
    _clear(out_dir)
    if is_pinhole(rec):
        (rd.sparse).mkdir(parents=True)
        rec.write_binary(str(rd.sparse))
        _copy_images(image_dir, rd.images, names)
    else:
        undistort_reconstruction(rec, image_dir, out_dir, names, num_threads=cfg.num_threads, bus=bus)
    _triangulate_if_needed(out_dir, cfg, bus)
    _record(out_dir, key)
    return load_scene(out_dir, unregistered=[])


def import_transforms(path: Path, out_dir: RunDir | Path, cfg: SfmConfig, bus: EventBus = NULL_BUS) -> Scene:
    path, rd = Path(path), as_rundir(out_dir)
    out_dir = rd.root
    path = transforms_file(path) or path / "transforms.json"
    key = _key(path, cfg)
    if _cached(out_dir, key) and (scene := load_cached(out_dir, [])) is not None:
        return scene
    cams = read_transforms(path, bus)  # checked before anything is written
    _clear(out_dir)
    scene = scene_from_transforms(cams, out_dir=out_dir, bus=bus, num_threads=cfg.num_threads)
    if scene.image_dir != rd.images:  # no distortion: nothing was written yet
        c = scene.cameras
        _write_pinhole_model(
            rd.sparse,
            c.names,
            c.K.double().numpy(),
            c.world_to_cam.double().numpy(),
            c.width.tolist(),
            c.height.tolist(),
        )
        _copy_images(scene.image_dir, rd.images, c.names)
    _triangulate_if_needed(out_dir, cfg, bus)
    _record(out_dir, key)
    return load_scene(out_dir, unregistered=list(scene.unregistered))


def _triangulate_if_needed(out_dir: Path, cfg: SfmConfig, bus: EventBus) -> None:
    rd = as_rundir(out_dir)
    sparse = rd.sparse
    rec = pycolmap.Reconstruction(str(sparse))
    if rec.num_points3D() > 0:
        return
    bus.emit(Message(STAGE, "The cameras have no 3D points: finding them from the known poses."))
    work = rd.sfm_stage("triangulate")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db = work / "database.db"
    names = sorted(im.name for im in rec.images.values())
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        ids = _features_and_matches(db, rd.images, names, cfg)
        model = work / "model"
        _write_pinhole_model(model, names, *_pinhole_rows(rec, names), ids=[ids[n] for n in names],
                             text=True)
        tri = pycolmap.triangulate_points(
            pycolmap.Reconstruction(str(model)), str(db), str(rd.images), str(work / "out")
        )
    finally:
        pycolmap.logging.minloglevel = old
    if tri.num_points3D() == 0:
        raise UserError(
            "No 3D points could be found from these cameras (the photos share no detail).",
            "Check that the camera file belongs to these photos.",
        )
    shutil.rmtree(sparse)
    sparse.mkdir(parents=True)
    tri.write_binary(str(sparse))
    bus.emit(
        Message(
            STAGE,
            f"{tri.num_points3D()} points, mean reprojection error "
            f"{tri.compute_mean_reprojection_error():.2f} px.",
        )
    )
    shutil.rmtree(work)


def _features_and_matches(db: Path, image_dir: Path, names: list[str], cfg: SfmConfig) -> dict:
    """SIFT features and matches of ``names`` into ``db``; image name -> (image id, camera id)."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = cfg.max_image_size
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_features
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    pycolmap.extract_features(
        str(db),
        str(image_dir),
        image_names=names,
        camera_mode=pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader,
        extraction_options=extraction,
    )
    if len(names) <= 100:
        pycolmap.match_exhaustive(str(db), matching_options=matching)
    else:
        pycolmap.match_sequential(str(db), matching_options=matching)
    d = pycolmap.Database.open(str(db))
    try:
        return {im.name: (im.image_id, im.camera_id) for im in d.read_all_images()}
    finally:
        d.close()


def _pinhole_rows(rec: pycolmap.Reconstruction, names: list[str]) -> tuple[list, list, list, list]:
    """K, world-to-camera 4x4, width and height of each image of ``names`` (in that order)."""
    by_name = {im.name: im for im in rec.images.values()}
    Ks, w2cs, ws, hs = [], [], [], []
    for n in names:
        im = by_name[n]
        cam = rec.cameras[im.camera_id]
        Ks.append(np.asarray(cam.calibration_matrix(), np.float64))
        m = np.eye(4)
        cfw = im.cam_from_world
        m[:3, :4] = np.asarray((cfw() if callable(cfw) else cfw).matrix())
        w2cs.append(m)
        ws.append(cam.width)
        hs.append(cam.height)
    return Ks, w2cs, ws, hs


def _write_pinhole_model(d: Path, names, Ks, w2cs, ws, hs, ids=None, text: bool = False) -> None:
    """A COLMAP model with one PINHOLE camera per image (binary unless ``text``)."""
    tmp = d.parent / (d.name + ".txt-model") if not text else d
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cams, imgs = [], []
    for i, (n, K, w2c, w, h) in enumerate(zip(names, Ks, w2cs, ws, hs, strict=True)):
        iid, cid = ids[i] if ids else (i + 1, i + 1)
        k = " ".join(f"{v:.17g}" for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        cams.append(f"{cid} PINHOLE {int(w)} {int(h)} {k}")
        q, t = _rotmat_to_qvec(np.asarray(w2c)[:3, :3]), np.asarray(w2c)[:3, 3]
        imgs.append(f"{iid} " + " ".join(f"{v:.17g}" for v in (*q, *t)) + f" {cid} {n}\n")
    (tmp / "cameras.txt").write_text("\n".join(cams) + "\n")
    (tmp / "images.txt").write_text("\n".join(imgs) + "\n")
    (tmp / "points3D.txt").write_text("")
    if not text:
        rec = pycolmap.Reconstruction(str(tmp))
        d.mkdir(parents=True, exist_ok=True)
        rec.write_binary(str(d))
        shutil.rmtree(tmp)


def _copy_images(src: Path, dst: Path, names: list[str]) -> None:
    for n in names:
        out = dst / n
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / n, out)


def _key(path: Path, cfg: SfmConfig) -> dict:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and (p.suffix in (".bin", ".txt", ".json"))
    )
    return {
        "recipe": RECIPE,
        "source": str(path.resolve()),
        "files": [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files[:2000]],
        "max_image_size": cfg.max_image_size,
        "max_features": cfg.max_features,
    }


def _cached(out_dir: Path, key: dict) -> bool:
    rd = as_rundir(out_dir)
    try:
        rec = json.loads((rd.sfm_import).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return rec == key and (rd.sparse / "cameras.bin").exists()


def _record(out_dir: Path, key: dict) -> None:
    rd = as_rundir(out_dir)
    rd.sfm_work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(rd.sfm_import, json.dumps(key))


def _clear(out_dir: Path) -> None:
    rd = as_rundir(out_dir)
    (rd.sfm_import).unlink(missing_ok=True)
    for p in (rd.images, rd.sparse):
        if p.exists():
            shutil.rmtree(p)


#: for other importers of posed cameras (phone-scan exports, :mod:`splatkit.scans`)
triangulate_if_needed = _triangulate_if_needed
write_pinhole_model = _write_pinhole_model
