"""Configuration: one dataclass per stage, with a plain-words help text per field.

The same dataclasses are the command line (``splatkit train --help`` is built from the ``help``
texts) and the saved file (``config.json`` beside every output). Presets are named instances,
data rather than code paths.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its help text (shown by ``--help``)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class IngestConfig:
    max_image_size: int = opt(1600, "Longest side, in pixels, of the working copies of the photos.")
    min_image_size: int = opt(
        64, "Photos whose shorter side is below this many pixels are skipped."
    )
    video_fps: float = opt(
        2.0,
        "Most frames taken per second of video (so at most 60 times this per minute); within "
        "that, frames are chosen by sharpness and camera motion (none while the camera stands "
        "still).",
    )


@dataclass
class SfmConfig:
    matcher: str = opt(
        "auto",
        "How photos are paired for matching: auto (sequential for video, exhaustive for up to "
        "60 photos, else retrieval), exhaustive (every pair), retrieval (each photo with its "
        "most similar ones, by a vocabulary tree built from the photos themselves), sequential "
        "(capture order, with loop closure by retrieval) or spatial (EXIF GPS).",
        choices=("auto", "exhaustive", "retrieval", "sequential", "spatial"),
    )
    mapper: str = opt(
        "incremental",
        "How cameras are placed: incremental (one photo at a time, robust) or global (all at "
        "once, GLOMAP: faster on large sets).",
        choices=("incremental", "global"),
    )
    max_features: int = opt(8192, "Most SIFT features kept per photo.")
    single_camera: bool = opt(
        True,
        "Photos with the same EXIF camera make, model, focal length and size share one camera "
        "(photos without EXIF: one camera per size). Off: every photo its own camera.",
    )
    camera_model: str = opt(
        "SIMPLE_RADIAL",
        "Lens model: SIMPLE_RADIAL (one focal length, one distortion term: most photos) or "
        "OPENCV (separate x/y focal lengths, 4 distortion terms: wide-angle or action cameras).",
        choices=("SIMPLE_RADIAL", "OPENCV"),
    )
    refine_principal_point: bool = opt(
        True,
        "Refine the lens centre too (only with one shared camera; more accurate rotations).",
    )
    max_image_size: int = opt(1600, "Longest side, in pixels, of the images SfM works on.")
    retrieval_neighbours: int = opt(
        10,
        "With retrieval matching: how many most similar photos each photo is matched with "
        "(then photos that share a well-matched neighbour are matched too).",
    )
    second_chance: bool = opt(
        True,
        "Photos left out by the first pass are tried again (more features, the whole working "
        "copy, guided matching against the placed photos) before they are dropped.",
    )
    num_threads: int = opt(-1, "CPU threads for SfM (-1: all).")
    seed: int = opt(
        0,
        "Random seed of SfM (RANSAC, mappers, vocabulary tree): the same photos, settings, seed "
        "and thread count give the same camera poses.",
    )


@dataclass
class TrainConfig:
    steps: int = opt(30_000, "Training steps.")
    resolution: int = opt(
        1600, "Longest side, in pixels, of the images trained on (smaller is faster)."
    )
    sh_degree: int = opt(3, "Highest spherical-harmonics degree (0-3): view-dependent colour.")
    sh_degree_interval: int = opt(1000, "Steps between raising the SH degree by one.")
    ssim_lambda: float = opt(0.2, "Weight of the D-SSIM term in the loss (L1 gets the rest).")
    init_opacity: float = opt(0.1, "Opacity of the initial splats.")
    init_scale: float = opt(1.0, "Initial splat size, times the mean distance to 3 neighbours.")
    means_lr: float = opt(1.6e-4, "Learning rate of positions, times the scene extent.")
    means_lr_final_factor: float = opt(0.01, "Position learning rate at the end, as a fraction.")
    scales_lr: float = opt(5e-3, "Learning rate of log-scales.")
    quats_lr: float = opt(1e-3, "Learning rate of rotations.")
    opacities_lr: float = opt(5e-2, "Learning rate of opacity logits.")
    sh0_lr: float = opt(2.5e-3, "Learning rate of base colour.")
    shN_lr: float = opt(2.5e-3 / 20, "Learning rate of view-dependent colour.")
    strategy: str = opt(
        "default", "Densification: default (clone/split/prune) or mcmc.", choices=("default", "mcmc")
    )
    refine_start: int = opt(500, "First step of densification.")
    refine_stop: int = opt(15_000, "Last step of densification.")
    refine_every: int = opt(100, "Steps between densifications.")
    reset_every: int = opt(3000, "Steps between opacity resets.")
    grow_grad2d: float = opt(2e-4, "Screen-space gradient above which a splat is cloned/split.")
    max_splats: int = opt(1_000_000, "Cap on the number of splats (mcmc; default stops growing).")
    absgrad: bool = opt(False, "Use absolute gradients for densification (AbsGS).")
    antialiased: bool = opt(False, "Antialiased rasterization (Mip-Splatting opacity compensation).")
    packed: bool = opt(False, "gsplat packed mode (less GPU memory for large scenes).")
    random_background: bool = opt(False, "Random background colour each step (fewer floaters).")
    eval_every: int = opt(1000, "Steps between held-out PSNR evaluations (0: only at the end).")
    checkpoint_every: int = opt(1000, "Steps between checkpoints.")
    seed: int = opt(
        42,
        "Random seed of training (SfM has its own, SfmConfig.seed: the same photos, settings "
        "and thread count give the same camera poses).",
    )


@dataclass
class RunConfig:
    """Everything ``splatkit train`` needs; saved as ``config.json`` in the output folder."""

    preset: str = opt("standard", "Named settings: quick, standard or full.")
    device: str = opt("auto", "auto (GPU when there is one), cpu or cuda.")
    ingest: IngestConfig = field(default_factory=IngestConfig)
    sfm: SfmConfig = field(default_factory=SfmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(
            preset=d.get("preset", "standard"),
            device=d.get("device", "auto"),
            ingest=_build(IngestConfig, d.get("ingest", {})),
            sfm=_build(SfmConfig, d.get("sfm", {})),
            train=_build(TrainConfig, d.get("train", {})),
        )

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _build(klass, d: dict):
    names = {f.name for f in dataclasses.fields(klass)}
    return klass(**{k: v for k, v in d.items() if k in names})


#: Presets: named overrides of the defaults. Data, not code paths.
PRESETS: dict[str, dict] = {
    # The classroom CPU run: minutes on a 2-core laptop, reduced resolution.
    "quick": {
        # 800 px and 2048 features: exhaustive matching of 50 photos is ~4x cheaper than at 4096.
        "ingest": {"max_image_size": 800},
        "sfm": {"max_image_size": 800, "max_features": 2048},
        "train": {
            "steps": 2000,
            "resolution": 320,
            # The CPU step time grows with the splat count: 40k keeps 2000 steps in minutes.
            "max_splats": 40_000,
            "sh_degree": 1,
            "sh_degree_interval": 500,
            "refine_start": 200,
            "refine_stop": 1500,
            "reset_every": 100_000,
            "eval_every": 500,
            "checkpoint_every": 250,
        },
    },
    # Tests and demos: seconds, not a usable scene (the classroom server's test jobs).
    "tiny": {
        "ingest": {"max_image_size": 200},
        "sfm": {"max_image_size": 200, "max_features": 1024},
        "train": {"steps": 40, "resolution": 96, "sh_degree": 0, "refine_start": 100_000,
                  "refine_stop": 0, "reset_every": 100_000, "eval_every": 20, "checkpoint_every": 10},
    },
    # A good CPU result in under an hour, or a fast GPU preview.
    "standard": {
        "train": {
            "steps": 7000,
            "resolution": 800,
            "refine_stop": 5000,
            "eval_every": 1000,
            "checkpoint_every": 500,
        },
    },
    # The reference 3DGS schedule: 30k steps (the GPU default).
    "full": {"train": {"steps": 30_000, "resolution": 1600, "checkpoint_every": 2000}},
}


def preset_config(name: str) -> RunConfig:
    """The resolved configuration of a named preset."""
    if name not in PRESETS:
        raise KeyError(name)
    base = dataclasses.asdict(RunConfig())
    for section, values in PRESETS[name].items():
        base[section].update(values)
    base["preset"] = name
    return RunConfig.from_dict(base)
