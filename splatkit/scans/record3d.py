"""Record3D's export (iPhone/iPad with LiDAR or the TrueDepth camera: Export > "EXR + JPG").

The layout (as nerfstudio's ``ns-process-data record3d`` reads it)::

    EXPORT/metadata.json      K (9 numbers, column-major), w, h (RGB size), poses, fps, dw, dh
    EXPORT/rgb/<i>.jpg        frame i (0, 1, 2, ...)
    EXPORT/depth/<i>.exr      depth in metres (e.g. 256x192; ``.png`` in some versions)
    EXPORT/conf/<i>.png       ARKit confidence 0-2 (LiDAR only)

``poses[i]`` is ``[qx, qy, qz, qw, tx, ty, tz]``: the camera-to-world rotation quaternion (scalar
last) and position of frame ``i``, ARKit's camera axes (x right, y up, looking down -z) and world
(metres, +y up). Files named like ``12(1).jpg`` (copies) are ignored, as nerfstudio does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import UserError
from ..ingest.names import shown
from .posed import PosedFrames, gl_to_cv

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TODO = "Export the recording again from Record3D (Export > EXR + JPG sequence)."


def is_record3d(path: Path) -> bool:
    path = Path(path)
    return (path / "rgb").is_dir() and ((path / "metadata.json").is_file() or (path / "metadata").is_file())


def read_record3d(root: Path) -> PosedFrames:
    """The frames of a Record3D export with their poses, depth and confidence maps."""
    root = Path(root)
    meta_file = root / "metadata.json" if (root / "metadata.json").is_file() else root / "metadata"
    meta = _read_meta(meta_file)
    poses = meta["poses"]
    files = sorted((p for p in (root / "rgb").iterdir()
                    if p.stem.isdigit() and p.suffix.lower() in IMAGE_EXTS), key=lambda p: int(p.stem))
    if not files:
        raise UserError(f"{shown(root / 'rgb')} holds no frames (0.jpg, 1.jpg, ...).", TODO)
    beyond = [f.name for f in files if int(f.stem) >= len(poses)]
    if beyond:
        raise UserError(f"{shown(meta_file)} has {len(poses)} poses but rgb/ holds frame "
                        f"{beyond[0]}{' and more' if len(beyond) > 1 else ''}.", TODO)  # fmt: skip
    idx = [int(f.stem) for f in files]
    q = np.array([poses[i] for i in idx], np.float64)
    if not np.isfinite(q).all() or (np.linalg.norm(q[:, :4], axis=1) < 1e-6).any():
        bad = idx[int(np.argmax(~np.isfinite(q).all(1) | (np.linalg.norm(q[:, :4], axis=1) < 1e-6)))]
        raise UserError(f"{shown(meta_file)}: the pose of frame {bad} is not a rotation and position.", TODO)
    c2w = np.tile(np.eye(4), (len(idx), 1, 1))
    c2w[:, :3, :3] = Rotation.from_quat(q[:, :4]).as_matrix()  # (x, y, z, w)
    c2w[:, :3, 3] = q[:, 4:]
    K = np.asarray(meta["K"], np.float64).reshape(3, 3).T  # stored column-major
    size = (int(meta["w"]), int(meta["h"]))
    depth_dir = root / "depth"  # input, not OUT/
    fps = meta.get("fps")
    note = f"Record3D export: {len(files)} frames of {len(poses)} poses" + (
        f" ({fps:g} frames a second)." if _num(fps) else ".")
    return PosedFrames(
        app="Record3D", root=root, files=files,
        names=[f"{i:05d}{f.suffix.lower()}" for i, f in zip(idx, files, strict=True)],
        K=np.repeat(K[None], len(files), 0), cam_to_world=np.array([gl_to_cv(m) for m in c2w]),
        sizes=[size] * len(files), depth=[_first(depth_dir, i, (".exr", ".png")) for i in idx],
        depth_units=1.0, confidence=[_first(root / "conf", i, (".png",)) for i in idx],
        source_files=[meta_file] * len(files), notes=[note],
    )  # fmt: skip


def _first(d: Path, i: int, exts: tuple[str, ...]) -> Path | None:
    for e in exts:
        if (d / f"{i}{e}").is_file():
            return d / f"{i}{e}"
    return None


def _read_meta(meta_file: Path) -> dict:
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{shown(meta_file)} cannot be read as JSON ({e}).", TODO) from None
    if not isinstance(meta, dict):
        raise UserError(f"{shown(meta_file)} holds no metadata (a JSON object is expected).", TODO)
    for k in ("w", "h"):
        if isinstance(meta.get(k), bool) or not isinstance(meta.get(k), int | float):
            side = "width" if k == "w" else "height"
            what = "missing" if k not in meta else repr(meta[k])
            raise UserError(f"{shown(meta_file)}: {k} (the image {side}) is {what}, not a number.", TODO)
    K = meta.get("K")
    if not (isinstance(K, list) and len(K) == 9 and all(_num(v) for v in K)):
        raise UserError(f"{shown(meta_file)}: K is not the 9 numbers of a 3x3 camera matrix.", TODO)
    poses = meta.get("poses")
    if not (isinstance(poses, list) and all(isinstance(p, list) and len(p) == 7 and all(_num(v) for v in p)
                                            for p in poses)):  # fmt: skip
        raise UserError(f"{shown(meta_file)}: poses is not a list of [qx, qy, qz, qw, tx, ty, tz].", TODO)
    return meta


def _num(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float)


__all__ = ["is_record3d", "read_record3d"]
