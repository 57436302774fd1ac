"""SIFT features into the matching database, one camera per :class:`CameraGroup`; resuming.

An interrupted run leaves ``sfm_work/database.db``: COLMAP skips images whose features are already
there and pairs already matched. :func:`prepare_database` keeps that database only when it was
made from the same working copies, cameras and feature options (``sfm_work/database.json``); with
another matcher its matches are cleared.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..events import NULL_BUS, EventBus, Message
from ..fileio import write_text_atomic
from ..ingest import PhotoSet
from .calls import extraction_options, interruptible_call, log_level
from .cameras import CameraGroup, reader_options
from .database import image_cameras

STAGE = "sfm"


def extract(db: Path, photos: PhotoSet, groups: list[CameraGroup], cfg: SfmConfig) -> float:
    """Features of every photo (those already in the database are skipped); returns seconds.

    The photos are first entered into the database one by one in name order, each group with its
    camera, so that image ids do not depend on which extraction thread finishes first (they
    decide the order of everything after, and so the result).
    """
    t = time.time()
    if cfg.single_camera:
        calls = [(g.names, reader_options(g, cfg.camera_model)) for g in groups]
        mode = pycolmap.CameraMode.SINGLE
    else:
        calls = [([n], _reader(cfg)) for n in photos.names]
        mode = pycolmap.CameraMode.PER_IMAGE
    pycolmap.Database.open(str(db)).close()  # creates it when missing
    with log_level(2):  # not one "already there" line per photo
        for names, reader in calls:
            pycolmap.import_images(str(db), str(photos.image_dir), camera_mode=mode,
                                   image_names=names, options=reader)  # fmt: skip
        cameras = image_cameras(db)
        opts = extraction_options(cfg)
        for names, reader in calls:
            reader.existing_camera_id = cameras[names[0]]  # the camera made above
            interruptible_call(
                pycolmap.extract_features, str(db), str(photos.image_dir), image_names=names,
                camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                extraction_options=opts,
            )  # fmt: skip
    return time.time() - t


def _reader(cfg: SfmConfig) -> pycolmap.ImageReaderOptions:
    # per-image cameras: COLMAP reads the focal length from the EXIF kept in the working copies
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    return reader


def _db_keys(photos: PhotoSet, cfg: SfmConfig, groups: list[CameraGroup], method: str) -> dict:
    """What the features (``extract``) and the matches (``match``) in the database depend on."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                pycolmap.__version__,
                cfg.max_image_size,
                cfg.max_features,
                cfg.camera_model,
                cfg.single_camera,
                [(g.names, reader_options(g, cfg.camera_model).camera_params) for g in groups],
            ]
        ).encode()
    )
    for p in photos.photos:
        st = Path(p.path).stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    extract = h.hexdigest()
    match = hashlib.sha256(f"{extract}\0{method}\0{cfg.retrieval_neighbours}\0{cfg.seed}".encode())
    return {"extract": extract, "match": match.hexdigest()}


def prepare_database(
    work: Path, photos: PhotoSet, cfg: SfmConfig, groups: list[CameraGroup], method: str,
    bus: EventBus = NULL_BUS,
) -> None:  # fmt: skip
    """Keep the database of an earlier (interrupted) run where it fits, so nothing is redone."""
    db = work / "database.db"
    keys = _db_keys(photos, cfg, groups, method)
    rec_path = work / "database.json"
    try:
        old = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if old.get("extract") != keys["extract"] or not db.exists() or old.get("second_chance"):
        # (a second chance rewrote some photos' features: start from scratch)
        for p in (db, work / "database.db-wal", work / "database.db-shm"):
            p.unlink(missing_ok=True)
    else:
        d = pycolmap.Database.open(str(db))
        try:
            if old.get("match") != keys["match"]:
                d.clear_matches()
                d.clear_two_view_geometries()
            n_img, n_pairs = d.num_images(), d.num_verified_image_pairs()
        finally:
            d.close()
        if n_img:
            bus.emit(
                Message(
                    STAGE,
                    f"Continuing from the earlier run: features of {n_img} photos"
                    + (f" and matches of {n_pairs} pairs" if n_pairs else "")
                    + " are reused.",
                )
            )
    write_text_atomic(rec_path, json.dumps(keys))


def mark_second_chance(work: Path) -> None:
    """Record that the database now holds second-chance features (not the first pass's)."""
    rec_path = work / "database.json"
    rec = json.loads(rec_path.read_text(encoding="utf-8"))
    rec["second_chance"] = True
    write_text_atomic(rec_path, json.dumps(rec))


__all__ = ["extract", "prepare_database", "mark_second_chance"]
