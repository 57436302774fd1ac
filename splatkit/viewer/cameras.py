"""Cameras and sparse points of an output folder (``OUT/sparse/0``), for the viewer and the report.

Axes. COLMAP stores world-to-camera poses with OpenCV camera axes: x right, y down, z forward
(``x_cam = R @ x_world + t``). three.js cameras use OpenGL axes: x right, y up, looking down -z.
The world frame is left exactly as COLMAP's (it is the frame of ``scene.ply``), so only the
camera side changes: ``c2w_gl = inverse(w2c_cv) @ CV_TO_GL`` (:mod:`splatkit.frames`: flip the
camera's y and z axes). The intrinsics become an off-centre OpenGL projection, see :func:`gl_projection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..frames import CV_TO_GL
from ..rundir import RunDir


@dataclass
class CameraInfo:
    """One registered image: name, size, pinhole intrinsics and OpenCV world-to-camera pose."""

    name: str
    width: int
    height: int
    K: np.ndarray  # [3, 3], pixels
    w2c: np.ndarray  # [4, 4], OpenCV axes

    @property
    def c2w(self) -> np.ndarray:
        return np.linalg.inv(self.w2c)

    @property
    def center(self) -> np.ndarray:
        return self.c2w[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """Viewing direction (the camera's +z) in world coordinates."""
        return self.w2c[2, :3].copy()

    @property
    def down(self) -> np.ndarray:
        """The image's downward direction (the camera's +y) in world coordinates."""
        return self.w2c[1, :3].copy()

    @property
    def c2w_gl(self) -> np.ndarray:
        """Camera-to-world with OpenGL/three.js camera axes (for ``camera.matrixWorld``)."""
        return self.c2w @ CV_TO_GL


def sparse_dir(out_dir: Path) -> Path:
    return RunDir(Path(out_dir)).sparse


def has_model(out_dir: Path) -> bool:
    d = sparse_dir(out_dir)
    return any((d / f"cameras.{ext}").exists() for ext in ("bin", "txt"))


def read_model(out_dir: Path) -> tuple[list[CameraInfo], np.ndarray, np.ndarray]:
    """``(cameras by name, points [P, 3] float64, colours [P, 3] uint8)`` of ``OUT/sparse/0``,
    checked as every reader of a model is (:func:`splatkit.sfm.model_files.read_model`)."""
    from ..sfm.model_files import read_model as read_checked

    rd = RunDir(Path(out_dir))
    if not has_model(out_dir):
        raise UserError(f"No camera poses in {rd.sparse}.",
                        "Run `splatkit train` (or `splatkit sfm`) on the photos first.")
    rec = read_checked(rd.sparse, todo=f"Compute the camera poses again: {rd.train_command()} --restart")
    cams = []
    for im in rec.images.values():
        if hasattr(im, "has_pose") and not im.has_pose:
            continue
        cam = rec.cameras[im.camera_id]
        cfw = im.cam_from_world
        cfw = cfw() if callable(cfw) else cfw
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(cfw.matrix(), dtype=np.float64)
        K = np.asarray(cam.calibration_matrix(), dtype=np.float64)
        cams.append(CameraInfo(im.name, int(cam.width), int(cam.height), K, w2c))
    cams.sort(key=lambda c: c.name)
    pts = list(rec.points3D.values())
    if pts:
        xyz = np.stack([np.asarray(p.xyz, dtype=np.float64) for p in pts])
        rgb = np.stack([np.asarray(p.color, dtype=np.uint8) for p in pts])
    else:
        xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    return cams, xyz, rgb


def held_out(names: list[str]) -> set[str]:
    """Names of the held-out (test) photos: the INRIA rule, every 8th by name (as training)."""
    from ..scene import inria_split

    _, test = inria_split(names)
    return {names[i] for i in test}


def gl_projection(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL projection matrix (row-major) reproducing pinhole ``K`` on a width x height image.

    Derivation: OpenCV pixel ``u = fx X/Z + cx`` with ``X = X_gl``, ``Y = -Y_gl``, ``Z = -Z_gl``
    and ``ndc_x = 2u/W - 1``, ``ndc_y = 1 - 2v/H`` give ``P[0,0] = 2fx/W``,
    ``P[0,2] = 1 - 2cx/W``, ``P[1,1] = 2fy/H``, ``P[1,2] = 2cy/H - 1``. Pixel centres are at
    (j + 0.5, i + 0.5) in both conventions, so nothing else shifts. The same formula is in
    ``static/viewer.js`` (``projectionFromK``).
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    P = np.zeros((4, 4))
    P[0, 0] = 2 * fx / width
    P[0, 2] = 1 - 2 * cx / width
    P[1, 1] = 2 * fy / height
    P[1, 2] = 2 * cy / height - 1
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = -1
    return P


def scene_frame(cams: list[CameraInfo], points: np.ndarray) -> dict:
    """Where to look from and which way is up: ``{target, up, radius}`` (world, lists).

    Up is the mean of the cameras' image-up directions (photos are mostly taken upright);
    the target is the median of the sparse points (or the cameras' mean centre without them).
    """
    if not cams:
        return {"target": [0.0, 0.0, 0.0], "up": [0.0, 1.0, 0.0], "radius": 1.0}
    centers = np.stack([c.center for c in cams])
    up = -np.mean([c.down for c in cams], axis=0)
    up = up / max(np.linalg.norm(up), 1e-9)
    if len(points):
        target = np.median(points, axis=0)
    else:
        target = centers.mean(0) + np.mean([c.forward for c in cams], axis=0)
    radius = float(np.median(np.linalg.norm(centers - target, axis=1)))
    return {"target": target.tolist(), "up": up.tolist(), "radius": max(radius, 1e-6)}


def cameras_payload(out_dir: Path) -> dict:
    """What ``/cameras.json`` serves to the viewer page."""
    cams, pts, _ = read_model(out_dir)
    test = held_out([c.name for c in cams])
    return {
        "frame": scene_frame(cams, pts),
        "cameras": [
            {
                "name": c.name,
                "width": c.width,
                "height": c.height,
                "fx": float(c.K[0, 0]), "fy": float(c.K[1, 1]),
                "cx": float(c.K[0, 2]), "cy": float(c.K[1, 2]),
                # row-major 4x4, OpenGL camera axes; set as three.js camera.matrixWorld
                "c2w_gl": c.c2w_gl.reshape(-1).tolist(),
                "held_out": c.name in test,
            }
            for c in cams
        ],
    }
