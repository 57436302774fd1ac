"""File names: shown to the user on one plain line, and turned into safe working-copy names.

Folders hold names that are awkward to print or to reuse: bytes that are not UTF-8 (Python keeps
them as lone surrogates, which a UTF-8 terminal or log file refuses to write), newlines and other
control characters (which would split a one-line message), and names hundreds of characters long.
:func:`shown` makes any name printable on one line; :func:`safe_name` makes a flat ASCII name of
bounded length for the working copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

#: longest name shown in a message (longer ones keep their start and end)
SHOWN_MAX = 120
#: longest working-copy stem; a longer one is cut and made unique with a short hash
STEM_MAX = 100


def shown(name) -> str:
    """``name`` (a str or path) as one printable line: undecodable bytes as ``\\xNN``, control
    characters escaped, very long names shortened in the middle."""
    s = str(name)
    if any("\udc80" <= c <= "\udcff" for c in s):  # bytes that were not UTF-8 (surrogateescape)
        s = os.fsencode(s).decode("utf-8", "backslashreplace")
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    if len(s) > SHOWN_MAX:
        half = (SHOWN_MAX - 3) // 2
        s = s[:half] + "..." + s[-half:]
    return s


def safe_name(rel: str, ext: str) -> str:
    """ASCII-safe flat file name for a relative path.

    ``"Été/Façade 1.JPG"`` -> ``"Ete__Facade_1.jpg"`` (folders joined by ``__``). Names that would
    be longer than :data:`STEM_MAX` are cut and end in a hash of the whole path, so that they stay
    unique and within what file systems allow (255 bytes).
    """
    stem = rel.rsplit(".", 1)[0]
    parts = []
    for part in stem.split("/"):
        raw = part.encode("utf-8", "surrogateescape")
        try:
            part = raw.decode("utf-8")
        except UnicodeDecodeError:  # not UTF-8: most often Latin-1 (zip files made on Windows)
            part = raw.decode("latin-1")
        a = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode("ascii")
        a = re.sub(r"[^A-Za-z0-9._-]+", "_", a).strip("._") or "photo"
        parts.append(a)
    flat = "__".join(parts)
    if len(flat) > STEM_MAX:
        digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        flat = flat[: STEM_MAX - 11].rstrip("._-") + "_" + digest
    return flat + ext


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``, ... if it is taken."""
    if name not in used:
        return name
    stem, ext = name.rsplit(".", 1)
    k = 2
    while f"{stem}_{k}.{ext}" in used:
        k += 1
    return f"{stem}_{k}.{ext}"


__all__ = ["shown", "safe_name", "unique_name"]
