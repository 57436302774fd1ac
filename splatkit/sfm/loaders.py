"""Read cameras and sparse points into a :class:`~splatkit.scene.Scene`.

Sources:

* an undistorted COLMAP model (``sparse/0`` + ``images``), as written by :func:`run_sfm` or by
  ``colmap image_undistorter``: :func:`load_scene`, :func:`load_colmap_project`;
* a nerfstudio / instant-ngp ``transforms.json``: :func:`load_transforms_json`.

Conventions (see also ``splatkit/scene.py``):

* COLMAP stores world-to-camera poses with OpenCV camera axes (x right, y down, z forward),
  ``x_cam = R @ x_world + t``: this is exactly ``Cameras.world_to_cam``.
* COLMAP's pixel coordinates put the centre of the top-left pixel at (0.5, 0.5), as ours do, so
  ``K`` is the camera's calibration matrix unchanged.
* ``transforms.json`` stores camera-to-world matrices with OpenGL camera axes (x right, y up,
  z backward, the camera looks along -z). OpenCV c2w = OpenGL c2w @ ``frames.GL_TO_CV`` (flip the
  camera's y and z axes); world-to-camera is its inverse. The world frame is kept as it is.
* ``transforms.json`` intrinsics ``fl_x, fl_y, cx, cy, w, h`` (pixels, top level or per frame)
  and optional OpenCV distortion ``k1, k2, p1, p2`` (``k3``, ``k4`` for the full OPENCV model are
  not supported). With distortion, pass ``out_dir`` so that the images are undistorted with
  pycolmap into ``out_dir/images`` (the poses do not change, K and the image size do); without
  ``out_dir`` the images are used as they are and a warning is emitted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pycolmap
import torch

from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..frames import GL_TO_CV
from ..ingest.names import shown
from ..rundir import RunDir, as_rundir, colmap_images, colmap_models
from ..scene import Cameras, Scene
from .model_files import model_format, read_model
from .transforms import TransformsCameras, read_transforms
from .validate import check_model

STAGE = "sfm"
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")



def scene_from_reconstruction(
    rec: pycolmap.Reconstruction, image_dir: Path, unregistered: list[str] | None = None
) -> Scene:
    """A Scene from a pycolmap reconstruction with pinhole cameras (registered images only)."""
    imgs = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not imgs:
        raise UserError(
            "The COLMAP model has no registered images.",
            "Run SfM again on photos that overlap by about two thirds.",
        )
    Ks, w2cs, ws, hs = [], [], [], []
    for im in imgs:
        cam = rec.cameras[im.camera_id]
        if cam.model.name not in PINHOLE_MODELS:
            raise UserError(
                f"The COLMAP model has a {cam.model.name} camera (lens distortion) for {im.name}.",
                "Undistort it first (colmap image_undistorter), or load it with "
                "load_colmap_project(folder, out_dir=...) which undistorts it.",
            )
        Ks.append(np.asarray(cam.calibration_matrix(), dtype=np.float64))
        m = np.eye(4)
        m[:3, :4] = np.asarray(_cam_from_world(im).matrix())
        w2cs.append(m)
        ws.append(cam.width)
        hs.append(cam.height)
    cameras = Cameras(
        names=[im.name for im in imgs],
        K=torch.tensor(np.stack(Ks), dtype=torch.float32),
        world_to_cam=torch.tensor(np.stack(w2cs), dtype=torch.float32),
        width=torch.tensor(ws, dtype=torch.int64),
        height=torch.tensor(hs, dtype=torch.int64),
    )
    pts = list(rec.points3D.values())
    if pts:
        xyz = np.stack([p.xyz for p in pts]).astype(np.float32)
        rgb = np.stack([p.color for p in pts]).astype(np.float32) / 255.0
    else:
        xyz = np.zeros((0, 3), np.float32)
        rgb = np.zeros((0, 3), np.float32)
    return Scene(
        cameras=cameras,
        image_dir=Path(image_dir),
        points=torch.from_numpy(xyz),
        point_colors=torch.from_numpy(rgb),
        unregistered=list(unregistered or []),
    )


def _cam_from_world(im) -> pycolmap.Rigid3d:
    cfw = im.cam_from_world
    return cfw() if callable(cfw) else cfw


def load_scene(out_dir: Path | RunDir, unregistered: list[str] | None = None) -> Scene:
    """Read ``OUT/sparse/0`` (undistorted, pinhole) and ``OUT/images`` into a Scene, the model
    checked first (:func:`~splatkit.sfm.model_files.read_model`: a damaged file is a plain error).

    Cameras are sorted by image name; the train/test split is the INRIA one.
    """
    rd = as_rundir(out_dir)
    rec = read_model(rd.sparse, todo=f"Compute the camera poses again: {rd.train_command()} --restart")
    if unregistered is None:
        unregistered = _recorded_unregistered(rd)
    return scene_from_reconstruction(rec, rd.images, unregistered)


def load_cached(out_dir: Path | RunDir, unregistered: list[str] | None = None) -> Scene | None:
    """The run's scene from an earlier SfM, or None when its model is damaged (SfM runs again)."""
    try:
        return load_scene(out_dir, unregistered)
    except UserError:
        return None


def _recorded_unregistered(rd: RunDir) -> list[str]:
    d = rd.read_json_object(rd.sfm_inputs) or {}
    names = d.get("unregistered", [])
    return [str(n) for n in names] if isinstance(names, list) else []


def find_sparse(project: Path) -> Path:
    """The model folder of a COLMAP project: ``sparse/0``, ``sparse`` or the project itself."""
    project = Path(project)
    for p in colmap_models(project):
        if (p / "cameras.bin").exists() or (p / "cameras.txt").exists():
            return p
    raise UserError(
        f"No COLMAP model (sparse/0/cameras.bin) found in {shown(project)}.",
        "Point to the COLMAP project folder that holds sparse/0 and images.",
    )


def read_colmap_project(project: Path, bus: EventBus = NULL_BUS):
    """``(rec, image_dir, names)``: the project's model, checked against its images (see
    :func:`~splatkit.sfm.validate.check_model`; fixes are made in ``rec``), nothing written."""
    project = Path(project)
    sparse = find_sparse(project)
    image_dir = colmap_images(project)
    if not image_dir.is_dir():
        raise UserError(
            f"No images folder in {shown(project)}.", "Put the photos in images/ beside sparse/."
        )
    rec = read_model(sparse, image_dir)
    names = check_model(rec, image_dir, sparse, model_format(sparse), bus)
    return rec, image_dir, names


def is_pinhole(rec: pycolmap.Reconstruction) -> bool:
    return all(c.model.name in PINHOLE_MODELS for c in rec.cameras.values())


def load_colmap_project(
    project: Path, out_dir: Path | None = None, bus: EventBus = NULL_BUS
) -> Scene:
    """Load an existing COLMAP project folder: ``sparse/0`` (or ``sparse``) and ``images``.

    The model is checked first (a two-line UserError when it cannot be used). A pinhole model is
    read in place. A model with lens distortion is undistorted with pycolmap into ``out_dir``
    (``out_dir/images`` + ``out_dir/sparse/0``), which is then required.
    """
    rec, image_dir, names = read_colmap_project(project, bus)
    if is_pinhole(rec):
        return scene_from_reconstruction(rec, image_dir)
    if out_dir is None:
        raise UserError(
            f"The COLMAP model in {shown(project)} has lens distortion.",
            "Give an output folder so that splatkit can write undistorted images there.",
        )
    undistort_reconstruction(rec, image_dir, Path(out_dir), names, bus=bus)
    return load_scene(Path(out_dir), unregistered=[])


def undistort_reconstruction(
    rec: pycolmap.Reconstruction, image_dir: Path, out_dir: Path, names: list[str],
    num_threads: int = -1, bus: EventBus = NULL_BUS,
) -> None:
    """Undistort a checked in-memory model (staged in ``out_dir/sfm_work/import_model``)."""
    staged = as_rundir(out_dir).sfm_stage("import_model")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    rec.write_binary(str(staged))
    undistort_model(staged, image_dir, out_dir, image_names=names, num_threads=num_threads, bus=bus)
    shutil.rmtree(staged)


def undistort_model(
    sparse: Path,
    image_dir: Path,
    out_dir: Path,
    image_names: list[str] | None = None,
    num_threads: int = -1,
    bus: EventBus = NULL_BUS,
) -> None:
    """Undistort a COLMAP model to PINHOLE: ``out_dir/images`` and ``out_dir/sparse/0`` (binary).

    Works in ``out_dir/sfm_work/undistort`` and then replaces the two outputs.
    """
    rd = as_rundir(out_dir)
    stage = rd.sfm_stage("undistort")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    bus.emit(Message(STAGE, "Undistorting the images"))
    pycolmap.undistort_images(
        str(stage),
        str(sparse),
        str(image_dir),
        image_names=list(image_names or []),
        output_type="COLMAP",
        jpeg_quality=95,
        num_threads=num_threads,
    )
    images, sparse0 = rd.images, rd.sparse
    for p in (images, sparse0):
        if p.exists():
            shutil.rmtree(p)
    sparse0.parent.mkdir(parents=True, exist_ok=True)
    colmap_images(stage).rename(images)
    # the undistorter writes a text-free binary model straight into sparse/; keep binary
    rec = pycolmap.Reconstruction(str(colmap_models(stage)[1]))
    sparse0.mkdir(parents=True)
    rec.write_binary(str(sparse0))
    shutil.rmtree(stage)


def load_transforms_json(
    path: Path, out_dir: Path | None = None, bus: EventBus = NULL_BUS, num_threads: int = -1
) -> Scene:
    """Load a nerfstudio / instant-ngp ``transforms.json`` (OpenGL camera-to-world, see above).

    ``path`` is the JSON file or the folder that holds it. Image paths are relative to the JSON's
    folder. The file is checked first (:func:`~splatkit.sfm.transforms.read_transforms`: a
    two-line UserError naming the frame and the field when it cannot be used). No sparse points
    are stored in such files, so ``Scene.points`` is empty (``[0, 3]``). With lens distortion and
    ``out_dir`` given, the images are undistorted into ``out_dir``.
    """
    return scene_from_transforms(read_transforms(path, bus), out_dir, bus, num_threads)


def scene_from_transforms(
    tc: TransformsCameras, out_dir: Path | None = None, bus: EventBus = NULL_BUS, num_threads: int = -1
) -> Scene:
    """A Scene from checked transforms.json cameras (undistorted into ``out_dir`` if distorted)."""
    names, Ks = tc.names, list(tc.K)
    w2cs = [np.linalg.inv(c2w @ GL_TO_CV) for c2w in tc.c2w]
    distorted = bool(np.abs(tc.dist).max() > 0) if len(tc.dist) else False
    if distorted and out_dir is not None:
        rd = as_rundir(out_dir)
        model = rd.sfm_stage("transforms_model")
        _write_text_model(model, names, Ks, w2cs, tc.width, tc.height, tc.dist.tolist())
        undistort_model(model, tc.root, rd, num_threads=num_threads, bus=bus)
        return load_scene(rd, unregistered=tc.missing)
    if distorted:
        bus.emit(
            Message(
                STAGE,
                f"{tc.path.name} has lens distortion but no output folder was given: "
                "the images are used as they are (slightly less sharp splats).",
                "warning",
            )
        )
    order = sorted(range(len(names)), key=lambda i: names[i])
    cameras = Cameras(
        names=[names[i] for i in order],
        K=torch.tensor(np.stack([Ks[i] for i in order]), dtype=torch.float32),
        world_to_cam=torch.tensor(np.stack([w2cs[i] for i in order]), dtype=torch.float32),
        width=torch.tensor([tc.width[i] for i in order], dtype=torch.int64),
        height=torch.tensor([tc.height[i] for i in order], dtype=torch.int64),
    )
    return Scene(
        cameras=cameras,
        image_dir=tc.root,
        points=torch.zeros((0, 3), dtype=torch.float32),
        point_colors=torch.zeros((0, 3), dtype=torch.float32),
        unregistered=list(tc.missing),
    )


def _write_text_model(d: Path, names, Ks, w2cs, ws, hs, dists) -> None:
    """A COLMAP text model with one OPENCV camera per image (read back by pycolmap)."""
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    cams, imgs = [], []
    for i, (n, K, w2c, w, h, dist) in enumerate(zip(names, Ks, w2cs, ws, hs, dists, strict=True)):
        p = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *dist]
        cams.append(f"{i + 1} OPENCV {w} {h} " + " ".join(f"{v:.10g}" for v in p))
        q = _rotmat_to_qvec(w2c[:3, :3])
        t = w2c[:3, 3]
        imgs.append(f"{i + 1} " + " ".join(f"{v:.17g}" for v in (*q, *t)) + f" {i + 1} {n}\n")
    (d / "cameras.txt").write_text("\n".join(cams) + "\n")
    (d / "images.txt").write_text("\n".join(imgs) + "\n")
    (d / "points3D.txt").write_text("")


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0 (COLMAP order)."""
    Rxx, Ryx, Rzx, Rxy, Ryy, Rzy, Rxz, Ryz, Rzz = R.flat
    K = (
        np.array(
            [
                [Rxx - Ryy - Rzz, 0, 0, 0],
                [Ryx + Rxy, Ryy - Rxx - Rzz, 0, 0],
                [Rzx + Rxz, Rzy + Ryz, Rzz - Rxx - Ryy, 0],
                [Ryz - Rzy, Rzx - Rxz, Rxy - Ryx, Rxx + Ryy + Rzz],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return q if q[0] >= 0 else -q
