"""Phone-scan exports with their own poses, one module per capture app.

:data:`APPS` maps a source kind to ``(is_export, read)``: ``is_export(folder)`` recognises the
app's export layout, ``read(folder)`` returns :class:`~.posed.PosedFrames`, which
:func:`~.posed.import_posed` turns into the output layout (poses used directly).
"""

from __future__ import annotations

from pathlib import Path

from .polycam import is_polycam, read_polycam
from .record3d import is_record3d, read_record3d

APPS = {"polycam": (is_polycam, read_polycam), "record3d": (is_record3d, read_record3d)}


def scan_kind(path: Path) -> str | None:
    """The source kind of a phone-scan export folder (``"polycam"``, ``"record3d"``), or None."""
    for kind, (is_export, _) in APPS.items():
        if is_export(Path(path)):
            return kind
    return None


def import_scan(path: Path, kind: str, out_dir: Path, cfg, bus=None):
    """Read the export ``path`` of app ``kind`` and import it: the scene (see
    :func:`splatkit.sources.import_cameras`, which calls this)."""
    from ..events import NULL_BUS
    from .posed import import_posed

    return import_posed(APPS[kind][1](Path(path)), out_dir, cfg, bus or NULL_BUS)


__all__ = ["APPS", "scan_kind", "import_scan"]
