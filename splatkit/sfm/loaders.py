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
  z backward, the camera looks along -z). OpenCV c2w = OpenGL c2w @ diag(1, -1, -1, 1) (flip the
  camera's y and z axes); world-to-camera is its inverse. The world frame is kept as it is.
* ``transforms.json`` intrinsics ``fl_x, fl_y, cx, cy, w, h`` (pixels, top level or per frame)
  and optional OpenCV distortion ``k1, k2, p1, p2`` (``k3``, ``k4`` for the full OPENCV model are
  not supported). With distortion, pass ``out_dir`` so that the images are undistorted with
  pycolmap into ``out_dir/images`` (the poses do not change, K and the image size do); without
  ``out_dir`` the images are used as they are and a warning is emitted.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import torch

from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..scene import Cameras, Scene

STAGE = "sfm"
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")

#: OpenGL camera axes -> OpenCV camera axes (flip y and z), applied on the camera side of c2w.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


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


def load_scene(out_dir: Path, unregistered: list[str] | None = None) -> Scene:
    """Read ``out_dir/sparse/0`` (undistorted, pinhole) and ``out_dir/images`` into a Scene.

    Cameras are sorted by image name; the train/test split is the INRIA one.
    """
    out_dir = Path(out_dir)
    sparse = out_dir / "sparse" / "0"
    if not (sparse / "cameras.bin").exists() and not (sparse / "cameras.txt").exists():
        raise UserError(
            f"No COLMAP model in {sparse}.",
            "Run the SfM stage first, or point to a folder with sparse/0 and images.",
        )
    if unregistered is None:
        unregistered = _recorded_unregistered(out_dir)
    return scene_from_reconstruction(
        pycolmap.Reconstruction(str(sparse)), out_dir / "images", unregistered
    )


def _recorded_unregistered(out_dir: Path) -> list[str]:
    try:
        d = json.loads((out_dir / "sfm_work" / "inputs.json").read_text(encoding="utf-8"))
        return list(d.get("unregistered", []))
    except (OSError, ValueError):
        return []


def load_colmap_project(
    project: Path, out_dir: Path | None = None, bus: EventBus = NULL_BUS
) -> Scene:
    """Load an existing COLMAP project folder: ``sparse/0`` (or ``sparse``) and ``images``.

    A pinhole model is read in place. A model with lens distortion is undistorted with pycolmap
    into ``out_dir`` (``out_dir/images`` + ``out_dir/sparse/0``), which is then required.
    """
    project = Path(project)
    sparse = next(
        (
            p
            for p in (project / "sparse" / "0", project / "sparse", project)
            if (p / "cameras.bin").exists() or (p / "cameras.txt").exists()
        ),
        None,
    )
    if sparse is None:
        raise UserError(
            f"No COLMAP model (sparse/0/cameras.bin) found in {project}.",
            "Point to the COLMAP project folder that holds sparse/0 and images.",
        )
    image_dir = project / "images"
    if not image_dir.is_dir():
        raise UserError(
            f"No images folder in {project}.", "Put the photos in images/ beside sparse/."
        )
    rec = pycolmap.Reconstruction(str(sparse))
    if all(c.model.name in PINHOLE_MODELS for c in rec.cameras.values()):
        return scene_from_reconstruction(rec, image_dir)
    if out_dir is None:
        raise UserError(
            f"The COLMAP model in {sparse} has lens distortion.",
            "Give an output folder so that splatkit can write undistorted images there.",
        )
    undistort_model(sparse, image_dir, Path(out_dir), bus=bus)
    return load_scene(Path(out_dir), unregistered=[])


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
    out_dir = Path(out_dir)
    stage = out_dir / "sfm_work" / "undistort"
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
    images, sparse0 = out_dir / "images", out_dir / "sparse" / "0"
    for p in (images, sparse0):
        if p.exists():
            shutil.rmtree(p)
    sparse0.parent.mkdir(parents=True, exist_ok=True)
    (stage / "images").rename(images)
    # the undistorter writes a text-free binary model straight into sparse/; keep binary
    rec = pycolmap.Reconstruction(str(stage / "sparse"))
    sparse0.mkdir(parents=True)
    rec.write_binary(str(sparse0))
    shutil.rmtree(stage)


def load_transforms_json(
    path: Path, out_dir: Path | None = None, bus: EventBus = NULL_BUS, num_threads: int = -1
) -> Scene:
    """Load a nerfstudio / instant-ngp ``transforms.json`` (OpenGL camera-to-world, see above).

    ``path`` is the JSON file or the folder that holds it. Image paths are relative to the JSON's
    folder. No sparse points are stored in such files, so ``Scene.points`` is empty (``[0, 3]``).
    With lens distortion and ``out_dir`` given, the images are undistorted into ``out_dir``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist.", "Give the transforms.json file or its folder."
        ) from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}).", "Check the file.") from None
    root = path.parent
    frames = meta.get("frames") or []
    if not frames:
        raise UserError(f"{path} lists no frames.", "Check the file: it needs a 'frames' list.")
    names, Ks, w2cs, ws, hs, dists = [], [], [], [], [], []
    missing = []
    for fr in frames:
        rel = fr["file_path"]
        f = _resolve_image(root, rel)
        if f is None:
            missing.append(rel)
            continue
        g = {**meta, **fr}
        w, h = int(round(float(g["w"]))), int(round(float(g["h"])))
        if "fl_x" in g:
            fx = float(g["fl_x"])
            fy = float(g.get("fl_y", fx))
        else:  # NeRF-synthetic style: horizontal field of view
            fx = fy = 0.5 * w / math.tan(0.5 * float(g["camera_angle_x"]))
        cx, cy = float(g.get("cx", w / 2)), float(g.get("cy", h / 2))
        Ks.append(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64))
        c2w_gl = np.asarray(fr["transform_matrix"], np.float64)
        c2w_cv = c2w_gl @ GL_TO_CV
        w2cs.append(np.linalg.inv(c2w_cv))
        names.append(f.relative_to(root).as_posix())
        ws.append(w)
        hs.append(h)
        dists.append([float(g.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2")])
    if missing:
        bus.emit(
            Message(
                STAGE,
                f"{len(missing)} frame(s) of {path.name} have no image file: "
                + ", ".join(missing[:5])
                + ("..." if len(missing) > 5 else ""),
                "warning",
            )
        )
    if len(names) < 3:
        raise UserError(
            f"Only {len(names)} image(s) listed in {path} exist.",
            "Check that the image paths in the file are relative to its folder.",
        )
    order = sorted(range(len(names)), key=lambda i: names[i])
    distorted = any(abs(v) > 0 for d in dists for v in d)
    if distorted and out_dir is not None:
        _write_text_model(out_dir / "sfm_work" / "transforms_model", names, Ks, w2cs, ws, hs, dists)
        undistort_model(
            out_dir / "sfm_work" / "transforms_model",
            root,
            Path(out_dir),
            num_threads=num_threads,
            bus=bus,
        )
        return load_scene(Path(out_dir), unregistered=missing)
    if distorted:
        bus.emit(
            Message(
                STAGE,
                f"{path.name} has lens distortion but no output folder was given: "
                "the images are used as they are (slightly less sharp splats).",
                "warning",
            )
        )
    cameras = Cameras(
        names=[names[i] for i in order],
        K=torch.tensor(np.stack([Ks[i] for i in order]), dtype=torch.float32),
        world_to_cam=torch.tensor(np.stack([w2cs[i] for i in order]), dtype=torch.float32),
        width=torch.tensor([ws[i] for i in order], dtype=torch.int64),
        height=torch.tensor([hs[i] for i in order], dtype=torch.int64),
    )
    return Scene(
        cameras=cameras,
        image_dir=root,
        points=torch.zeros((0, 3), dtype=torch.float32),
        point_colors=torch.zeros((0, 3), dtype=torch.float32),
        unregistered=missing,
    )


def _resolve_image(root: Path, rel: str) -> Path | None:
    f = root / rel
    if f.is_file():
        return f
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):  # NeRF-synthetic omits extensions
        g = f.with_name(f.name + ext)
        if g.is_file():
            return g
    return None


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
