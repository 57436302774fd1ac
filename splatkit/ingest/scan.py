"""Finding the photos in a folder, whatever else the folder holds.

Links are followed, so a linked photo or a linked folder of photos is used like any other, except
a link that leads to a folder already searched (a loop such as ``photos/up -> ..``, or a second
link to one folder): it is skipped, so that the search ends and no photo is used twice. Broken
links, links that go round in a loop, files and folders that cannot be read (permissions), pipes
and devices, empty files and files that vanish while the folder is read are each skipped with a
plain reason (:class:`Skipped`); the rest is used. Hidden files and folders are not searched.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .formats import IMAGE_EXTS, NOT_READ, not_read_reason
from .names import shown


@dataclass
class Skipped:
    """A file (or folder) that was not used, and why (plain words).

    ``kind`` groups reasons that call for the same advice (e.g. ``"panorama"``).
    """

    path: Path
    reason: str
    kind: str = ""

    @property
    def name(self) -> str:
        """The file name, printable on one line (see :func:`~splatkit.ingest.names.shown`)."""
        return shown(self.path.name)


@dataclass
class Found:
    """A candidate photo and its size and modification time when the folder was read."""

    path: Path
    rel: str  # relative to the photos folder, with "/" (may hold undecodable bytes)
    size: int
    mtime_ns: int


def scan(src: Path, exclude: Path | None = None) -> tuple[list[Found], list[Skipped]]:
    """Candidate photos under ``src`` (sorted by relative path) and the entries skipped.

    ``exclude`` (our own working folder, when it lies inside ``src``) is not searched.
    """
    src = Path(src)
    found: list[Found] = []
    skipped: list[Skipped] = []
    src_real = os.path.realpath(src)
    excluded = _ident(exclude) if exclude is not None else None
    seen = {_ident(src)}

    def unreadable(e: OSError) -> None:
        where = Path(e.filename) if e.filename else src
        skipped.append(Skipped(where, f"this folder {os_reason(e)}: its photos were not used", "folder"))

    for root, dirs, files in os.walk(src, onerror=unreadable, followlinks=True):
        rootp = Path(root)
        dirs[:] = _folders_to_search(rootp, dirs, seen, excluded, src_real, skipped)
        for fn in sorted(files):
            if fn.startswith("."):
                continue
            entry = _file(rootp / fn, src, skipped)
            if entry is not None:
                found.append(entry)
    found.sort(key=lambda e: e.rel)
    return found, skipped


def _folders_to_search(root: Path, dirs, seen: set, excluded, src_real: str, skipped) -> list[str]:
    keep = []
    for d in sorted(dirs):
        if d.startswith("."):
            continue
        p = root / d
        ident = _ident(p)
        if ident is None or ident == excluded:
            continue  # vanished since it was listed, or our own working folder
        if ident in seen or (p.is_symlink() and _contains(os.path.realpath(p), src_real)):
            skipped.append(Skipped(p, "a link to a folder that is already searched (a loop, or a "
                                   "second link to it): not followed", "link"))
            continue
        seen.add(ident)
        keep.append(d)
    return keep


def _file(f: Path, src: Path, skipped: list[Skipped]) -> Found | None:
    """The file as a candidate photo, or None (a :class:`Skipped` is added when it says why)."""
    ext = f.suffix.lower()
    try:
        st = os.stat(f)
    except OSError as e:
        skipped.append(Skipped(f, _stat_reason(f, e), "unreadable"))
        return None
    if stat.S_ISDIR(st.st_mode):  # became a folder since it was listed
        return None
    if not stat.S_ISREG(st.st_mode):
        skipped.append(Skipped(f, "not a regular file (a pipe, socket or device)", "unreadable"))
    elif ext in IMAGE_EXTS and st.st_size == 0:
        skipped.append(Skipped(f, "an empty file (0 bytes; copying it may have failed)", "unreadable"))
    elif ext in IMAGE_EXTS:
        return Found(f, f.relative_to(src).as_posix(), st.st_size, st.st_mtime_ns)
    else:  # a format that is not read, or not a photo at all
        skipped.append(Skipped(f, not_read_reason(f), "format" if ext in NOT_READ else "other"))
    return None


def _stat_reason(f: Path, e: OSError) -> str:
    if f.is_symlink():
        try:
            target = shown(os.readlink(f))
        except OSError:
            target = "?"
        if e.errno == errno.ELOOP:
            return f"a link that goes round in a loop (it points to {target})"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"a broken link: it points to {target}, which does not exist"
    return os_reason(e)


def os_reason(e: OSError) -> str:
    """What an OSError means for a file, in plain words."""
    if e.errno == errno.ENOENT:
        return "disappeared while the folder was being read"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    if e.errno == errno.ENAMETOOLONG:
        return "has a name too long for this system"
    if e.errno == errno.ELOOP:
        return "is a link that goes round in a loop"
    return f"cannot be read ({e.strerror or e})"


def _ident(p: Path | None) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
    except (OSError, TypeError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _contains(outer: str, inner: str) -> bool:
    """Whether folder ``outer`` is ``inner`` or one of its parents (real paths)."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


__all__ = ["scan", "os_reason", "Found", "Skipped", "IMAGE_EXTS"]
