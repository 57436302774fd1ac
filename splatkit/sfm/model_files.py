"""A COLMAP model given by the user (``cameras``, ``images``, ``points3D`` and, from COLMAP 3.12,
``rigs`` and ``frames``; ``.bin`` or ``.txt``), checked before pycolmap reads it.

pycolmap's readers trust the files. Measured with pycolmap 4.2: an ``images.bin``,
``points3D.bin`` or ``frames.bin`` cut short or overwritten makes the reader loop on a count read
from garbage (minutes, until killed), and a ``cameras.bin`` one byte short is read without a
word (the last focal length silently wrong). So :func:`read_model` first walks every binary file
record by record with bounds checks (COLMAP's little-endian layout, as written by
``reconstruction_io_binary.cc``), and every text file line by line, and names the file, the record
and what is wrong; only then does pycolmap read the model, and what it still refuses (files that
do not fit together, e.g. an image of a camera that is not there) becomes a plain error too.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from pathlib import Path

import numpy as np
import pycolmap

from ..errors import UserError
from ..ingest.names import shown

FILES = ("cameras", "images", "points3D")
OPTIONAL = ("rigs", "frames")
#: camera model id -> number of parameters, and name -> number (from pycolmap itself)
NUM_PARAMS: dict[int, int] = {}
NUM_PARAMS_BY_NAME: dict[str, int] = {}
for _name, _model in pycolmap.CameraModelId.__members__.items():
    if _name != "INVALID":
        _n = len(pycolmap.Camera.create_from_model_id(1, _model, 1.0, 2, 2).params)
        NUM_PARAMS[int(_model)], NUM_PARAMS_BY_NAME[_name] = _n, _n
SENSOR_TYPES = (-1, 0, 1)  # INVALID, CAMERA, IMU


class _Damaged(Exception):
    pass


def model_format(sparse: Path, photos: Path | None = None) -> str:
    """``".bin"`` or ``".txt"``: the set that pycolmap reads (binary first), or a UserError."""
    for ext in (".bin", ".txt"):
        if all((sparse / f"{n}{ext}").is_file() for n in FILES):
            return ext
    ext = ".bin" if (sparse / "cameras.bin").is_file() else ".txt"
    missing = [f"{n}{ext}" for n in FILES if not (sparse / f"{n}{ext}").is_file()]
    raise UserError(
        f"The COLMAP model in {shown(sparse)} is incomplete: no {' and no '.join(missing)}.",
        "Copy the whole model folder (cameras, images and points3D files together)"
        + (f", or give the photos alone to compute new cameras: splatkit train {shown(photos)}"
           if photos is not None else "."),
    )


def read_model(sparse: Path, photos: Path | None = None, todo: str | None = None
               ) -> pycolmap.Reconstruction:
    """The checked model in ``sparse``; a two-line UserError naming the file if it is damaged.

    ``photos`` (the project's images folder) is suggested as the way out: SfM on the photos alone;
    ``todo`` replaces that advice (a run folder's own model: run SfM again). Every reader of a
    model goes through here: the import of a user's project, training, export, report, viewer.
    """
    sparse, given = Path(sparse), todo
    todo = todo or "Export the model again from COLMAP" + (
        f", or give the photos alone to compute new cameras: splatkit train {shown(photos)}"
        if photos is not None else "."
    )
    ext = model_format(sparse, photos) if given is None else _format_or_refuse(sparse, todo)
    for n in (*FILES, *OPTIONAL):
        f = sparse / f"{n}{ext}"
        if not f.is_file():
            continue
        try:
            (_walk_binary if ext == ".bin" else _walk_text)(f, n)
        except _Damaged as e:
            raise UserError(f"{shown(f)} is damaged: {e}.", todo) from None
        except OSError as e:
            raise UserError(f"{shown(f)} cannot be read ({e.strerror or e}).", todo) from None
    try:
        return pycolmap.Reconstruction(str(sparse))
    except (ValueError, IndexError, KeyError, RuntimeError, UnicodeDecodeError) as e:
        raise UserError(
            f"The files of the COLMAP model in {shown(sparse)} do not fit together ({_plain(e)}).", todo
        ) from None


def _format_or_refuse(sparse: Path, todo: str) -> str:
    try:
        return model_format(sparse)
    except UserError as e:
        raise UserError(e.what, todo) from None


def _plain(e: Exception) -> str:
    """pycolmap's message without the C++ source location, on one short line (or plain words
    when it is about C++ rather than the model)."""
    s = str(e).strip().splitlines()[0] if str(e).strip() else ""
    s = re.sub(r"^\[[^\]]*\]\s*", "", s).replace("Check failed: ", "")
    if not s or any(c in s for c in (">>", "::", "_.", "std")):
        return "an image, camera, rig or frame refers to one that is not there"
    return s[:160]


# ---- binary files ---------------------------------------------------------------------------


class _Reader:
    """Bounds-checked little-endian reads from a file's bytes."""

    def __init__(self, buf, what: str):
        self.b, self.i, self.n, self.what = buf, 0, len(buf), what

    def take(self, fmt: str, where: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.i + size > self.n:
            raise _Damaged(f"it ends in the middle of {where} (byte {self.i:,} of {self.n:,})")
        v = struct.unpack_from(fmt, self.b, self.i)
        self.i += size
        return v

    def skip(self, size: int, where: str) -> None:
        if self.i + size > self.n:
            raise _Damaged(f"it ends in the middle of {where} (byte {self.i:,} of {self.n:,})")
        self.i += size

    def count(self, least: int) -> int:
        """The record count at the start, if that many records of ``least`` bytes can fit."""
        (k,) = self.take("<Q", "its header")
        if k * least > self.n - self.i:
            raise _Damaged(f"it is too short for the {k:,} {self.what} it says it holds ({self.n:,} "
                           "bytes): cut short, or not a COLMAP file")
        return k

    def name(self, where: str) -> str:
        j = self.b.find(b"\0", self.i, self.i + 65536)
        if j < 0:
            raise _Damaged(f"the name of {where} does not end")
        raw = bytes(self.b[self.i : j])
        self.i = j + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Damaged(f"the name of {where} is not UTF-8 text") from None

    def end(self, k: int) -> None:
        if self.i != self.n:
            raise _Damaged(f"{self.n - self.i:,} bytes are left after the last of its {k:,} {self.what}")


def _walk_binary(path: Path, kind: str) -> None:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            what = {"points3D": "points", "rigs": "rigs", "frames": "frames"}.get(kind, kind)
            r = _Reader(buf, what)
            {"cameras": _cameras_bin, "images": _images_bin, "points3D": _points_bin,
             "rigs": _rigs_bin, "frames": _frames_bin}[kind](r)
        finally:
            if size:
                buf.close()


def _cameras_bin(r: _Reader) -> None:
    k = r.count(24 + 3 * 8)
    if k == 0:
        raise _Damaged("it lists no cameras")
    seen = set()
    for i in range(k):
        cid, model, _w, _h = r.take("<IiQQ", f"camera {i + 1} of {k}")
        if model not in NUM_PARAMS:
            raise _Damaged(f"camera {cid} has an unknown camera model (number {model})")
        if cid in seen:
            raise _Damaged(f"camera id {cid} appears twice")
        seen.add(cid)
        r.skip(8 * NUM_PARAMS[model], f"the parameters of camera {cid}")
    r.end(k)


def _images_bin(r: _Reader) -> None:
    k = r.count(64 + 1 + 8)
    for i in range(k):
        where = f"image {i + 1} of {k}"
        iid = r.take("<I7dI", where)[0]
        r.name(f"image {iid}")
        (npts,) = r.take("<Q", where)
        r.skip(24 * npts, f"the 2D points of image {iid}")
    r.end(k)


def _points_bin(r: _Reader) -> None:
    k = r.count(51)
    take, skip = r.take, r.skip
    for i in range(k):
        track = take("<Q3d3BdQ", f"point {i + 1} of {k}")[-1]
        skip(8 * track, f"the track of point {i + 1}")
    r.end(k)


def _rigs_bin(r: _Reader) -> None:
    k = r.count(8)
    for i in range(k):
        rid, sensors = r.take("<II", f"rig {i + 1} of {k}")
        if sensors:
            _sensor(r.take("<iI", f"rig {rid}")[0], rid)
        for _ in range(max(0, sensors - 1)):
            kind, _sid, has_pose = r.take("<iIB", f"rig {rid}")
            _sensor(kind, rid)
            if has_pose:
                r.skip(56, f"a sensor pose of rig {rid}")
    r.end(k)


def _sensor(kind: int, rid: int) -> None:
    if kind not in SENSOR_TYPES:
        raise _Damaged(f"rig {rid} has a sensor of unknown type {kind}")


def _frames_bin(r: _Reader) -> None:
    k = r.count(68)
    for i in range(k):
        fid = r.take("<II7d", f"frame {i + 1} of {k}")[0]
        (data,) = r.take("<I", f"frame {fid}")
        r.skip(16 * data, f"the data of frame {fid}")
    r.end(k)


# ---- text files -----------------------------------------------------------------------------


def _walk_text(path: Path, kind: str) -> None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Damaged(f"it is not UTF-8 text (byte {e.start:,})") from None
    lines = text.splitlines()
    {"cameras": _cameras_txt, "images": _images_txt, "points3D": _points_txt,
     "rigs": _rigs_txt, "frames": _frames_txt}[kind](lines)


def _data(lines: list[str]):
    for ln, line in enumerate(lines, 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield ln, s.split()


def _int(tok: str, ln: int, what: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise _Damaged(f"line {ln}: {what} is {tok[:20]!r}, not a whole number") from None


def _float(tok: str, ln: int, what: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        v = math.nan
        tok = tok[:20]
    if not math.isfinite(v):
        raise _Damaged(f"line {ln}: {what} is {tok!r}, not a number")
    return v


def _cameras_txt(lines: list[str]) -> None:
    if not any(True for _ in _data(lines)):
        raise _Damaged("it lists no cameras")
    for ln, t in _data(lines):
        if len(t) < 4:
            raise _Damaged(f"line {ln} has {len(t)} fields; a camera needs ID, MODEL, WIDTH, HEIGHT, PARAMS")
        _int(t[0], ln, "the camera ID")
        if t[1] not in NUM_PARAMS_BY_NAME:
            raise _Damaged(f"line {ln}: {t[1][:30]!r} is not a COLMAP camera model")
        _int(t[2], ln, "the width")
        _int(t[3], ln, "the height")
        want = NUM_PARAMS_BY_NAME[t[1]]
        if len(t) - 4 != want:
            raise _Damaged(f"line {ln}: a {t[1]} camera has {want} parameters, not {len(t) - 4}")
        for k, tok in enumerate(t[4:]):
            _float(tok, ln, f"parameter {k + 1}")


def _images_txt(lines: list[str]) -> None:
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        i += 1
        if not s or s.startswith("#"):
            continue
        t, ln = s.split(), i
        if len(t) < 10:
            raise _Damaged(f"line {ln} has {len(t)} fields; an image needs IMAGE_ID, QW, QX, QY, QZ, "
                           "TX, TY, TZ, CAMERA_ID, NAME")
        _int(t[0], ln, "the image ID")
        for k, name in enumerate(("QW", "QX", "QY", "QZ", "TX", "TY", "TZ")):
            _float(t[1 + k], ln, name)
        _int(t[8], ln, "the camera ID")
        pts = lines[i].split() if i < len(lines) else []  # the next line: its 2D points
        i += 1
        if len(pts) % 3:
            raise _Damaged(f"line {ln + 1}: the 2D points of image {t[0]} are not X, Y, POINT3D_ID triples")
        try:
            ok = bool(np.isfinite(np.asarray(pts, dtype=np.float64)).all())
        except ValueError:
            ok = False
        if not ok:
            raise _Damaged(f"line {ln + 1}: the 2D points of image {t[0]} are not all numbers")


def _points_txt(lines: list[str]) -> None:
    for ln, t in _data(lines):
        if len(t) < 8 or (len(t) - 8) % 2:
            raise _Damaged(f"line {ln} has {len(t)} fields; a point needs POINT3D_ID, X, Y, Z, R, G, B, "
                           "ERROR and (IMAGE_ID, POINT2D_IDX) pairs")
        _int(t[0], ln, "the point ID")
        for k, name in enumerate(("X", "Y", "Z")):
            _float(t[1 + k], ln, name)
        for k, name in enumerate(("R", "G", "B")):
            if not 0 <= _int(t[4 + k], ln, name) <= 255:
                raise _Damaged(f"line {ln}: {name} is {t[4 + k]}, not 0-255")


def _rigs_txt(lines: list[str]) -> None:
    for ln, t in _data(lines):
        if len(t) < 2:
            raise _Damaged(f"line {ln} has {len(t)} field(s); a rig needs RIG_ID, NUM_SENSORS, sensors")
        _int(t[0], ln, "the rig ID")
        sensors, i = _int(t[1], ln, "the number of sensors"), 2
        for k in range(sensors):
            if len(t) < i + (2 if k == 0 else 3):
                raise _Damaged(f"line {ln}: rig {t[0]} lists fewer than its {sensors} sensor(s)")
            _int(t[i + 1], ln, "a sensor ID")
            i += 2
            if k > 0:  # the reference sensor has no pose; the others say whether they have one
                has_pose = _int(t[i], ln, "HAS_POSE")
                i += 1
                if has_pose:
                    if len(t) < i + 7:
                        raise _Damaged(f"line {ln}: a sensor pose of rig {t[0]} is cut short")
                    for tok in t[i : i + 7]:
                        _float(tok, ln, "a sensor pose")
                    i += 7
        if len(t) != i:
            raise _Damaged(f"line {ln}: rig {t[0]} has {len(t)} fields, not the {i} its sensors need")


def _frames_txt(lines: list[str]) -> None:
    for ln, t in _data(lines):
        if len(t) < 10:
            raise _Damaged(f"line {ln} has {len(t)} fields; a frame needs FRAME_ID, RIG_ID, QW, QX, QY, "
                           "QZ, TX, TY, TZ, NUM_DATA_IDS and the data IDs")
        _int(t[0], ln, "the frame ID")
        _int(t[1], ln, "the rig ID")
        for k, name in enumerate(("QW", "QX", "QY", "QZ", "TX", "TY", "TZ")):
            _float(t[2 + k], ln, name)
        n = _int(t[9], ln, "NUM_DATA_IDS")
        if len(t) != 10 + 3 * n:
            raise _Damaged(f"line {ln}: frame {t[0]} says {n} data IDs but has {len(t) - 10} fields for them")
        for k in range(n):
            _int(t[11 + 3 * k], ln, "a sensor ID")
            _int(t[12 + 3 * k], ln, "a data ID")


__all__ = ["read_model", "model_format", "NUM_PARAMS"]
