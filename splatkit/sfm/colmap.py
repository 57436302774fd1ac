"""Structure from motion with pycolmap: features, pairs, mapping, a second chance, undistortion.

The stages, each in its own module with its typed result: cameras by EXIF (:mod:`.cameras`),
features (:mod:`.features`), pair selection and matching (:mod:`.pairs`), mapping
(:mod:`.mapping`), the second chance for photos left out (:mod:`.register`).

Output layout of :func:`run_sfm` in ``out_dir``:

* ``images/``: undistorted images (PINHOLE), named as the working copies;
* ``sparse/0/``: the undistorted COLMAP model (binary), read by :func:`load_scene`;
* ``sfm_work/``: ``database.db``, the distorted model (``model``) and ``inputs.json``, the
  record of the inputs that lets a second run with the same photos and options reuse the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..errors import UserError
from ..events import NULL_BUS, EventBus, Message, StageProgress
from ..fileio import write_text_atomic
from ..ingest import PhotoSet
from ..rundir import RunDir, as_rundir
from ..scene import Scene
from .calls import quiet_colmap
from .cameras import CameraGroup, camera_groups, describe
from .database import no_parallax_share
from .diagnose import NO_PARALLAX_SHARE, NO_PARALLAX_TODO, clusters, explain, failure, pair_inliers
from .features import extract, mark_second_chance, prepare_database
from .loaders import load_cached, load_scene, undistort_model
from .mapping import MAPPERS, MapStats, Model, choose_mapper, map_photos
from .pairs import METHODS, PairStats, match_photos, pair_method
from .register import SecondChance, second_chance

STAGE = "sfm"
#: Bump when the recipe changes, so that cached results made by older code are not reused.
RECIPE_VERSION = 3
MIN_REGISTERED = 3
#: Fewer 3D points than this in the kept model: SfM placed photos but measured no depth (photos
#: from one spot give a model of cameras and no points), which training cannot start from.
MIN_POINTS = 50
CAMERA_MODELS = ("SIMPLE_RADIAL", "OPENCV")
REUSED_TEXT = "Reusing the camera poses computed before for the same photos and settings."
OVERLAP_HINT = (
    "photos need to overlap by about two thirds: walk around the object taking a photo every "
    "few steps"
)


@dataclasses.dataclass
class Kept:
    """The model kept, the photos left out and why, and every group the photos fell into."""

    model: Model
    unregistered: list[str]
    reasons: dict[str, str]
    groups: list[list[str]]


def run_sfm(photos: PhotoSet, out_dir: RunDir | Path, cfg: SfmConfig, bus: EventBus = NULL_BUS) -> Scene:
    """Recover cameras and sparse points from ``photos`` and undistort the images.

    Writes ``out_dir/images`` and ``out_dir/sparse/0`` (see the module doc) and returns the Scene
    (registered cameras sorted by name, the unregistered names in ``Scene.unregistered``).

    Raises:
        UserError: fewer than 3 photos could be placed.
    """
    with quiet_colmap():
        return _run_sfm(photos, as_rundir(out_dir), cfg, bus)


def _run_sfm(photos: PhotoSet, rd: RunDir, cfg: SfmConfig, bus: EventBus) -> Scene:
    work = rd.sfm_work
    work.mkdir(parents=True, exist_ok=True)
    key = inputs_key(photos, cfg)
    cached = _cached(rd, key)
    scene = load_cached(rd, cached.get("unregistered", [])) if cached is not None else None
    if scene is not None:
        bus.emit(Message(STAGE, REUSED_TEXT))
        _report(scene, len(photos), bus, cached.get("unregistered_reasons", {}))
        return scene
    _check_config(cfg)
    for stale in (rd.sfm_inputs, rd.sfm_stage("vocab_tree.bin")):
        stale.unlink(missing_ok=True)
    stages = _place(photos, work, cfg, bus)
    _warn_no_parallax(work / "database.db", bus)
    t = time.time()
    final_model = work / "model"
    if final_model.exists():
        shutil.rmtree(final_model)
    final_model.mkdir()
    stages.kept.model.rec.write_binary(str(final_model))
    undistort_model(final_model, photos.image_dir, rd, image_names=stages.kept.model.names,
                    num_threads=cfg.num_threads, bus=bus)  # fmt: skip
    stages.timings["undistort"] = time.time() - t
    record = _record(key, photos, stages)
    write_text_atomic(rd.sfm_inputs, json.dumps(record, indent=1))
    scene = load_scene(rd, unregistered=stages.kept.unregistered)
    _report(scene, len(photos), bus, stages.kept.reasons)
    bus.emit(
        Message(
            STAGE,
            f"{record['num_points']} points, mean reprojection error "
            f"{record['mean_reprojection_error_px']:.2f} px; "
            + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in stages.timings.items())
            + ".",
        )
    )
    return scene


@dataclasses.dataclass
class Stages:
    """The typed results of the stages of one SfM run."""

    groups: list[CameraGroup]
    pairs: PairStats
    mapped: MapStats
    second: SecondChance
    kept: Kept
    timings: dict[str, float]


def _place(photos: PhotoSet, work: Path, cfg: SfmConfig, bus: EventBus) -> Stages:
    """Cameras by EXIF, features, pairs, mapping and the second chance: the model to keep."""
    db = work / "database.db"
    groups = camera_groups(photos, cfg.single_camera)
    if cfg.single_camera and len(groups) > 1:
        bus.emit(Message(STAGE, describe(groups)))
    method = pair_method(photos, cfg, bus)
    prepare_database(work, photos, cfg, groups, method, bus)
    timings: dict[str, float] = {}
    bus.emit(StageProgress(STAGE, 0, 4, detail="finding features"))
    timings["extract"] = extract(db, photos, groups, cfg)
    bus.emit(StageProgress(STAGE, 1, 4, detail=f"matching ({method})"))
    pairs = match_photos(db, work, photos.names, method, cfg)
    timings["match"] = pairs.seconds
    mapper = choose_mapper(cfg, len(photos))
    bus.emit(StageProgress(STAGE, 2, 4, detail=f"placing cameras ({mapper})"))
    refine_pp = cfg.refine_principal_point and cfg.single_camera and len(groups) == 1
    model_dir = RunDir(work.parent).sfm_stage("sparse")
    mapped = map_photos(db, photos.image_dir, model_dir, cfg, mapper, refine_pp, len(photos), bus)
    timings["map"] = mapped.seconds
    if not mapped.models:
        raise failure(photos.names, 0, [], pair_inliers(db), photos.flags, no_parallax_share(db))
    best, second = second_chance(db, photos, mapped.models[0], work, cfg, mapped.refined_principal_point, bus)
    if second.tried and cfg.second_chance:
        mark_second_chance(work)
        timings["second_chance"] = second.seconds
    kept = _keep(best, mapped.models, photos, db, bus)
    return Stages(groups, pairs, mapped, second, kept, timings)


def _keep(best: Model, first: list[Model], photos: PhotoSet, db: Path, bus: EventBus) -> Kept:
    """The largest model, or the plain error when the photos fell apart; say what was left out."""
    names = photos.names
    inliers = pair_inliers(db)
    share = no_parallax_share(db)
    placed = set(best.names)
    groups = [best.names] + [g for m in first[1:] if (g := [n for n in m.names if n not in placed])]
    in_groups = {n for g in groups for n in g}
    # photos left out that match each other: another scene mixed in (COLMAP drops small models)
    groups += clusters([n for n in names if n not in in_groups], inliers)
    if len(groups[0]) < MIN_REGISTERED or (
        len(groups) > 1 and max(len(g) for g in groups[1:]) >= len(groups[0])
    ):
        raise failure(names, len(groups[0]), groups, inliers, photos.flags, share)
    if best.rec.num_points3D() < MIN_POINTS:
        raise failure(names, len(groups[0]), groups, inliers, photos.flags, share,
                      points=best.rec.num_points3D())
    unregistered = [n for n in names if n not in placed]
    reasons = explain(unregistered, placed, groups[1:], inliers, photos.flags)
    if len(groups) > 1 and share < NO_PARALLAX_SHARE:  # else no parallax is the cause: said after
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
    return Kept(best, unregistered, reasons, groups)


def _record(key: str, photos: PhotoSet, st: Stages) -> dict:
    rec = st.kept.model.rec
    return {
        "key": key,
        "registered": len(st.kept.model.names),
        "total": len(photos),
        "unregistered": st.kept.unregistered,
        "unregistered_reasons": st.kept.reasons,
        "models": [len(g) for g in st.kept.groups],
        "first_pass_models": [len(m.names) for m in st.mapped.models],
        "cameras": [{"label": g.label, "photos": len(g.names)} for g in st.groups],
        "matcher": st.pairs.method,
        "pairs": {"matched": st.pairs.pairs, "verified": st.pairs.verified,
                  "retrieval_seconds": st.pairs.index_seconds},  # fmt: skip
        "mapper": st.mapped.mapper,
        "second_chance": {"tried": len(st.second.tried), "placed": st.second.placed,
                          "pairs": st.second.pairs},  # fmt: skip
        "mean_reprojection_error_px": rec.compute_mean_reprojection_error(),
        "num_points": rec.num_points3D(),
        "seconds": st.timings,
    }


def read_sfm_record(out_dir: Path) -> dict:
    """What :func:`run_sfm` recorded in ``out_dir/sfm_work/inputs.json``.

    Keys: registered, total, unregistered (names), unregistered_reasons, models (sizes of the
    groups the photos fell into, the kept one first), first_pass_models, cameras (label and
    photo count per camera), matcher, pairs (matched, verified, retrieval_seconds), mapper,
    second_chance (tried, placed, pairs), mean_reprojection_error_px, num_points, seconds
    (per stage: extract, match, map, second_chance, undistort).
    """
    return json.loads(as_rundir(out_dir).sfm_inputs.read_text(encoding="utf-8"))


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
        exif = (p.make, p.model, p.focal_mm, p.focal_35mm, p.gps)
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\0{exif}\n".encode())
    return h.hexdigest()


def _cached(rd: RunDir, key: str) -> dict | None:
    rec = rd.read_json_object(rd.sfm_inputs)
    if rec is None or rec.get("key") != key:
        return None
    if not (rd.sparse / "cameras.bin").exists() or not rd.images.is_dir():
        return None
    return rec


def _warn_no_parallax(db: Path, bus: EventBus) -> None:
    """Placed, but from one spot: say that depth will be guessed, and how to capture instead."""
    share = no_parallax_share(db) if db.is_file() else 0.0
    if share >= 0.9:
        bus.emit(Message(STAGE, f"{share:.0%} of the matched photo pairs show no change of viewpoint: "
                         "the photos look taken from one spot, so the scene's depth is poorly "
                         f"measured. {NO_PARALLAX_TODO}", level="warning"))


def _check_config(cfg: SfmConfig) -> None:
    for name, value, allowed in (
        ("camera model", cfg.camera_model, CAMERA_MODELS),
        ("matcher", cfg.matcher, METHODS),
        ("mapper", cfg.mapper, MAPPERS),
    ):
        if value not in allowed:
            raise UserError(f"Unknown {name} {value!r}.", f"Use one of {', '.join(allowed)}.")
    if cfg.retrieval_neighbours < 1:
        raise UserError(
            f"retrieval_neighbours must be at least 1, got {cfg.retrieval_neighbours}.",
            "Use e.g. 10.",
        )


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
