"""A ``transforms.json`` (nerfstudio, instant-ngp, NeRF synthetic) read whatever its variant, and
refused in two lines, naming the frame and the field, when it cannot be used.

The variants met in the wild and what happens to them:

* no ``w``/``h`` (NeRF synthetic): read from the image files, and said;
* ``camera_angle_x`` (and maybe ``camera_angle_y``) instead of ``fl_x``: the focal length is
  computed from it, and said;
* file paths without extension (NeRF synthetic ``./train/r_0``): the image file with the same
  name is used, and said; Windows separators (``images\\0001.jpg``) are read as ``/``; absolute
  paths inside the file's folder are used, paths outside it (absolute, or with ``..``) refused;
* image files that are a uniform scale of ``w``/``h`` (the images were downscaled after the file
  was written): the intrinsics are scaled, and said; other sizes are refused;
* 3x4 matrices get their last row; a matrix that is nearly a rotation (rounding) is made one;
* numbers written as text are read; anything else that is not a number is refused;
* a byte-order mark (UTF-8 or UTF-16, as Windows editors write) is fine; files larger than
  :data:`MAX_BYTES`, invalid JSON, a list at the top level, no ``frames``, frames without
  ``file_path`` or ``transform_matrix``, and cameras that fail :mod:`.validate` are refused;
* listed images that are missing or damaged are left out with a warning while at least half of
  them and :data:`~.validate.MIN_IMAGES` remain; otherwise refused (most likely the wrong folder).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message
from ..ingest.names import shown
from ..rundir import colmap_images, colmap_models
from .validate import (
    MIN_IMAGES,
    Labels,
    Problem,
    camera_problems,
    image_status,
    pose_problems,
    refuse,
    set_problems,
    size_problem,
    size_scale,
)

STAGE = "sfm"
#: larger files are refused unread (10,000 cameras take about 10 MB)
MAX_BYTES = 100 * 2**20
#: ``camera_model`` values that are pinhole cameras with (optional) OpenCV k1, k2, p1, p2
PINHOLE_MODELS = (None, "OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
#: camera_model values of 360-degree cameras (nerfstudio writes EQUIRECTANGULAR)
SPHERICAL_MODELS = ("EQUIRECTANGULAR", "SPHERICAL", "PANORAMA")
EXT_GUESSES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
NUMBER_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y",
               "k1", "k2", "p1", "p2", "k3", "k4")
FILE_NAMES = ("transforms.json", "transforms_train.json")


@dataclass
class TransformsCameras:
    """The usable cameras of a transforms.json: pinhole intrinsics for the image files as they
    are, OpenGL camera-to-world poses (rigid), OpenCV distortion ``k1, k2, p1, p2``."""

    path: Path
    root: Path
    names: list[str]  # image paths relative to root, "/"-separated
    K: np.ndarray  # [N, 3, 3]
    c2w: np.ndarray  # [N, 4, 4]
    width: list[int]
    height: list[int]
    dist: np.ndarray  # [N, 4]
    missing: list[str] = field(default_factory=list)


@dataclass
class _Frame:
    index: int
    rel: str  # file_path as written
    file: Path
    c2w: np.ndarray
    num: dict  # the numbers of NUMBER_KEYS that are given (frame over top level)


class _Bad(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def transforms_file(path: Path) -> Path | None:
    """The camera file a folder or file stands for (``transforms.json``, or NeRF synthetic's
    ``transforms_train.json``), or None."""
    path = Path(path)
    if path.is_file():
        return path
    return next((path / n for n in FILE_NAMES if (path / n).is_file()), None)


def read_transforms(path: Path, bus: EventBus = NULL_BUS) -> TransformsCameras:
    """The checked cameras of a transforms.json (or its folder); nothing is written."""
    path = transforms_file(path) or Path(path) / "transforms.json"
    meta = load_json(path)
    root = path.parent
    frames = _frame_list(meta, path)
    todo = _todo(path, frames)
    notes: set[str] = set()
    parsed, problems, missing = [], [], []
    for i, fr in enumerate(frames):
        try:
            f = _frame(i, fr, meta, root, notes)
        except _Bad as e:
            problems.append(e.problem)
            continue
        status = image_status(f.file)
        if isinstance(status, str):
            missing.append((f.rel, status))
        else:
            parsed.append((f, status))
    if problems:
        raise refuse(problems, path, todo)
    _check_missing(path, len(frames), missing, bus)
    cams = _cameras(path, root, parsed, notes, todo)
    cams.missing = [m for m, _ in missing]
    _say(bus, path, notes, cams)
    return cams


def load_json(path: Path):
    """The parsed object of a transforms.json, or a two-line UserError."""
    todo = "Check that this is the camera file written by nerfstudio, instant-ngp or COLMAP's converters."
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{shown(path)} is {size / 2**20:,.0f} MB: far larger than any camera file "
                            "(10,000 cameras take about 10 MB).", todo)
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{shown(path)} does not exist.",
                        "Give the transforms.json file or its folder.") from None
    except OSError as e:
        raise UserError(f"{shown(path)} cannot be read ({e.strerror or e}).", todo) from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", "replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise UserError(f"{shown(path)} is not UTF-8 text (byte {e.start:,}).", todo) from None
    if not text.strip():
        raise UserError(f"{shown(path)} is empty.", todo)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{shown(path)} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}).",
                        "Fix it in a text editor (often a missing comma or bracket).") from None
    except RecursionError:
        raise UserError(f"{shown(path)} is nested too deeply to be a camera file.", todo) from None
    if not isinstance(meta, dict):
        raise UserError(f"{shown(path)} holds {_kind(meta)} at the top, not the object of a transforms.json "
                        "(camera fields and a \"frames\" list).", todo)
    return meta


def _frame_list(meta: dict, path: Path) -> list:
    frames = meta.get("frames")
    todo = "A transforms.json lists its cameras in \"frames\", each with a file_path and a transform_matrix."
    if frames is None:
        raise UserError(f"{shown(path)} has no \"frames\" list.", todo)
    if not isinstance(frames, list):
        raise UserError(f"{shown(path)}: \"frames\" is {_kind(frames)}, not a list.", todo)
    if not frames:
        raise UserError(f"{shown(path)} lists no frames.", todo)
    return frames


def _frame(i: int, fr, meta: dict, root: Path, notes: set) -> _Frame:
    where = f"frame {i + 1}"
    if not isinstance(fr, dict):
        raise _Bad(Problem(where, "", f"is {_kind(fr)}, not an object with file_path and transform_matrix"))
    rel = fr.get("file_path")
    if rel is None:
        raise _Bad(Problem(where, "file_path", "is missing"))
    if not isinstance(rel, str):
        raise _Bad(Problem(where, "file_path", f"is {_kind(rel)}, not the path of an image"))
    if not rel.strip():
        raise _Bad(Problem(where, "file_path", "is empty"))
    where = f"frame {i + 1} ({shown(rel)})"
    g = {**meta, **fr}
    model = g.get("camera_model")
    if model not in PINHOLE_MODELS:
        if isinstance(model, str) and model.upper() in SPHERICAL_MODELS:
            raise _Bad(Problem(where, "camera_model", f"is {shown(model)}: a 360-degree camera's poses "
                               "cannot be used; give the folder of its equirectangular frames instead "
                               "(splatkit cuts them into pinhole views)"))
        raise _Bad(Problem(where, "camera_model", f"is {shown(model)}: only pinhole cameras (OPENCV, "
                                                  "PINHOLE) can be used, not fisheye or 360 ones"))
    num = {k: _number(g, k, where) for k in NUMBER_KEYS}
    return _Frame(i, rel, _image_file(root, rel, where, notes), _matrix(fr, where),
                  {k: v for k, v in num.items() if v is not None})


def _number(g: dict, key: str, where: str) -> float | None:
    v = g.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _Bad(Problem(where, key, f"is {_kind(v)}, not a number"))
    try:
        return float(v)
    except ValueError:
        raise _Bad(Problem(where, key, f"is {shown(repr(v)[:40])}, not a number")) from None


def _matrix(fr: dict, where: str) -> np.ndarray:
    v = fr.get("transform_matrix")
    if v is None:
        raise _Bad(Problem(where, "transform_matrix", "is missing"))
    try:
        m = np.asarray(v, dtype=np.float64)
    except (ValueError, TypeError):
        raise _Bad(Problem(where, "transform_matrix", "is not a 4x4 table of numbers")) from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        shape = "x".join(map(str, m.shape)) or "a single number"
        raise _Bad(Problem(where, "transform_matrix", f"is {shape}, not 4x4 (or 3x4)"))
    problems = pose_problems(where, m, "transform_matrix")
    if problems:
        raise _Bad(problems[0])
    u, _, vt = np.linalg.svd(m[:3, :3])  # remove rounding: the nearest rotation
    m[:3, :3] = u @ vt
    return m


def _image_file(root: Path, rel: str, where: str, notes: set) -> Path:
    """The image file of ``file_path``; a _Bad when it lies outside the folder of the file."""
    p = rel.strip().replace("\\", "/")
    base = os.path.abspath(root)
    full = os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))
    if not (full + os.sep).startswith(base.rstrip(os.sep) + os.sep):
        raise _Bad(Problem(where, "file_path", "lies outside the folder of the camera file: put the images "
                                               "beside it and use paths relative to it"))
    f = Path(full)
    if not f.is_file():
        for ext in EXT_GUESSES:  # NeRF synthetic writes paths without extension
            g = f.with_name(f.name + ext)
            if g.is_file():
                notes.add(f"ext:{ext}")
                return g
    return f


def _check_missing(path: Path, listed: int, missing: list[tuple[str, str]], bus: EventBus) -> None:
    if not missing:
        return
    usable = listed - len(missing)
    rel, why = missing[0]
    if usable < MIN_IMAGES or usable < listed / 2:
        raise UserError(
            f"Only {usable} of the {listed} images listed in {shown(path)} can be used ({shown(rel)} {why}"
            + (f", and {len(missing) - 1} more" if len(missing) > 1 else "") + ").",
            "Check that the image paths in the file are relative to its folder and the images are there.",
        )
    shown_list = ", ".join(f"{shown(r)} ({w})" for r, w in missing[:5]) + ("..." if len(missing) > 5 else "")
    bus.emit(Message(STAGE, f"{len(missing)} frame(s) of {path.name} have no usable image and are left "
                            f"out: {shown_list}", "warning"))


def _cameras(path: Path, root: Path, parsed: list, notes: set, todo: str) -> TransformsCameras:
    problems: list[Problem] = []
    Ks, c2ws, ws, hs, dists, names = [], [], [], [], [], []
    for f, size in parsed:
        where = f"frame {f.index + 1} ({shown(f.rel)})"
        try:
            K, labels = _intrinsics(f, size, where, notes)
        except _Bad as e:
            problems.append(e.problem)
            continue
        problems += camera_problems(where, K, f.c2w, size[0], size[1], labels)
        Ks.append(K)
        c2ws.append(f.c2w)
        ws.append(size[0])
        hs.append(size[1])
        dists.append([f.num.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")])
        names.append(Path(os.path.relpath(f.file, os.path.abspath(root))).as_posix())
        if f.num.get("k3") or f.num.get("k4"):
            notes.add("k3")
    if not problems:
        c = np.stack(c2ws)[:, :3, 3] if c2ws else np.zeros((0, 3))
        problems = set_problems(names, c, "frames")
    if problems:
        raise refuse(problems, path, todo)
    return TransformsCameras(path, root, names, np.stack(Ks), np.stack(c2ws), ws, hs,
                             np.asarray(dists, dtype=np.float64))


def _intrinsics(f: _Frame, size: tuple[int, int], where: str, notes: set) -> tuple[np.ndarray, Labels]:
    """K for the image file as it is (scaled when the file is a uniform scale of w, h)."""
    w, h = size
    n = f.num
    labels = Labels(fx="fl_x", fy="fl_y", cx="cx", cy="cy", size="w/h", pose="transform_matrix")
    s = 1.0
    if "w" in n and "h" in n:
        given = (int(round(n["w"])), int(round(n["h"])))
        scale = size_scale(given, size)
        if scale is None:
            raise _Bad(size_problem(where, "w/h", given, size))
        if scale != 1.0:
            s = scale
            notes.add(f"scale:{scale:.4g}:{given[0]}x{given[1]}:{w}x{h}")
    else:
        notes.add(f"size:{w}x{h}")
    if "fl_x" in n:
        fx = n["fl_x"] * s
        fy = n.get("fl_y", n["fl_x"]) * s
    elif "camera_angle_x" in n:
        fx = _focal_from_angle(n["camera_angle_x"], w, where, "camera_angle_x")
        fy = (_focal_from_angle(n["camera_angle_y"], h, where, "camera_angle_y")
              if "camera_angle_y" in n else fx)
        labels.fx = labels.fy = "camera_angle_x"
        notes.add("angle")
    else:
        raise _Bad(Problem(where, "fl_x", "is missing, and so is camera_angle_x: one of them gives the "
                                          "focal length"))
    cx = n["cx"] * s if "cx" in n else w / 2
    cy = n["cy"] * s if "cy" in n else h / 2
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64), labels


def _focal_from_angle(angle: float, side: int, where: str, key: str) -> float:
    if not (math.isfinite(angle) and 0 < angle < math.pi):
        raise _Bad(Problem(where, key, f"is {angle:g}: a field of view is between 0 and pi radians"))
    return 0.5 * side / math.tan(0.5 * angle)


def _say(bus: EventBus, path: Path, notes: set, cams: TransformsCameras) -> None:
    """One line per fix that was made, so that the user knows what was assumed."""
    name = path.name
    for n in sorted(notes):
        kind, _, rest = n.partition(":")
        text = {
            "size": f"{name} gives no image size (w, h): read from the images ({rest} pixels).",
            "angle": f"{name} gives no focal length in pixels (fl_x): computed from camera_angle_x.",
            "ext": f"The image paths in {name} have no extension: the {rest} files of those names are used.",
            "k3": f"{name} has k3/k4 lens distortion terms, which are ignored (k1, k2, p1, p2 are used).",
        }.get(kind)
        if kind == "scale":
            s, given, actual = rest.split(":")
            text = (f"The images are {float(s):.3g} times the size given in {name} ({given} -> {actual} "
                    "pixels): the cameras are scaled to match.")
        if text:
            bus.emit(Message(STAGE, text, "warning" if kind in ("k3", "scale") else "info"))


def _todo(path: Path, frames: list) -> str:
    """What to do when the file cannot be used. Never a command that meets this file again: the
    folder given for "the images alone" holds no camera file, and images listed outside the
    file's folder get the move that makes their paths valid."""
    root = os.path.abspath(path.parent)
    dirs = [os.path.dirname(os.path.normpath(os.path.join(root, fr["file_path"])))
            for fr in frames if isinstance(fr, dict) and isinstance(fr.get("file_path"), str)
            and fr["file_path"].strip()]
    try:
        common = os.path.commonpath(dirs) if dirs else str(_images_dir(Path(root)))
    except ValueError:  # paths on different drives
        common = root
    has_cameras = transforms_file(Path(common)) is not None or colmap_models(common)[1].is_dir()
    alone = (f"copy the images in {shown(common)} to a folder of their own and give that folder "
             "to compute new cameras" if has_cameras or not Path(common).is_dir() else
             f"give its images alone to compute new cameras: splatkit train {shown(common)}")
    if (common + os.sep).startswith(root.rstrip(os.sep) + os.sep):
        return f"Fix the file, or {alone}"
    base = os.path.commonpath([root, common])
    return (f"Move {path.name} to {shown(base)} (the folder that holds its images) with its "
            f"file_path entries relative to there, or {alone}")


def _images_dir(root: Path) -> Path:
    return colmap_images(root) if colmap_images(root).is_dir() else root


def _kind(v) -> str:
    return {list: "a list", dict: "an object", str: "text", bool: "true/false", type(None): "null"}.get(
        type(v), "a number")


__all__ = ["read_transforms", "load_json", "transforms_file", "TransformsCameras", "MAX_BYTES"]
