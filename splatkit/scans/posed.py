"""Phone-scan exports with their own poses: the frames every capture app's reader hands over, and
their import into the output layout (``OUT/sparse/0`` + ``OUT/images``, SfM skipped).

One reader per capture app (:mod:`.polycam`, :mod:`.record3d`) turns its export into
:class:`PosedFrames`: OpenCV camera-to-world poses in the app's own world frame (ARKit's: metres,
+y up, gravity along -y), pinhole intrinsics, and the depth and confidence maps recorded beside.
:func:`import_posed` checks every camera (a two-line refusal naming the file and field), writes
a PINHOLE model with the app's poses used directly, finds 3D points for them by triangulation
(features matched, poses held fixed: :func:`splatkit.sfm.importer.triangulate_if_needed`), and
copies the depth maps to ``OUT/depth/`` with ``OUT/depth/depth.json`` (which map belongs to which
image, units, sizes) for later use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..fileio import write_text_atomic
from ..frames import GL_TO_CV  # OpenGL/ARKit camera axes -> OpenCV
from ..ingest.names import shown
from ..rundir import RunDir, as_rundir
from ..scene import Scene
from ..sfm.validate import Labels, camera_problems, image_status, refuse, set_problems, size_scale

STAGE = "sfm"
RECIPE = 1


@dataclass
class PosedFrames:
    """Frames of one export, one row per image (in capture order).

    Attributes:
        app: the capture app ("Polycam", "Record3D").
        root: the export folder.
        files: the images (absolute paths).
        names: their names in the output (``images/<name>``).
        K: ``[N, 3, 3]`` pinhole intrinsics for the images as stored.
        cam_to_world: ``[N, 4, 4]`` OpenCV camera axes, the app's world frame.
        sizes: ``(width, height)`` the intrinsics were given for.
        depth: per image, its depth map (or None); ``depth_units`` metres per stored unit.
        confidence: per image, its depth confidence map (or None).
        source_files: per image, the file its camera came from (for the messages).
        notes: what was done on reading (said to the user).
    """

    app: str
    root: Path
    files: list[Path]
    names: list[str]
    K: np.ndarray
    cam_to_world: np.ndarray
    sizes: list[tuple[int, int]]
    depth: list[Path | None]
    depth_units: float
    confidence: list[Path | None]
    source_files: list[Path]
    notes: list[str] = field(default_factory=list)


def gl_to_cv(c2w_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenGL/ARKit camera axes -> the same pose with OpenCV camera axes."""
    return np.asarray(c2w_gl, np.float64) @ GL_TO_CV


def check_frames(fr: PosedFrames) -> np.ndarray:
    """Each camera checked against its image; returns the ``K`` of the images as stored (scaled
    when an image is a uniform scale of the size its camera was given for).

    Raises:
        UserError: an image missing or damaged, a size that is no scale of the camera's, a bad
            focal length, principal point or pose (naming the frame and its file), or a set of
            cameras that cannot train (fewer than 3, all at one place).
    """
    K = fr.K.astype(np.float64).copy()
    todo = f"Export the scan again from {fr.app} (raw data with poses), or give its images alone."
    for i, f in enumerate(fr.files):
        where = f"frame {shown(fr.names[i])}"
        st = image_status(f)
        if isinstance(st, str):
            raise UserError(f"{shown(f)} {st}.", todo)
        s = size_scale(fr.sizes[i], st)
        if s is None:
            raise UserError(f"{shown(fr.source_files[i])}: {where}: the camera is for "
                            f"{fr.sizes[i][0]}x{fr.sizes[i][1]} images but {shown(f.name)} is "
                            f"{st[0]}x{st[1]}.", todo)  # fmt: skip
        K[i, :2] *= s
        c2w = fr.cam_to_world[i]
        w2c = np.linalg.inv(c2w) if np.isfinite(c2w).all() and abs(np.linalg.det(c2w)) > 1e-12 else c2w
        probs = camera_problems(where, K[i], w2c, st[0], st[1], Labels())
        if probs:
            raise refuse(probs, fr.source_files[i], todo)
    probs = set_problems(fr.names, fr.cam_to_world[:, :3, 3], "frame")
    if probs:
        raise refuse(probs, fr.root, todo)
    return K


def import_posed(fr: PosedFrames, out_dir: RunDir | Path, cfg: RunConfig, bus: EventBus = NULL_BUS) -> Scene:
    """``fr`` -> ``out_dir/sparse/0`` + ``out_dir/images`` (+ ``out_dir/depth``): the scene, with
    the app's poses used directly."""
    from ..sfm.importer import triangulate_if_needed, write_pinhole_model
    from ..sfm.loaders import load_scene

    out_dir = as_rundir(out_dir).root
    K = check_frames(fr)
    for n in fr.notes:
        bus.emit(Message(STAGE, n))
    key = _key(fr, cfg)
    record = RunDir(out_dir).sfm_stage("scan.json")
    try:
        reuse = json.loads(record.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError):
        reuse = False
    if not (reuse and (RunDir(out_dir).sparse / "cameras.bin").exists()):
        record.unlink(missing_ok=True)
        for p in (RunDir(out_dir).images, RunDir(out_dir).sparse, RunDir(out_dir).depth):
            if p.exists():
                shutil.rmtree(p)
        sizes = [image_status(f) for f in fr.files]
        w2c = np.linalg.inv(fr.cam_to_world)
        write_pinhole_model(RunDir(out_dir).sparse, fr.names, K, w2c, [s[0] for s in sizes],
                            [s[1] for s in sizes])  # fmt: skip
        for f, n in zip(fr.files, fr.names, strict=True):
            (RunDir(out_dir).images / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, RunDir(out_dir).images / n)
        _copy_depth(fr, out_dir)
        triangulate_if_needed(out_dir, cfg.sfm, bus)
        record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(record, json.dumps({"key": key}))
    depth = sum(d is not None for d in fr.depth)
    if depth:
        bus.emit(Message(STAGE, f"{depth} {fr.app} depth maps kept in depth/ (see depth/depth.json)."))
    return load_scene(out_dir, unregistered=[])


def _copy_depth(fr: PosedFrames, out_dir: Path) -> None:
    """Depth (and confidence) maps beside the images, with their record in ``depth/depth.json``."""
    rows = []
    for i, n in enumerate(fr.names):
        row = {"image": n}
        for kind, src in (("depth", fr.depth[i]), ("confidence", fr.confidence[i])):
            if src is None:
                continue
            dst = RunDir(out_dir).depth / kind / (Path(n).stem + src.suffix.lower())
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            row[kind] = dst.relative_to(RunDir(out_dir).depth).as_posix()
        if len(row) > 1:
            rows.append(row)
    if rows:
        write_text_atomic(RunDir(out_dir).depth / "depth.json", json.dumps({
            "app": fr.app, "metres_per_unit": fr.depth_units,
            "note": "depth maps as the app recorded them (often smaller than the images: scale "
                    "them to the image size); confidence 0 low, 1 medium, 2 high (ARKit).",
            "frames": rows}, indent=1))  # fmt: skip


def _key(fr: PosedFrames, cfg: RunConfig) -> str:
    h = hashlib.sha256(f"{RECIPE}\0{fr.app}\0{cfg.sfm.max_image_size}\0{cfg.sfm.max_features}\n".encode())
    for f in [*fr.files, *fr.source_files]:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


__all__ = ["PosedFrames", "gl_to_cv", "check_frames", "import_posed", "GL_TO_CV"]
