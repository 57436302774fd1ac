"""Structure from motion with pycolmap: SIFT, matching, incremental mapping, undistortion.

Output layout of :func:`run_sfm` in ``out_dir``:

* ``images/``: undistorted images (PINHOLE), named as the working copies;
* ``sparse/0/``: the undistorted COLMAP model (binary), read by :func:`load_scene`;
* ``sfm_work/``: ``database.db``, the distorted model (``sparse/0``) and ``inputs.json``, the
  record of the inputs that lets a second run with the same photos and options reuse the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import signal
import statistics
import threading
import time
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import write_text_atomic
from ..ingest import PhotoSet
from ..scene import Scene
from ..signals import STOP_SIGNALS
from .diagnose import clusters, explain, failure, pair_inliers
from .loaders import load_scene, undistort_model

STAGE = "sfm"
#: Bump when the recipe changes, so that cached results made by older code are not reused.
RECIPE_VERSION = 2
MIN_REGISTERED = 3
CAMERA_MODELS = ("SIMPLE_RADIAL", "OPENCV")
REUSED_TEXT = "Reusing the camera poses computed before for the same photos and settings."
OVERLAP_HINT = (
    "photos need to overlap by about two thirds: walk around the object taking a photo every "
    "few steps"
)


def run_sfm(photos: PhotoSet, out_dir: Path, cfg: SfmConfig, bus: EventBus = NULL_BUS) -> Scene:
    """Recover cameras and sparse points from ``photos`` and undistort the images.

    Writes ``out_dir/images`` and ``out_dir/sparse/0`` (see the module doc) and returns the Scene
    (registered cameras sorted by name, the unregistered names in ``Scene.unregistered``).

    Raises:
        UserError: fewer than 3 photos could be placed.
    """
    with _quiet_colmap():
        return _run_sfm(photos, Path(out_dir), cfg, bus)


def _quiet_colmap():
    """COLMAP logs every step at INFO level; keep warnings and errors only (progress is events)."""
    return _log_level(1)


@contextlib.contextmanager
def _log_level(level: int):
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = level
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _run_sfm(photos: PhotoSet, out_dir: Path, cfg: SfmConfig, bus: EventBus) -> Scene:
    work = out_dir / "sfm_work"
    work.mkdir(parents=True, exist_ok=True)
    key = inputs_key(photos, cfg)
    cached = _cached(out_dir, key)
    if cached is not None:
        scene = load_scene(out_dir, unregistered=cached.get("unregistered", []))
        bus.emit(Message(STAGE, REUSED_TEXT))
        _report(scene, len(photos), bus, cached.get("unregistered_reasons", {}))
        return scene
    _check_config(cfg)
    timings: dict[str, float] = {}
    names = photos.names
    db = work / "database.db"
    (work / "inputs.json").unlink(missing_ok=True)
    reader, camera_mode = _reader_options(photos, cfg, bus)
    method = _matcher(photos, cfg, bus)
    _prepare_database(work, photos, cfg, reader, camera_mode, method, bus)

    # 1. features (images already in the database, from an interrupted run, are skipped) --------
    t = time.time()
    bus.emit(StageProgress(STAGE, 0, 3, detail="finding features"))
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = cfg.max_image_size
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_features
    with _log_level(2):  # not one "already extracted" line per photo
        _interruptible_call(
            pycolmap.extract_features,
            str(db),
            str(photos.image_dir),
            image_names=names,
            camera_mode=camera_mode,
            reader_options=reader,
            extraction_options=extraction,
        )
    timings["extract"] = time.time() - t

    # 2. matching (pairs already in the database are skipped by COLMAP) ----------------------
    t = time.time()
    bus.emit(StageProgress(STAGE, 1, 3, detail=f"matching ({method})"))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    if method == "exhaustive":
        pairing = pycolmap.ExhaustivePairingOptions()
        # blocks of 10 x 10 photos (default 50 x 50): Ctrl-C is honoured between blocks
        pairing.block_size = 10
        _interruptible_call(
            pycolmap.match_exhaustive, str(db), matching_options=matching, pairing_options=pairing
        )
    elif method == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pairing.quadratic_overlap = True
        pairing.loop_detection = False  # needs a vocabulary tree (a download)
        _interruptible_call(
            pycolmap.match_sequential, str(db), matching_options=matching, pairing_options=pairing
        )
    else:
        pairing = pycolmap.SpatialPairingOptions()
        pairing.ignore_z = True
        pairing.max_num_neighbors = 50
        _interruptible_call(
            pycolmap.match_spatial, str(db), matching_options=matching, pairing_options=pairing
        )
    timings["match"] = time.time() - t

    # 3. mapping -----------------------------------------------------------------------------
    t = time.time()
    bus.emit(StageProgress(STAGE, 2, 3, detail=f"placing cameras ({cfg.mapper})"))
    refine_pp = cfg.refine_principal_point and camera_mode == pycolmap.CameraMode.SINGLE
    maps = _map(db, photos, work / "sparse", cfg, refine_pp, bus)
    if refine_pp and maps and _principal_point_drifted(maps):
        bus.emit(
            Message(
                STAGE,
                "The lens centre drifted while refining it: placing the cameras "
                "again with it fixed at the image centre.",
                level="warning",
            )
        )
        maps = _map(db, photos, work / "sparse", cfg, False, bus)
    timings["map"] = time.time() - t
    inliers = pair_inliers(db)
    models = sorted(
        ((sorted(rec.images[i].name for i in rec.reg_image_ids()), rec) for rec in maps.values()),
        key=lambda m: (-len(m[0]), m[0]),
    )
    groups = [g for g, _ in models if g]
    if not groups:
        raise failure(names, 0, [], inliers, photos.flags)
    placed = {n for g in groups for n in g}
    # photos left out that match each other: another scene mixed in (COLMAP drops small models)
    groups += clusters([n for n in names if n not in placed], inliers)
    if (
        len(groups[0]) < MIN_REGISTERED
        or (len(groups) > 1 and max(len(g) for g in groups[1:]) >= len(groups[0]))
    ):
        raise failure(names, len(groups[0]), groups, inliers, photos.flags)
    best = models[0][1]
    registered = set(groups[0])
    unregistered = [n for n in names if n not in registered]
    reasons = explain(unregistered, registered, groups[1:], inliers, photos.flags)
    if len(groups) > 1:
        bus.emit(
            Message(
                STAGE,
                f"The photos fell apart into {len(groups)} separate groups of "
                + ", ".join(str(len(g)) for g in groups)
                + " photos; the largest was kept. Left out: "
                + "; ".join(", ".join(g) for g in groups[1:])
                + ". Photos of another place or object? Otherwise take more photos between the "
                "groups to connect them.",
                level="warning",
            )
        )
    final_model = work / "model"
    if final_model.exists():
        shutil.rmtree(final_model)
    final_model.mkdir()
    best.write_binary(str(final_model))
    reproj = best.compute_mean_reprojection_error()

    # 4. undistortion ------------------------------------------------------------------------
    t = time.time()
    undistort_model(
        final_model,
        photos.image_dir,
        out_dir,
        image_names=sorted(registered),
        num_threads=cfg.num_threads,
        bus=bus,
    )
    timings["undistort"] = time.time() - t

    record = {
        "key": key,
        "registered": len(registered),
        "total": len(names),
        "unregistered": unregistered,
        "unregistered_reasons": reasons,
        "models": [len(g) for g in groups],
        "matcher": method,
        "mapper": cfg.mapper,
        "mean_reprojection_error_px": reproj,
        "num_points": best.num_points3D(),
        "seconds": timings,
    }
    write_text_atomic(work / "inputs.json", json.dumps(record, indent=1))
    scene = load_scene(out_dir, unregistered=unregistered)
    _report(scene, len(names), bus, reasons)
    bus.emit(
        Message(
            STAGE,
            f"{best.num_points3D()} points, mean reprojection error {reproj:.2f} px; "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            + ".",
        )
    )
    return scene


def _map(
    db: Path, photos: PhotoSet, model_dir: Path, cfg: SfmConfig, refine_pp: bool, bus: EventBus
) -> dict:
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    if cfg.mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = cfg.num_threads
        opts.random_seed = 0
        opts.mapper.bundle_adjustment.refine_principal_point = refine_pp
        opts.mapper.global_positioning.use_gpu = False
        opts.mapper.bundle_adjustment.ceres.use_gpu = False
        # no cancellation token here: Ctrl-C takes effect when it returns; its focal-prior
        # warning is not for our users (the shared camera's focal length is refined)
        with _log_level(2):
            return _interruptible_call(
                pycolmap.global_mapping,
                str(db),
                str(photos.image_dir),
                str(model_dir),
                options=opts,
                token=False,
            )
    mapper = pycolmap.IncrementalPipelineOptions()
    mapper.num_threads = cfg.num_threads
    mapper.random_seed = 0
    mapper.ba_refine_principal_point = refine_pp
    total = len(photos)
    placed = [0]

    def next_image() -> None:
        placed[0] += 1
        bus.emit(StageProgress(STAGE, min(placed[0], total), total, detail="placing cameras"))

    return _interruptible_call(
        pycolmap.incremental_mapping,
        str(db),
        str(photos.image_dir),
        str(model_dir),
        options=mapper,
        next_image_callback=next_image,
    )


def _interruptible_call(fn, *args, token: bool = True, **kw):
    """Run a long pycolmap call so that Ctrl-C stops it cleanly, then raise KeyboardInterrupt.

    Python runs signal handlers in the main thread between bytecodes, never inside a C++ call.
    So the call runs in a worker thread while the main thread waits; Ctrl-C cancels the call's
    token (COLMAP stops between images or image pairs; what is already in the database stays).
    Calls without a token (global mapping) finish first. Outside the main thread (a server's job
    thread) the call simply runs.
    """
    tok = pycolmap.CancellationToken() if token else None
    if tok is not None:
        kw["cancellation_token"] = tok
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kw)
    hit = [False]
    box: dict = {}

    def on_sigint(signum, frame):
        hit[0] = True
        if tok is not None:
            tok.cancel()

    def work():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box["error"] = e

    old = {sig: signal.signal(sig, on_sigint) for sig in STOP_SIGNALS}  # Ctrl-C and SIGTERM
    try:
        th = threading.Thread(target=work, name="pycolmap", daemon=True)
        th.start()
        while th.is_alive():
            th.join(0.2)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if hit[0]:
        raise KeyboardInterrupt
    if "error" in box:
        raise box["error"]
    return box["value"]


def _db_keys(photos: PhotoSet, cfg: SfmConfig, reader, camera_mode, method: str) -> dict:
    """What the features (``extract``) and the matches (``match``) in the database depend on."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                pycolmap.__version__,
                cfg.max_image_size,
                cfg.max_features,
                cfg.camera_model,
                str(camera_mode),
                reader.camera_params,
            ]
        ).encode()
    )
    for p in photos.photos:
        st = Path(p.path).stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    extract = h.hexdigest()
    match = hashlib.sha256(f"{extract}\0{method}".encode()).hexdigest()
    return {"extract": extract, "match": match}


def _prepare_database(
    work: Path, photos: PhotoSet, cfg: SfmConfig, reader, camera_mode, method: str, bus: EventBus
) -> None:
    """Keep the database of an earlier (interrupted) run where it fits, so nothing is redone.

    COLMAP skips images whose features are already in the database and image pairs already
    matched. The database is kept only for the same working copies and feature options
    (``sfm_work/database.json``); with another matcher its matches are cleared.
    """
    db = work / "database.db"
    keys = _db_keys(photos, cfg, reader, camera_mode, method)
    rec_path = work / "database.json"
    try:
        old = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if old.get("extract") != keys["extract"] or not db.exists():
        for p in (db, work / "database.db-wal", work / "database.db-shm"):
            p.unlink(missing_ok=True)
    else:
        d = pycolmap.Database.open(str(db))
        try:
            if old.get("match") != keys["match"]:
                d.clear_matches()
                d.clear_two_view_geometries()
            n_img, n_pairs = d.num_images(), d.num_verified_image_pairs()
            cams = sorted(c.camera_id for c in d.read_all_cameras())
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
        if cams and camera_mode == pycolmap.CameraMode.SINGLE:
            reader.existing_camera_id = cams[0]  # the photos still to do share that camera
    write_text_atomic(rec_path, json.dumps(keys))


def _principal_point_drifted(maps: dict, tol: float = 0.1) -> bool:
    """Whether a refined principal point moved more than ``tol`` of the image size off-centre."""
    for rec in maps.values():
        for cam in rec.cameras.values():
            dx = abs(cam.principal_point_x - cam.width / 2) / cam.width
            dy = abs(cam.principal_point_y - cam.height / 2) / cam.height
            if dx > tol or dy > tol:
                return True
    return False


def read_sfm_record(out_dir: Path) -> dict:
    """What :func:`run_sfm` recorded in ``out_dir/sfm_work/inputs.json``.

    Keys: registered, total, unregistered, models, matcher, mean_reprojection_error_px,
    num_points, seconds (per step).
    """
    return json.loads((Path(out_dir) / "sfm_work" / "inputs.json").read_text(encoding="utf-8"))


def inputs_key(photos: PhotoSet, cfg: SfmConfig) -> str:
    """Hash of what SfM depends on: working-copy names, sizes, mtimes, and the options."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "recipe": RECIPE_VERSION,
                "pycolmap": pycolmap.__version__,
                "cfg": dataclasses.asdict(cfg),
            },
            sort_keys=True,
        ).encode()
    )
    for p in photos.photos:
        st = Path(p.path).stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\0{p.focal_35mm}\0{p.gps}\n".encode())
    return h.hexdigest()


def _cached(out_dir: Path, key: str) -> dict | None:
    try:
        rec = json.loads((out_dir / "sfm_work" / "inputs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("key") != key:
        return None
    if not (out_dir / "sparse" / "0" / "cameras.bin").exists() or not (out_dir / "images").is_dir():
        return None
    return rec


def _check_config(cfg: SfmConfig) -> None:
    model = cfg.camera_model
    if model not in CAMERA_MODELS:
        raise UserError(
            f"Unknown camera model {model!r}.", f"Use one of {', '.join(CAMERA_MODELS)}."
        )
    if cfg.matcher not in ("auto", "exhaustive", "sequential", "spatial"):
        raise UserError(
            f"Unknown matcher {cfg.matcher!r}.", "Use auto, exhaustive, sequential or spatial."
        )
    if cfg.mapper not in ("incremental", "global"):
        raise UserError(f"Unknown mapper {cfg.mapper!r}.", "Use incremental or global.")


def _reader_options(
    photos: PhotoSet, cfg: SfmConfig, bus: EventBus
) -> tuple[pycolmap.ImageReaderOptions, pycolmap.CameraMode]:
    """Camera model, sharing, and the EXIF focal-length prior."""
    reader = pycolmap.ImageReaderOptions()
    model = cfg.camera_model
    reader.camera_model = model
    sizes = {(p.width, p.height) for p in photos.photos}
    mode = pycolmap.CameraMode.PER_IMAGE
    if cfg.single_camera:
        if len(sizes) == 1:
            mode = pycolmap.CameraMode.SINGLE
        else:
            bus.emit(
                Message(
                    STAGE,
                    f"The photos have {len(sizes)} different sizes, so each gets its own camera.",
                    level="warning",
                )
            )
    focals = [p.focal_px for p in photos.photos if p.focal_px]
    if mode == pycolmap.CameraMode.SINGLE and focals:
        # one shared camera: seed it with the median EXIF focal length (a prior, refined by BA)
        (w, h), f = next(iter(sizes)), statistics.median(focals)
        cx, cy = w / 2, h / 2
        if model == "SIMPLE_RADIAL":
            reader.camera_params = f"{f:.6g},{cx:.6g},{cy:.6g},0"
        else:
            reader.camera_params = f"{f:.6g},{f:.6g},{cx:.6g},{cy:.6g},0,0,0,0"
        bus.emit(Message(STAGE, f"Focal length from EXIF: {f:.0f} px (a starting guess)."))
    # per-image cameras: COLMAP reads the focal length from the EXIF kept in the working copies
    return reader, mode


def _matcher(photos: PhotoSet, cfg: SfmConfig, bus: EventBus) -> str:
    m = cfg.matcher
    if m == "spatial" and not photos.has_gps:
        m = "auto"
        bus.emit(
            Message(
                STAGE,
                "Spatial matching needs GPS positions in the photos' EXIF and "
                "these have none: using the automatic choice instead.",
                level="warning",
            )
        )
    if m == "auto":
        if photos.source_kind == "video":
            m = "sequential"  # frames in order: neighbours overlap
        else:
            m = "exhaustive" if len(photos) <= 100 else "sequential"
    return m


def _report(scene: Scene, total: int, bus: EventBus, reasons: dict[str, str]) -> None:
    n = len(scene.cameras)
    bus.emit(Message(STAGE, f"Placed {n} of {total} photos."))
    for name in scene.unregistered:
        bus.emit(
            Message(
                STAGE,
                f"Could not place {name}: {reasons.get(name, OVERLAP_HINT)}. It is left out.",
                level="warning",
            )
        )
