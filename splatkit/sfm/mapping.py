"""Placing the cameras: COLMAP's incremental mapper or the global one (GLOMAP), seeded.

``SfmConfig.mapper`` ``auto`` picks by the number of photos (:data:`GLOBAL_MIN`, measured on the
shared sets: docs/benchmarks.md). The result is a list of :class:`Model` (COLMAP may split the
photos into several models when they do not connect), largest first.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pycolmap

from ..config import SfmConfig
from ..events import NULL_BUS, EventBus, Message, StageProgress
from .calls import interruptible_call, log_level

STAGE = "sfm"
MAPPERS = ("auto", "incremental", "global")
#: ``auto`` uses the global mapper from this many photos on (docs/benchmarks.md)
GLOBAL_MIN = 10**9


@dataclass
class Model:
    """One reconstruction: the names of its placed photos (sorted) and COLMAP's model."""

    names: list[str]
    rec: pycolmap.Reconstruction


@dataclass
class MapStats:
    mapper: str
    seconds: float
    refined_principal_point: bool
    models: list[Model] = field(default_factory=list)


def choose_mapper(cfg: SfmConfig, num_photos: int) -> str:
    if cfg.mapper != "auto":
        return cfg.mapper
    return "global" if num_photos >= GLOBAL_MIN else "incremental"


def map_photos(
    db: Path, image_dir: Path, model_dir: Path, cfg: SfmConfig, mapper: str, refine_pp: bool,
    total: int, bus: EventBus = NULL_BUS,
) -> MapStats:  # fmt: skip
    """Place the cameras; retried with the lens centre fixed when refining it drifts."""
    t = time.time()
    models = _models(_run_mapper(db, image_dir, model_dir, cfg, mapper, refine_pp, total, bus))
    if refine_pp and models and _principal_point_drifted(models):
        bus.emit(
            Message(
                STAGE,
                "The lens centre drifted while refining it: placing the cameras "
                "again with it fixed at the image centre.",
                level="warning",
            )
        )
        refine_pp = False
        models = _models(_run_mapper(db, image_dir, model_dir, cfg, mapper, False, total, bus))
    return MapStats(mapper, time.time() - t, refine_pp, models)


def incremental_options(cfg: SfmConfig, refine_pp: bool) -> pycolmap.IncrementalPipelineOptions:
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = cfg.num_threads
    opts.random_seed = cfg.seed
    opts.ba_refine_principal_point = refine_pp
    return opts


def continue_mapping(
    db: Path, image_dir: Path, model_dir: Path, out_dir: Path, cfg: SfmConfig, refine_pp: bool,
    total: int, bus: EventBus = NULL_BUS,
) -> list[Model]:  # fmt: skip
    """Register the photos not yet in the model at ``model_dir`` into it (incremental mapper)."""
    return _models(
        _incremental(db, image_dir, out_dir, incremental_options(cfg, refine_pp), total, bus,
                     input_path=model_dir)
    )  # fmt: skip


def _run_mapper(
    db: Path, image_dir: Path, model_dir: Path, cfg: SfmConfig, mapper: str, refine_pp: bool,
    total: int, bus: EventBus,
) -> dict:  # fmt: skip
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    if mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = cfg.num_threads
        opts.random_seed = cfg.seed
        opts.mapper.bundle_adjustment.refine_principal_point = refine_pp
        opts.mapper.global_positioning.use_gpu = False
        opts.mapper.bundle_adjustment.ceres.use_gpu = False
        # no cancellation token here: Ctrl-C takes effect when it returns; its focal-prior
        # warning is not for our users (the shared camera's focal length is refined)
        with log_level(2):
            return interruptible_call(
                pycolmap.global_mapping, str(db), str(image_dir), str(model_dir), options=opts,
                token=False,
            )  # fmt: skip
    return _incremental(db, image_dir, model_dir, incremental_options(cfg, refine_pp), total, bus)


def _incremental(db, image_dir, out_dir, opts, total: int, bus: EventBus, input_path=None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    placed = [0]

    def next_image() -> None:
        placed[0] += 1
        bus.emit(StageProgress(STAGE, min(placed[0], total), total, detail="placing cameras"))

    kw = {"input_path": str(input_path)} if input_path else {}
    return interruptible_call(
        pycolmap.incremental_mapping, str(db), str(image_dir), str(out_dir), options=opts,
        next_image_callback=next_image, **kw,
    )  # fmt: skip


def _models(maps: dict) -> list[Model]:
    out = [Model(sorted(rec.images[i].name for i in rec.reg_image_ids()), rec) for rec in maps.values()]
    out = [m for m in out if m.names]
    return sorted(out, key=lambda m: (-len(m.names), m.names))


def _principal_point_drifted(models: list[Model], tol: float = 0.1) -> bool:
    """Whether a refined principal point moved more than ``tol`` of the image size off-centre."""
    for m in models:
        for cam in m.rec.cameras.values():
            dx = abs(cam.principal_point_x - cam.width / 2) / cam.width
            dy = abs(cam.principal_point_y - cam.height / 2) / cam.height
            if dx > tol or dy > tol:
                return True
    return False


__all__ = ["Model", "MapStats", "choose_mapper", "map_photos", "continue_mapping", "MAPPERS"]
