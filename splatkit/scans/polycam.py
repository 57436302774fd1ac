"""Polycam's raw data export (LiDAR and Room modes, developer mode on: Export > Raw data).

The layout (as nerfstudio's ``ns-process-data polycam`` reads it)::

    EXPORT/keyframes/images/<id>.jpg            the keyframes
    EXPORT/keyframes/cameras/<id>.json          fx fy cx cy width height, t_00..t_23, blur_score
    EXPORT/keyframes/corrected_images/<id>.jpg  after Polycam's own pose optimisation (preferred)
    EXPORT/keyframes/corrected_cameras/<id>.json
    EXPORT/keyframes/depth/<id>.png             LiDAR depth, 16-bit millimetres (e.g. 256x192)
    EXPORT/keyframes/confidence/<id>.png        ARKit confidence 0-2

``t_ij`` is row ``i``, column ``j`` of the 3x4 camera-to-world matrix, ARKit's camera axes
(x right, y up, looking down -z) and world (metres, +y up). Keyframes whose ``blur_score`` is
under :data:`MIN_BLUR_SCORE` (nerfstudio's default) are left out, and said.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..ingest.names import shown
from .posed import PosedFrames, gl_to_cv

MIN_BLUR_SCORE = 25.0
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def is_polycam(path: Path) -> bool:
    kf = Path(path) / "keyframes"
    return any((kf / i).is_dir() and (kf / c).is_dir()
               for i, c in (("corrected_images", "corrected_cameras"), ("images", "cameras")))  # fmt: skip


def read_polycam(root: Path) -> PosedFrames:
    """The keyframes of a Polycam raw export with their poses, depth and confidence maps."""
    root = Path(root)
    kf = root / "keyframes"
    corrected = (kf / "corrected_images").is_dir() and (kf / "corrected_cameras").is_dir()
    images, cameras = (kf / "corrected_images", kf / "corrected_cameras") if corrected else (
        kf / "images", kf / "cameras")  # input, not OUT/
    files = sorted((p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_order)
    if not files:
        raise UserError(f"{shown(images)} holds no keyframe images.",
                        "Export the scan again from Polycam (Export > Raw data, developer mode on).")
    rows, blurry = [], []
    for f in files:
        cam_file = cameras / f"{f.stem}.json"
        cam = _read_camera(cam_file, f)
        if float(cam.get("blur_score", MIN_BLUR_SCORE)) < MIN_BLUR_SCORE:
            blurry.append(f.name)
            continue
        rows.append((f, cam_file, cam))
    notes = [f"Polycam export: {'corrected' if corrected else 'raw (uncorrected)'} keyframes and poses."]
    if blurry:
        notes.append(f"Left out {len(blurry)} blurry keyframe(s) (Polycam blur score under "
                     f"{MIN_BLUR_SCORE:g}): {', '.join(blurry[:5])}{' ...' if len(blurry) > 5 else ''}.")
    K = np.array([[[c["fx"], 0, c["cx"]], [0, c["fy"], c["cy"]], [0, 0, 1]] for _, _, c in rows], np.float64)
    c2w = np.array([gl_to_cv(_matrix(c)) for _, _, c in rows]).reshape(-1, 4, 4)
    app_depth = kf / "depth"  # input, not OUT/
    depth_dir = kf / "corrected_depth" if corrected and (kf / "corrected_depth").is_dir() else app_depth
    return PosedFrames(
        app="Polycam", root=root, files=[f for f, _, _ in rows], names=[f.name for f, _, _ in rows],
        K=K.reshape(-1, 3, 3), cam_to_world=c2w,
        sizes=[(int(c["width"]), int(c["height"])) for _, _, c in rows],
        depth=[_beside(depth_dir, f) for f, _, _ in rows], depth_units=0.001,
        confidence=[_beside(kf / "confidence", f) for f, _, _ in rows],
        source_files=[cf for _, cf, _ in rows], notes=notes,
    )  # fmt: skip


def _order(p: Path):
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def _beside(d: Path, image: Path) -> Path | None:
    p = d / f"{image.stem}.png"
    return p if p.is_file() else None


def _read_camera(cam_file: Path, image: Path) -> dict:
    todo = "Export the scan again from Polycam (Export > Raw data, developer mode on)."
    try:
        cam = json.loads(cam_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"The keyframe {shown(image.name)} has no camera file {shown(cam_file)}.",
                        todo) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{shown(cam_file)} cannot be read as JSON ({e}).", todo) from None
    if not isinstance(cam, dict):
        raise UserError(f"{shown(cam_file)} holds no camera (a JSON object is expected).", todo)
    need = ["fx", "fy", "cx", "cy", "width", "height"] + [f"t_{i}{j}" for i in range(3) for j in range(4)]
    for k in need:
        v = cam.get(k)
        if isinstance(v, bool) or not isinstance(v, int | float):
            what = "missing" if v is None else repr(v)
            raise UserError(f"{shown(cam_file)}: {k} is {what}, not a number.", todo)
    return cam


def _matrix(cam: dict) -> np.ndarray:
    m = np.eye(4)
    m[:3] = [[cam[f"t_{i}{j}"] for j in range(4)] for i in range(3)]
    return m


__all__ = ["is_polycam", "read_polycam", "MIN_BLUR_SCORE"]
