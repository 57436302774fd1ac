"""Chains the stages: ingest -> sfm -> train -> evaluate -> scene.ply -> cleanup -> metrics -> report.

No stage logic lives here and no folder rules: :func:`splatkit.job.run_job` opens, locks and
plans the run folder (:mod:`splatkit.rundir`, :mod:`splatkit.run`) and then calls
:func:`run_train` or :func:`run_sfm_only`. Here: the order, caching between stages, timings and
the final ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import RunConfig, tiered
from .events import EventBus, Message, StageFinished, StageStarted
from .fileio import write_text_atomic
from .metrics import CleanupSummary, PhotoCounts, Resolution, RunMetrics, SkippedPhoto, SkySummary
from .render import Renderer, select_renderer
from .run import check_model
from .rundir import RunDir, as_rundir, suggest_out_dir

if TYPE_CHECKING:
    from .evaluate import Evaluation


@dataclass
class RunResult:
    out_dir: Path
    metrics: RunMetrics | None = None
    """What ``metrics.json`` holds (a finished training run)."""
    interrupted: bool = False
    scene: object = None


def default_out_dir(photos: Path) -> Path:
    """``<photos-folder-name>-splatkit/`` beside the photos folder (or video file)."""
    return suggest_out_dir(photos)


def resolve_device(device: str) -> tuple[str, str]:
    """``(device, backend)`` for a requested device: auto picks CUDA when usable."""
    r = select_renderer(device)
    return r.device, r.name


class _Timer:
    def __init__(self, bus: EventBus, stage: str, detail: str = ""):
        self.bus, self.stage, self.detail = bus, stage, detail
        self.seconds = 0.0
        self.summary: dict = {}

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.bus.emit(StageStarted(stage=self.stage, detail=self.detail))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.seconds = time.perf_counter() - self.t0
        if exc_type is None:
            self.bus.emit(StageFinished(stage=self.stage, seconds=self.seconds, summary=self.summary))
        return False


def versions() -> dict:
    import numpy
    import torch

    out = {
        "splatkit": __import__("splatkit").__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for mod in ("pycolmap", "gsplat", "numba", "plyfile"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is just not listed
            pass
    return out


def run_sfm_stage(photos: Path, out_dir: Path | RunDir, cfg: RunConfig, bus: EventBus, timings: dict):
    """Ingest + SfM; returns ``(photo_set, scene)``.

    ``photos`` may also be a video, a COLMAP project or a transforms.json (see ``sources.py``).
    """
    from .sfm import run_sfm
    from .sources import detect_source, import_cameras, ingest_source, place_rig

    rd = as_rundir(out_dir)
    kind = detect_source(Path(photos))
    if kind.has_cameras:  # cameras given: SfM skipped
        with _Timer(bus, "sfm", f"existing cameras ({kind})") as t:
            photo_set, scene = import_cameras(Path(photos), kind, rd, cfg, bus)
            t.summary = _sfm_summary(photo_set, scene)
        timings["sfm"] = t.seconds
        return photo_set, scene
    if kind.rig:  # 360 frames: cut into views, placed as a rig
        with _Timer(bus, "sfm", f"360 frames ({kind})") as t:
            photo_set, scene = place_rig(Path(photos), kind, rd, cfg, bus)
            t.summary = _sfm_summary(photo_set, scene)
        timings["sfm"] = t.seconds
        return photo_set, scene
    with _Timer(bus, "ingest", str(photos)) as t:
        photo_set = ingest_source(Path(photos), kind, rd, cfg.ingest, bus)
        t.summary = {"used": len(photo_set.images), "skipped": len(photo_set.skipped)}
    timings["ingest"] = t.seconds
    with _Timer(bus, "sfm", f"{len(photo_set.images)} photos") as t:
        scene = run_sfm(photo_set, rd, cfg.sfm, bus)
        t.summary = _sfm_summary(photo_set, scene)
    timings["sfm"] = t.seconds
    return photo_set, scene


def _sfm_summary(photo_set, scene) -> dict:
    return {"registered": len(scene.cameras), "total": len(photo_set.images),
            "points": int(scene.points.shape[0])}


def run_sfm_only(photos: Path, rd: RunDir, cfg: RunConfig, bus: EventBus) -> RunResult:
    """``splatkit sfm``: ingest and SfM into ``rd`` (the folder ``splatkit train`` reuses)."""
    _, scene = run_sfm_stage(photos, rd, cfg, bus, {})
    return RunResult(out_dir=rd.root, scene=scene)


def run_train(
    photos: Path,
    out_dir: Path | RunDir,
    cfg: RunConfig,
    bus: EventBus,
    resume: bool = False,
    stop_flag=None,
    run_id: str = "",
    renderer: Renderer | None = None,
    explicit: set[str] | frozenset = frozenset(),
) -> RunResult:
    """The stages of ``splatkit train`` (the folder is opened by :func:`splatkit.job.run_job`).
    ``explicit``: the settings given explicitly (flattened keys), which the preset's photo tiers
    (:data:`splatkit.config.PHOTO_TIERS`) leave alone."""

    rd = as_rundir(out_dir)
    renderer = renderer or select_renderer(cfg.device)
    warming = None
    if renderer.name == "cpu":  # compile the CPU kernels while SfM runs (fresh installs)
        from .train import warmup

        warming = warmup.start()
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    photo_set, scene = run_sfm_stage(photos, rd, cfg, bus, timings)
    check_model(rd, resume)  # a checkpoint continues only on the cameras it was trained on
    if warming is not None:  # never two threads in the kernels at once
        warming.join()
    cfg = _apply_tier(rd, cfg, len(scene.train_idx), set(explicit), bus)
    with _Timer(bus, "train", f"{cfg.train.steps} steps on {renderer.device}") as t:
        result = _train(scene, cfg, rd, renderer, bus, resume, stop_flag, run_id, frozenset(explicit))
        t.summary = {"steps": result.steps_done, "splats": len(result.splats)}
    timings["train"] = t.seconds
    if result.interrupted:
        return RunResult(out_dir=rd.root, interrupted=True)
    ev = _evaluate_and_write(rd, result, scene, cfg, renderer, bus, timings)
    cleaned = _cleanup(rd, result, scene, cfg, bus, timings)
    timings["total"] = time.perf_counter() - t_all
    metrics = _metrics(ev, result, scene, photo_set, cfg, renderer, timings, cleaned)
    write_text_atomic(rd.metrics, json.dumps(metrics.to_json(), indent=2))
    from .report import build_report

    with _Timer(bus, "report", rd.report.name):
        build_report(rd.root)
    bus.emit(Message(stage="done", text=f"held-out PSNR {ev.psnr:.2f} dB, SSIM {ev.ssim:.3f}"))
    return RunResult(out_dir=rd.root, metrics=metrics, scene=scene)


def _train(scene, cfg: RunConfig, rd: RunDir, renderer: Renderer, bus, resume: bool, stop_flag,
           run_id: str, explicit: frozenset[str]):
    """One training run, or a large capture in blocks (:mod:`splatkit.blocks`)."""
    from .blocks.driver import blocks_for, train_in_blocks
    from .train import train

    n = blocks_for(cfg.blocks, len(scene.cameras))
    if n > 1:
        dispatch = None
        if cfg.blocks.ray_address:
            from .blocks.ray_dispatch import ray_dispatcher

            dispatch = ray_dispatcher(cfg.blocks, renderer.device, run_id, explicit)
        return train_in_blocks(scene, cfg, rd, renderer, n, bus, stop_flag, run_id, explicit, dispatch)
    return train(scene, cfg.train, rd, renderer, bus=bus, resume=resume, stop_flag=stop_flag,
                 run_id=run_id)


def _apply_tier(rd: RunDir, cfg: RunConfig, train_photos: int, explicit: set[str], bus) -> RunConfig:
    """The preset's settings for this many training photos, saved in ``config.json`` (so that a
    resumed run keeps them) and said."""
    cfg, changed = tiered(cfg, train_photos, explicit)
    if changed:
        write_text_atomic(rd.config, cfg.to_json())
        said = ", ".join(f"{k.replace('_', ' ')} {v:{',' if isinstance(v, int) else 'g'}}"
                         for k, v in changed.items())
        bus.emit(Message(stage="train", text=f"{train_photos} training photos: the {cfg.preset} "
                         f"preset uses {said} for this many photos."))  # fmt: skip
    return cfg


def _evaluate_and_write(rd: RunDir, result, scene, cfg: RunConfig, renderer: Renderer, bus, timings):
    from .evaluate import evaluate, write_previews
    from .export.ply import write_ply

    with _Timer(bus, "evaluate", f"{len(scene.test_idx)} held-out photos") as t:
        ev = evaluate(result.splats, scene, cfg.train.resolution, renderer.name, renderer.device,
                      sky=result.sky)
        write_previews(ev, rd.previews)
        t.summary = {"psnr": ev.psnr, "ssim": ev.ssim}
    timings["evaluate"] = t.seconds
    with _Timer(bus, "export", rd.scene_ply.name) as t:
        write_ply(result.splats.detach().to("cpu"), rd.scene_ply)
        if result.sky is not None:
            from .sky import save as save_sky

            save_sky(result.sky, rd.sky, rd.sky_png)
    timings["export"] = t.seconds
    return ev


def _cleanup(rd: RunDir, result, scene, cfg: RunConfig, bus, timings) -> CleanupSummary | None:
    """Cleanup (:mod:`splatkit.cleanup`): ``scene_clean.ply``, the before/after previews, and
    the per-rule counts for metrics.json (None with ``--cleanup none``: a stale cleaned scene
    from an earlier run is removed so that export and view take scene.ply)."""
    if cfg.cleanup.mode == "none":
        rd.scene_clean_ply.unlink(missing_ok=True)
        return None
    from .cleanup import run_cleanup

    def say(text: str) -> None:
        bus.emit(Message(stage="cleanup", text=text))

    with _Timer(bus, "cleanup", "splats no training view needs") as t:
        res = run_cleanup(rd, result.splats, scene, cfg.train.resolution, cfg.cleanup, say,
                          getattr(result, "sky", None))
        t.summary = {"removed": res.removed, "removed_total": res.num_removed,
                     "psnr_before": res.psnr_before, "psnr_after": res.psnr_after}  # fmt: skip
    timings["cleanup"] = t.seconds
    say(res.summary())
    return res.record()


def _metrics(ev: Evaluation, result, scene, photo_set, cfg: RunConfig, renderer: Renderer, timings,
             cleaned: CleanupSummary | None) -> RunMetrics:
    from .sky import SEEN_MIN

    sky = result.sky
    return RunMetrics(
        psnr=ev.psnr, ssim=ev.ssim, per_image=tuple(ev.per_image), steps=result.steps_done,
        num_splats=len(result.splats), device=renderer.device, backend=renderer.name, preset=cfg.preset,
        # the longest side actually trained and evaluated on; ``requested`` is the setting
        resolution=result.trained_longest_side,
        resolution_detail=Resolution(cfg.train.resolution, result.trained_longest_side,
                                     max(ev.resolution) if ev.num_views else 0),
        images=PhotoCounts(
            input=len(photo_set.images) + len(photo_set.skipped), used=len(photo_set.images),
            skipped=tuple(SkippedPhoto(s.name, s.reason) for s in photo_set.skipped),
            registered=len(scene.cameras), unregistered=tuple(scene.unregistered),
            train=len(scene.train_idx), test=len(scene.test_idx)),
        sky=None if sky is None else SkySummary(round(sky.share, 4), sky.width, sky.height,
                                                round(float((sky.seen >= SEEN_MIN).float().mean()), 4)),
        seconds={k: round(v, 2) for k, v in timings.items()}, cpu_count=os.cpu_count(), versions=versions(),
        cleanup=cleaned,
    )  # fmt: skip
