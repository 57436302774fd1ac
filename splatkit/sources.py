"""What the user gave: a folder of photos, a video, a COLMAP project, or a ``transforms.json``.

:func:`detect_source` names it; :func:`ingest_source` turns photos or a video into a
:class:`~splatkit.ingest.PhotoSet` for SfM; :func:`import_cameras` loads existing cameras (SfM is
skipped) into ``OUT/sparse/0`` + ``OUT/images``, the layout that training and the rest read.

Video: :func:`splatkit.video.extract_frames` takes the frames into ``OUT/work/frames``, and they
go through the normal ingest.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from .config import IngestConfig, RunConfig
from .errors import UserError
from .events import NULL_BUS, EventBus, Message
from .ingest import Photo, PhotoSet, SourceKind, ingest
from .ingest.names import shown
from .ingest.scan import IMAGE_EXTS
from .rundir import RunDir, as_rundir, colmap_images, colmap_models
from .video import extract_frames

VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".3gp", ".mpg", ".mpeg"}


def detect_source(path: Path) -> SourceKind:
    """What ``path`` is: a folder of photos, a video, a COLMAP project or a ``transforms.json``;
    360-degree frames, a folder or a video (:mod:`splatkit.pano`); a phone-scan export with
    poses (Polycam, Record3D: :mod:`splatkit.scans`).

    Raises:
        UserError: the path is missing, a broken link or unreachable, or is a file of another
            kind, or a COLMAP model without its images.
    """
    path = Path(path)
    try:
        os.stat(path)
    except PermissionError:
        raise UserError(f"{shown(path)} cannot be reached (permission denied).",
                        "Check the permissions of the folders above it.") from None
    except OSError:
        if path.is_symlink():
            raise UserError(
                f"{shown(path)} is a link to {shown(os.readlink(path))}, which does not exist (or "
                "which leads round in a loop).",
                "Give the folder that holds the photos themselves.",
            ) from None
        raise UserError(f"{shown(path)} does not exist.",
                        "Check the path (quote it if it has spaces).") from None
    if path.is_file():
        return _file_kind(path)
    if not path.is_dir():
        raise UserError(f"{shown(path)} is neither a folder nor a file (a pipe or a device?).",
                        "Give a folder of photos, a video, a COLMAP project or a transforms.json.")
    try:
        with os.scandir(path):
            pass
        return _folder_kind(path)
    except PermissionError:
        raise UserError(f"The photo folder {shown(path)} cannot be read (permission denied).",
                        "Check its permissions, or copy the photos into a folder of your own.") from None


def _folder_kind(path: Path) -> SourceKind:
    from .scans import scan_kind

    scan = scan_kind(path)
    if scan:
        return SourceKind(scan)
    if any((path / n).is_file() for n in ("transforms.json", "transforms_train.json")):
        return SourceKind.TRANSFORMS
    if any((path / f"cameras{e}").is_file() and (path / f"images{e}").is_file() for e in (".bin", ".txt")):
        raise UserError(
            f"{shown(path)} is a COLMAP model folder (cameras, images, points3D), not a project.",
            f"Give the project folder that holds sparse/ and images/ (probably "
            f"{shown(path.parent.parent if path.parent.name == 'sparse' else path.parent)}).",
        )
    if any(_has_model(d) for d in colmap_models(path)[:2]):
        if not colmap_images(path).is_dir():
            raise UserError(
                f"{shown(path)} holds a COLMAP model (sparse/) but no images folder beside it.",
                f"Put the photos the model was made from in {shown(colmap_images(path))}.",
            )
        return SourceKind.COLMAP
    from .pano.source import folder_is_pano

    return SourceKind.PANO if folder_is_pano(path) else SourceKind.PHOTOS


def _has_model(d: Path) -> bool:
    return (d / "cameras.bin").exists() or (d / "cameras.txt").exists()


def _file_kind(path: Path) -> SourceKind:
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        from .pano.source import video_is_pano

        return SourceKind.PANO_VIDEO if video_is_pano(path) else SourceKind.VIDEO
    if ext == ".json":
        return SourceKind.TRANSFORMS
    if ext in IMAGE_EXTS:
        raise UserError(f"{shown(path)} is a single photo.", "Give the folder that holds all the photos.")
    if ext == ".zip":
        raise UserError(f"{shown(path)} is a zip archive.",
                        "Unzip it and give the folder (a Polycam raw export is read as it unzips).")
    raise UserError(
        f"{shown(path)} is neither a folder of photos nor a video.",
        "Give a folder of JPEG/PNG photos, a video (MP4, MOV), a COLMAP project or a "
        "transforms.json.",
    )


def ingest_source(
    path: Path, kind: SourceKind, out_dir: RunDir | Path, cfg: IngestConfig, bus: EventBus = NULL_BUS
) -> PhotoSet:
    """Photos or video -> working copies in ``out_dir/work/images`` (see :func:`ingest`)."""
    return _handler(INGESTERS, kind, "pictures to ingest")(Path(path), as_rundir(out_dir), cfg, bus)


def _ingest_photos(path: Path, rd: RunDir, cfg: IngestConfig, bus: EventBus) -> PhotoSet:
    return ingest(path, rd.work_images, cfg, bus)


def _ingest_video(path: Path, rd: RunDir, cfg: IngestConfig, bus: EventBus) -> PhotoSet:
    frames = extract_frames(path, rd.frames, cfg, bus)
    photo_set = ingest(frames, rd.work_images, cfg, bus)
    photo_set.source_kind = SourceKind.VIDEO
    return photo_set


def _import_colmap(path: Path, out_dir: RunDir, cfg: RunConfig, bus: EventBus):
    from .sfm.importer import import_colmap

    return import_colmap(path, out_dir, cfg.sfm, bus)


def _import_transforms(path: Path, out_dir: RunDir, cfg: RunConfig, bus: EventBus):
    from .sfm.importer import import_transforms

    return import_transforms(path, out_dir, cfg.sfm, bus)


def _import_scan(path: Path, out_dir: Path, cfg: RunConfig, bus: EventBus, kind: SourceKind):
    from .scans import import_scan

    return import_scan(path, str(kind), out_dir, cfg, bus)


def _place_pano(path: Path, out_dir: Path, cfg: RunConfig, bus: EventBus, kind: SourceKind):
    from .pano.source import run_pano_sfm

    return run_pano_sfm(path, kind, out_dir, cfg, bus)


#: The kinds that give pictures (ingest, then SfM), those that bring cameras (imported; SfM
#: skipped) and those whose frames are placed by their own SfM (360 frames, as a rig). Every
#: :class:`SourceKind` is in exactly one (``tests/test_sources.py``).
INGESTERS = {SourceKind.PHOTOS: _ingest_photos, SourceKind.VIDEO: _ingest_video}
IMPORTERS = {SourceKind.COLMAP: _import_colmap, SourceKind.TRANSFORMS: _import_transforms,
             SourceKind.POLYCAM: partial(_import_scan, kind=SourceKind.POLYCAM),
             SourceKind.RECORD3D: partial(_import_scan, kind=SourceKind.RECORD3D)}
RIGS = {SourceKind.PANO: partial(_place_pano, kind=SourceKind.PANO),
        SourceKind.PANO_VIDEO: partial(_place_pano, kind=SourceKind.PANO_VIDEO)}


def place_rig(path: Path, kind: SourceKind, out_dir: RunDir | Path, cfg: RunConfig,
              bus: EventBus = NULL_BUS):  # fmt: skip
    """360 frames (a folder or a video) -> views placed as a rig: ``(photo_set, scene)`` as the
    ingest + SfM stages give (:func:`splatkit.pano.source.run_pano_sfm`)."""
    return _handler(RIGS, kind, "360 frames to place")(Path(path), as_rundir(out_dir).root, cfg, bus)


def _handler(table: dict, kind: SourceKind, what: str):
    """``table[kind]``; a kind without a handler there is a bug, never another kind's branch."""
    try:
        return table[SourceKind(kind)]
    except KeyError:
        raise ValueError(f"source kind {kind!r} has no {what}") from None


def import_cameras(path: Path, kind: SourceKind, out_dir: RunDir | Path, cfg: RunConfig,
                   bus: EventBus = NULL_BUS):
    """Existing cameras (COLMAP project or ``transforms.json``) -> ``out_dir/sparse/0`` + images.

    Returns ``(photo_set, scene)`` like the ingest + SfM stages. The camera files are checked
    before anything is written, and the resulting scene before it is returned (a two-line
    UserError naming the file and the field when they cannot be used). Cameras with lens
    distortion are undistorted; a model without 3D points (``transforms.json``) gets points
    triangulated from the known poses (features and matches, no pose estimation).
    """
    import pycolmap

    from .sfm.validate import validate_cameras

    path, rd = Path(path), as_rundir(out_dir)
    importer = _handler(IMPORTERS, kind, "cameras to import")
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1  # COLMAP's step-by-step INFO lines are not for users
    try:
        scene = importer(path, rd, cfg, bus)
    finally:
        pycolmap.logging.minloglevel = old
    validate_cameras(scene, path)  # what training gets: never garbage
    photos = []
    for i, n in enumerate(scene.cameras.names):
        w, h = int(scene.cameras.width[i]), int(scene.cameras.height[i])
        f = scene.image_dir / n
        photos.append(Photo(name=n, source=f, path=f, width=w, height=h, orig_width=w, orig_height=h))
    photo_set = PhotoSet(src=path, image_dir=scene.image_dir, photos=photos, source_kind=SourceKind(kind))
    bus.emit(
        Message(
            "sfm",
            f"Using the cameras of {shown(path.name)} ({kind}): {len(photos)} photos, "
            f"{scene.points.shape[0]} points; structure from motion skipped.",
        )
    )
    return photo_set, scene


__all__ = ["detect_source", "ingest_source", "import_cameras", "place_rig", "SourceKind",
           "VIDEO_EXTS"]
