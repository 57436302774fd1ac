"""What a run was trained on: the input's files, each by name, size and a content hash.

``--resume`` continues a checkpoint on the cameras it was trained with; on other photos (a photo
deleted, added, or replaced by another under the same name) it would mix two captures, or fail
deep in the loop. :func:`fingerprint` records the input when a run starts (in
``.splatkit/run.json``); :func:`differences` says what changed, so that the resume decision
(:mod:`splatkit.run`) can refuse before anything in the output folder is replaced.

Names are relative to the input (a photos folder, a video, a COLMAP project, a
``transforms.json``'s folder), so renaming or moving the input folder is no change.

The hash reads three 64 KiB samples of a file (start, middle, end) and its size, not all of it:
a few milliseconds a photo, and a video of gigabytes costs the same. A different photo differs
in its first bytes already (EXIF, thumbnail, the first rows of its pixels); an edited one changes
its size or its compressed data after the edit, which reaches the end sample.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

#: bytes read at each of the three places of a file
SAMPLE = 64 * 1024
#: model files of a COLMAP project (``.bin`` or ``.txt``)
MODEL_STEMS = {"cameras", "images", "points3D", "rigs", "frames"}
MEDIA_EXTS = {
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".dng", ".cr2",
    ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".avif", ".json",
    ".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".3gp", ".mpg", ".mpeg",
}  # fmt: skip
VERSION = 1


def file_hash(path: Path, size: int) -> str:
    """The size and three samples of ``path`` (all of it when small), hashed."""
    h = hashlib.blake2b(digest_size=12)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE:
            h.update(f.read())
        else:
            for at in (0, size // 2 - SAMPLE // 2, size - SAMPLE):
                f.seek(at)
                h.update(f.read(SAMPLE))
    return h.hexdigest()


def _counts(rel: str, name: str) -> bool:
    ext = os.path.splitext(name)[1].lower()
    if ext in MEDIA_EXTS:
        return True
    return ext in (".bin", ".txt") and os.path.splitext(name)[0] in MODEL_STEMS


def _files(source: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` of every file of the input that a run reads."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() != ".json":  # a video: one file, whatever its name
            return [("video", source)]
        source = source.parent  # a transforms.json brings its folder's images
    out = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), source).replace(os.sep, "/")
            if not name.startswith(".") and _counts(rel, name):
                out.append((rel, Path(root) / name))
    return out


def fingerprint(source: Path) -> dict:
    """``{"version", "files": {name: [size, hash]}}`` of the input; files that cannot be read
    are recorded as such (ingest says why it skips them)."""
    files = {}
    for rel, path in _files(source):
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):  # a pipe or a device under a photo's name: opening
                files[rel] = [-1, "not a file"]  # a pipe would wait for a writer forever
                continue
            files[rel] = [st.st_size, file_hash(path, st.st_size)]
        except OSError:
            files[rel] = [-1, "unreadable"]
    return {"version": VERSION, "files": files}


def differences(before: dict, now: dict) -> dict[str, list[str]]:
    """``{"added": [...], "removed": [...], "changed": [...]}`` between two fingerprints; empty
    lists when they are the same (or ``before`` is of another version: not compared)."""
    if not isinstance(before, dict) or before.get("version") != VERSION:
        return {"added": [], "removed": [], "changed": []}
    old, new = before.get("files") or {}, now.get("files") or {}
    return {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
            "changed": sorted(n for n in set(old) & set(new) if list(old[n]) != list(new[n]))}


def describe(diff: dict[str, list[str]]) -> str:
    """``1 removed (0003.jpg), 8 changed (0001.jpg, 0002.jpg, ... )``."""
    parts = []
    for key in ("removed", "added", "changed"):
        names = diff.get(key) or []
        if names:
            shown = ", ".join("the video" if n == "video" else n for n in names[:3])
            parts.append(f"{len(names)} {key} ({shown}{', ...' if len(names) > 3 else ''})")
    return ", ".join(parts)


__all__ = ["fingerprint", "differences", "describe", "file_hash"]
