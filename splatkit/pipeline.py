"""Chains the stages: ingest -> sfm -> train -> evaluate -> export.

No stage logic lives here: only the order, the output folder layout, caching between stages,
timings and the final ``metrics.json``. Layout of an output folder ``OUT/``::

    config.json        the resolved configuration (reproduces the run)
    log.txt            human-readable log;  events.jsonl: the progress events
    work/images/       downscaled working copies of the photos (originals never touched)
    sfm_work/          SfM database and the distorted model
    sparse/0/          the undistorted COLMAP model (world frame of scene.ply)
    images/            the undistorted images
    checkpoints/       training checkpoints (resume with --resume)
    previews/          held-out photo beside its render, PNG
    scene.ply          the trained splats, INRIA 3DGS layout
    metrics.json       held-out PSNR/SSIM and run facts
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import UserError
from .events import EventBus, Message, StageFinished, StageStarted
from .fileio import write_text_atomic


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict = field(default_factory=dict)
    interrupted: bool = False


def default_out_dir(photos: Path) -> Path:
    """``<photos-folder-name>-splatkit/`` beside the photos folder (or video file)."""
    photos = Path(photos).resolve()
    stem = photos.stem if photos.is_file() else photos.name
    return photos.parent / f"{stem}-splatkit"


def check_out_dir(photos: Path, out_dir: Path) -> None:
    """The output folder must be writable and must not lie inside the photos folder."""
    photos = Path(photos).resolve()
    out = Path(out_dir).resolve()
    if photos.is_dir() and (out == photos or photos in out.parents):
        raise UserError(
            f"The output folder {out} is inside the photos folder; splatkit never writes there.",
            "Choose another folder with -o, e.g. -o " + str(default_out_dir(photos)),
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".splatkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"Cannot write to the output folder {out} ({e.strerror or e}).",
            "Choose a folder you can write to with -o OUT.",
        ) from None


def resolve_device(device: str) -> tuple[str, str]:
    """``(device, backend)`` for a requested device: auto picks CUDA when usable."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was asked for, but this machine has no usable NVIDIA GPU.",
                "Use --device cpu (or auto), or run `splatkit doctor` to see what is missing.",
            )
        return "cuda", "gsplat"
    if device == "cpu":
        return "cpu", "cpu"
    raise UserError(f"Unknown device {device!r}.", "Use --device auto, cpu or cuda.")


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


def run_sfm_stage(photos: Path, out_dir: Path, cfg: RunConfig, bus: EventBus, timings: dict):
    """Ingest + SfM (``splatkit sfm``); returns ``(photo_set, scene)``.

    ``photos`` may also be a video, a COLMAP project or a transforms.json (see ``sources.py``).
    """
    from .sfm import run_sfm
    from .sources import detect_source, import_cameras, ingest_source

    kind = detect_source(Path(photos))
    if kind in ("colmap", "transforms"):  # cameras given: SfM skipped
        with _Timer(bus, "sfm", f"existing cameras ({kind})") as t:
            photo_set, scene = import_cameras(Path(photos), kind, out_dir, cfg, bus)
            t.summary = {"registered": len(scene.cameras), "total": len(photo_set.images),
                         "points": int(scene.points.shape[0])}
        timings["sfm"] = t.seconds
        return photo_set, scene
    with _Timer(bus, "ingest", str(photos)) as t:
        photo_set = ingest_source(Path(photos), kind, out_dir, cfg.ingest, bus)
        t.summary = {"used": len(photo_set.images), "skipped": len(photo_set.skipped)}
    timings["ingest"] = t.seconds
    with _Timer(bus, "sfm", f"{len(photo_set.images)} photos") as t:
        scene = run_sfm(photo_set, out_dir, cfg.sfm, bus)
        t.summary = {
            "registered": len(scene.cameras),
            "total": len(photo_set.images),
            "points": int(scene.points.shape[0]),
        }
    timings["sfm"] = t.seconds
    return photo_set, scene


def run_train(
    photos: Path,
    out_dir: Path,
    cfg: RunConfig,
    bus: EventBus,
    resume: bool = False,
    stop_flag=None,
) -> RunResult:
    """The whole ``splatkit train`` job."""
    from .evaluate import evaluate, write_previews
    from .export.ply import write_ply
    from .train import train

    out_dir = Path(out_dir)
    check_out_dir(photos, out_dir)
    device, backend = resolve_device(cfg.device)
    write_text_atomic(out_dir / "config.json", cfg.to_json())
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    photo_set, scene = run_sfm_stage(photos, out_dir, cfg, bus, timings)

    with _Timer(bus, "train", f"{cfg.train.steps} steps on {device}") as t:
        result = train(
            scene, cfg.train, out_dir, backend=backend, device=device, bus=bus,
            resume=resume, stop_flag=stop_flag,
        )
        t.summary = {"steps": result.steps_done, "splats": len(result.splats)}
    timings["train"] = t.seconds
    if result.interrupted:
        return RunResult(out_dir=out_dir, interrupted=True)

    with _Timer(bus, "evaluate", f"{len(scene.test_idx)} held-out photos") as t:
        ev = evaluate(result.splats, scene, cfg.train.resolution, backend, device)
        write_previews(ev, out_dir / "previews")
        t.summary = {"psnr": ev["psnr"], "ssim": ev["ssim"]}
    timings["evaluate"] = t.seconds

    with _Timer(bus, "export", "scene.ply") as t:
        write_ply(result.splats.detach().to("cpu"), out_dir / "scene.ply")
    timings["export"] = t.seconds
    timings["total"] = time.perf_counter() - t_all

    metrics = {
        "psnr": ev["psnr"],
        "ssim": ev["ssim"],
        "per_image": ev["per_image"],
        "steps": result.steps_done,
        "num_splats": len(result.splats),
        "device": device,
        "backend": backend,
        "preset": cfg.preset,
        "resolution": cfg.train.resolution,
        "images": {
            "input": len(photo_set.images) + len(photo_set.skipped),
            "used": len(photo_set.images),
            "skipped": [{"name": s.name, "reason": s.reason} for s in photo_set.skipped],
            "registered": len(scene.cameras),
            "unregistered": list(scene.unregistered),
            "train": len(scene.train_idx),
            "test": len(scene.test_idx),
        },
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "cpu_count": os.cpu_count(),
        "versions": versions(),
    }
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    from .report import build_report

    with _Timer(bus, "report", "report.html"):
        build_report(out_dir)
    bus.emit(Message(stage="done", text=f"held-out PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}"))
    return RunResult(out_dir=out_dir, metrics=metrics)
