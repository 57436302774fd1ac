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
import statistics
import time
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import write_text_atomic
from ..ingest import PhotoSet
from ..scene import Scene
from .loaders import load_scene, undistort_model

STAGE = "sfm"
#: Bump when the recipe changes, so that cached results made by older code are not reused.
RECIPE_VERSION = 1
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


@contextlib.contextmanager
def _quiet_colmap():
    """COLMAP logs every step at INFO level; keep warnings and errors only (progress is events)."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1
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
        _report(scene, len(photos), bus)
        return scene
    _check_config(cfg)
    timings: dict[str, float] = {}
    names = photos.names
    db = work / "database.db"
    for p in (db, work / "database.db-wal", work / "database.db-shm", work / "inputs.json"):
        p.unlink(missing_ok=True)

    # 1. features ----------------------------------------------------------------------------
    t = time.time()
    bus.emit(StageProgress(STAGE, 0, 3, detail="finding features"))
    reader, camera_mode = _reader_options(photos, cfg, bus)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = cfg.max_image_size
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_features
    pycolmap.extract_features(
        str(db),
        str(photos.image_dir),
        image_names=names,
        camera_mode=camera_mode,
        reader_options=reader,
        extraction_options=extraction,
    )
    timings["extract"] = time.time() - t

    # 2. matching ----------------------------------------------------------------------------
    t = time.time()
    method = _matcher(photos, cfg, bus)
    bus.emit(StageProgress(STAGE, 1, 3, detail=f"matching ({method})"))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    if method == "exhaustive":
        pycolmap.match_exhaustive(str(db), matching_options=matching)
    elif method == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pairing.quadratic_overlap = True
        pairing.loop_detection = False  # needs a vocabulary tree (a download)
        pycolmap.match_sequential(str(db), matching_options=matching, pairing_options=pairing)
    else:
        pairing = pycolmap.SpatialPairingOptions()
        pairing.ignore_z = True
        pairing.max_num_neighbors = 50
        pycolmap.match_spatial(str(db), matching_options=matching, pairing_options=pairing)
    timings["match"] = time.time() - t

    # 3. mapping -----------------------------------------------------------------------------
    t = time.time()
    bus.emit(StageProgress(STAGE, 2, 3, detail="placing cameras"))
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
    if not maps:
        raise UserError(
            f"SfM could not place any of the {len(names)} photos.",
            OVERLAP_HINT[0].upper() + OVERLAP_HINT[1:] + ".",
        )
    sizes = sorted(((rec.num_reg_images(), idx) for idx, rec in maps.items()), reverse=True)
    best_idx = sizes[0][1]
    best = maps[best_idx]
    if len(maps) > 1:
        bus.emit(
            Message(
                STAGE,
                f"The photos fell apart into {len(maps)} separate groups of "
                + ", ".join(str(n) for n, _ in sizes)
                + " photos; the largest was kept. Take more photos between the groups to "
                "connect them.",
                level="warning",
            )
        )
    registered = {best.images[i].name for i in best.reg_image_ids()}
    unregistered = [n for n in names if n not in registered]
    if len(registered) < MIN_REGISTERED:
        raise UserError(
            f"SfM could place only {len(registered)} of {len(names)} photos.",
            OVERLAP_HINT[0].upper() + OVERLAP_HINT[1:] + ".",
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
        "models": [n for n, _ in sizes],
        "matcher": method,
        "mean_reprojection_error_px": reproj,
        "num_points": best.num_points3D(),
        "seconds": timings,
    }
    write_text_atomic(work / "inputs.json", json.dumps(record, indent=1))
    scene = load_scene(out_dir, unregistered=unregistered)
    _report(scene, len(names), bus)
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
    mapper = pycolmap.IncrementalPipelineOptions()
    mapper.num_threads = cfg.num_threads
    mapper.random_seed = 0
    mapper.ba_refine_principal_point = refine_pp
    total = len(photos)
    placed = [0]

    def next_image() -> None:
        placed[0] += 1
        bus.emit(StageProgress(STAGE, min(placed[0], total), total, detail="placing cameras"))

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    return pycolmap.incremental_mapping(
        str(db),
        str(photos.image_dir),
        str(model_dir),
        options=mapper,
        next_image_callback=next_image,
    )


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
        m = "exhaustive" if len(photos) <= 100 else "sequential"
    return m


def _report(scene: Scene, total: int, bus: EventBus) -> None:
    n = len(scene.cameras)
    bus.emit(Message(STAGE, f"Placed {n} of {total} photos."))
    if scene.unregistered:
        bus.emit(
            Message(
                STAGE,
                "Could not place: "
                + ", ".join(scene.unregistered)
                + f". They are left out; {OVERLAP_HINT}.",
                level="warning",
            )
        )
