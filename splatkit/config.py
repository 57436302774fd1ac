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
    max_image_size: int = opt(1600, "Longest side, in pixels, of the working copies of the photos.",
                              min=64, max=20_000)
    min_image_size: int = opt(
        64, "Photos whose shorter side is below this many pixels are skipped.", min=16, max=4096
    )
    video_fps: float = opt(
        2.0,
        "Most frames taken per second of video (so at most 60 times this per minute); within "
        "that, frames are chosen by sharpness and camera motion (none while the camera stands "
        "still).",
        min_exclusive=0.0, max=60.0,
    )
    max_aspect_ratio: float = opt(
        3.0, "Photos more than this many times as wide as tall (or as tall as wide) are skipped "
        "as panoramas or strips: structure from motion needs ordinary photos.", min=1.0, max=100.0,
    )
    pano_views: str = opt(
        "cube5",
        "Views cut from each 360-degree (equirectangular) frame: cube5 (a cube without its bottom "
        "face), cube4 (its 4 sides) or ring8 (8 around the horizon and 4 looking up, "
        "overlapping). None looks at the bottom of the sphere (tripod, operator).",
        choices=("cube5", "cube4", "ring8"),
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
    max_features: int = opt(8192, "Most SIFT features kept per photo.", min=256, max=65_536)
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
    max_image_size: int = opt(1600, "Longest side, in pixels, of the images SfM works on.",
                              min=100, max=20_000)
    retrieval_neighbours: int = opt(
        10,
        "With retrieval matching: how many most similar photos each photo is matched with "
        "(then photos that share a well-matched neighbour are matched too).",
        min=1, max=1000,
    )
    second_chance: bool = opt(
        True,
        "Photos left out by the first pass are tried again (more features, the whole working "
        "copy, guided matching against the placed photos) before they are dropped.",
    )
    num_threads: int = opt(-1, "CPU threads for SfM (-1: all).", min=-1, max=1024)
    seed: int = opt(
        0,
        "Random seed of SfM (RANSAC, mappers, vocabulary tree): with one thread "
        "(num_threads 1) the same photos, settings and seed give the same camera poses; with "
        "more threads, thread timing can change them (measured: 1 run in 12 on fountain).",
        min=0, max=2**31 - 1,
    )


@dataclass
class TrainConfig:
    steps: int = opt(30_000, "Training steps.", min=1, max=10_000_000)
    resolution: int = opt(
        1600, "Longest side, in pixels, of the images trained on (smaller is faster).",
        min=32, max=16_384,
    )
    sh_degree: int = opt(3, "Highest spherical-harmonics degree (0-3): view-dependent colour.",
                         min=0, max=3)
    sh_degree_interval: int = opt(1000, "Steps between raising the SH degree by one.", min=0)
    ssim_lambda: float = opt(0.2, "Weight of the D-SSIM term in the loss (L1 gets the rest).",
                             min=0.0, max=1.0)
    init_opacity: float = opt(0.1, "Opacity of the initial splats.", min_exclusive=0.0,
                              max_exclusive=1.0)
    init_scale: float = opt(1.0, "Initial splat size, times the mean distance to 3 neighbours.",
                            min_exclusive=0.0, max=100.0)
    means_lr: float = opt(1.6e-4, "Learning rate of positions, times the scene extent.", min=0.0,
                          max=1.0)
    means_lr_final_factor: float = opt(0.01, "Position learning rate at the end, as a fraction.",
                                       min_exclusive=0.0, max=1.0)
    scales_lr: float = opt(5e-3, "Learning rate of log-scales.", min=0.0, max=1.0)
    quats_lr: float = opt(1e-3, "Learning rate of rotations.", min=0.0, max=1.0)
    opacities_lr: float = opt(5e-2, "Learning rate of opacity logits.", min=0.0, max=1.0)
    sh0_lr: float = opt(2.5e-3, "Learning rate of base colour.", min=0.0, max=1.0)
    shN_lr: float = opt(2.5e-3 / 20, "Learning rate of view-dependent colour.", min=0.0, max=1.0)
    strategy: str = opt(
        "default", "How splats are added and removed: default (clone/split/prune as in 3DGS) or mcmc "
        "(a fixed budget, see --max-splats).", choices=("default", "mcmc")
    )
    refine_start: int = opt(500, "First step of densification.", min=0)
    refine_stop: int = opt(15_000, "Last step of densification.", min=0)
    refine_every: int = opt(100, "Steps between densifications.", min=1)
    reset_every: int = opt(3000, "Steps between opacity resets.", min=1)
    grow_grad2d: float = opt(2e-4, "Screen-space gradient above which a splat is cloned/split.",
                             min_exclusive=0.0)
    max_splats: int = opt(1_000_000, "Cap on the number of splats (mcmc; default stops growing).",
                          min=1, max=100_000_000)
    absgrad: bool = opt(False, "Use absolute gradients for densification (AbsGS).")
    antialiased: bool = opt(False, "Antialiased rasterization (Mip-Splatting opacity compensation).")
    packed: bool = opt(False, "GPU only: gsplat's packed mode (less GPU memory for large scenes).")
    random_background: bool = opt(False, "Random background colour each step (fewer floaters).")
    camera_clearance: float = opt(
        0.0, "Remove splats where the photographer stood: within this many camera spacings (median "
        "distance between neighbouring training cameras) of a training camera, outside its view "
        "and nearer to it than to any SfM point; 0 keeps them.", min=0.0)
    pose_opt: bool = opt(False, "Refine the training cameras' poses while training (for phone "
                         "captures with imperfect SfM poses; held-out photos keep theirs).")
    pose_opt_lr: float = opt(1e-5, "Learning rate of the camera-pose corrections.", min=0.0, max=1.0)
    pose_opt_reg: float = opt(1e-6, "Weight decay pulling the pose corrections back to the SfM poses.",
                              min=0.0, max=1.0)
    appearance: str = opt(
        "none", "Exposure/colour compensation per photo: none, or bilagrid (a bilateral grid per "
        "photo, for captures whose exposure or white balance changes).",
        choices=("none", "bilagrid"),
    )
    resolution_schedule: str = opt(
        "none", "none (train at --resolution throughout) or dash (DashGaussian: low resolution "
        "first, full resolution from the end of densification).", choices=("none", "dash"),
    )
    sky: str = opt(
        "off",
        "A learned sky behind the splats, exported as Unreal's sky: on, off, or auto (kept when at "
        "least 2% of the training pixels still show it at the end of densification, e.g. outdoors; "
        "off for a closed room). The quick, standard, full and fast presets use auto.",
        choices=("auto", "on", "off"),
    )
    sky_width: int = opt(512, "Width in texels of the sky panorama (its height is half).",
                         min=16, max=8192)
    sky_lr: float = opt(0.01, "Learning rate of the sky's texels.", min=0.0, max=1.0)
    densify_budget: bool = opt(False, "Grow splats within DashGaussian's budget (default strategy).")
    sparse_adam: bool = opt(
        True,
        "On the CPU, Adam updates only the splats seen in each step's view (sparse Adam, Taming "
        "3DGS): faster; the others keep their values and moments.",
    )
    eval_every: int = opt(1000, "Steps between held-out PSNR evaluations (0: only at the end).",
                          min=0)
    checkpoint_every: int = opt(1000, "Steps between checkpoints (0: only at the end).", min=0)
    seed: int = opt(
        42,
        "Random seed of training: the same seed, camera poses and settings on the same machine "
        "give the same result. SfM has its own (sfm.seed) and with several threads can place the "
        "cameras slightly differently from run to run; to repeat a run exactly, train again from "
        "its SfM output (OUT/sparse/0 with OUT/images).",
        min=0, max=2**32 - 1,
    )


@dataclass
class BlocksConfig:
    """Large captures trained in blocks (:mod:`splatkit.blocks`): one block at a time here, or
    as Ray tasks on a cluster."""

    blocks: int = opt(0, "Blocks to train in (0: automatic, one block per 1,000 photos, blocks.max_photos; "
                      "1: never split).", min=0, max=4096)
    max_photos: int = opt(1000, "Automatic blocks: the most photos one block's core holds.",
                          min=10, max=1_000_000)
    overlap: float = opt(0.2, "How far a block's training reaches past its core, as a fraction of "
                         "its size (its splats there are dropped at the merge).", min=0.0, max=2.0)
    visibility: float = opt(0.25, "A photo from outside a block trains it when it sees this "
                            "fraction of the block's points.", min=0.0, max=1.0)
    ray_address: str = opt("", "Train the blocks as Ray tasks: 'local' (a Ray on this machine) or "
                           "a cluster address (ray://HOST:10001, auto); empty: one after another.")
    ray_workers: int = opt(2, "Blocks trained at once on a local Ray.", min=1, max=1024)
    ray_cpus_per_block: int = opt(1, "CPU threads per block under Ray.", min=1, max=1024)
    ray_gpus_per_block: float = opt(0.0, "GPUs per block under Ray (1: one block per GPU).",
                                    min=0.0, max=64.0)


@dataclass
class CleanupConfig:
    """Cleanup after training (:mod:`splatkit.cleanup`): the rules, the levels tried for each,
    and the held-out cost allowed. The levels are tried from the mildest; each rule keeps the
    most aggressive level whose removals, with those already accepted, cost at most
    ``max_psnr_drop`` of held-out PSNR against the trained scene."""

    mode: str = opt("auto", "auto: remove what no training view needs, with thresholds chosen "
                    "on the held-out photos, and write scene_clean.ply (used by export and view); "
                    "none: no cleanup.", choices=("auto", "none"))
    max_psnr_drop: float = opt(0.05, "Held-out PSNR (dB) the cleanup may cost at most.",
                               min=0.0, max=10.0)
    weight_floor: float = opt(1.0 / 255.0, "The mildest largest-weight level tried: splats whose "
                              "blending weight (share of a pixel's colour) stays below this in "
                              "every training pixel. Splats that reach no training pixel at all "
                              "are always removed.", min=0.0, max=1.0)
    weight_levels: list = opt([0.01, 0.02, 0.05, 0.1], "Largest-weight levels tried after the "
                              "floor (LightGaussian's global significance), mildest first.")
    needed_weight: float = opt(0.5, "A splat that makes at least this share of some training "
                               "pixel's colour is needed by that view: the isolation and "
                               "clearance rules leave it.", min=0.0, max=1.0)
    isolation_neighbours: int = opt(8, "Neighbours whose mean distance measures isolation.",
                                    min=1, max=64)
    isolation_levels: list = opt([32.0, 16.0, 8.0, 4.0], "Isolation thresholds tried, mildest "
                                 "first: a splat's neighbour distance over its distance to the "
                                 "nearest camera, in multiples of the scene's median.")
    clearance_levels: list = opt([0.25, 0.5, 1.0], "Camera-clearance radii tried, in camera "
                                 "spacings (see train --camera-clearance), mildest first.")
    preview_width: int = opt(480, "Width in pixels of the before/after views in the report.",
                             min=32, max=4096)


@dataclass
class RunConfig:
    """Everything ``splatkit train`` needs; saved as ``config.json`` in the output folder."""

    preset: str = opt("standard", "Named settings: quick, standard, full or fast (GPU).")
    device: str = opt("auto", "auto (GPU when there is one), cpu or cuda.")
    ingest: IngestConfig = field(default_factory=IngestConfig)
    sfm: SfmConfig = field(default_factory=SfmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    blocks: BlocksConfig = field(default_factory=BlocksConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)

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
            blocks=_build(BlocksConfig, d.get("blocks", {})),
            cleanup=_build(CleanupConfig, d.get("cleanup", {})),
        )

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


#: Settings that may change when a run is resumed (flattened keys): they change how long it trains
#: or how often it reports, never what the splats are fitted to. Every other setting is fixed by
#: the checkpoint (see ``splatkit/run.py``).
SAFE_ON_RESUME = {
    "train.steps": "train longer (or stop earlier)",
    "train.eval_every": "how often held-out photos are scored",
    "train.checkpoint_every": "how often checkpoints are written",
    "train.refine_stop": "when densification stops",
    "device": "where the remaining steps run",
    "blocks.ray_address": "where the remaining blocks train",
}


def field_range(f: dataclasses.Field) -> tuple[str, Any, Any] | None:
    """``(kind, low, high)`` of a numeric field from its metadata, or None; ``kind`` tells
    whether the bounds are inclusive (``"[]"``, ``"(]"``, ``"[)"``, ``"()"``)."""
    m = f.metadata
    lo_ex, hi_ex = "min_exclusive" in m, "max_exclusive" in m
    lo = m.get("min_exclusive", m.get("min"))
    hi = m.get("max_exclusive", m.get("max"))
    if lo is None and hi is None:
        return None
    return ("(" if lo_ex else "[") + (")" if hi_ex else "]"), lo, hi


def _fmt(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def check_value(name: str, value: Any, rng: tuple[str, Any, Any], shown: str | None = None) -> str | None:
    """Why ``value`` is out of ``rng`` (plain words; ``shown``: the value as typed), or None."""
    kind, lo, hi = rng
    low_bad = lo is not None and (value <= lo if kind[0] == "(" else value < lo)
    high_bad = hi is not None and (value >= hi if kind[1] == ")" else value > hi)
    if value == value and not low_bad and not high_bad:  # value != value: NaN
        return None
    parts = []
    if lo is not None:
        parts.append(("above " if kind[0] == "(" else "at least ") + _fmt(lo))
    if hi is not None:
        parts.append(("below " if kind[1] == ")" else "at most ") + _fmt(hi))
    return f"{name} must be {' and '.join(parts)}, not {shown or _fmt(value)}"


def validate(cfg: RunConfig) -> None:
    """Every numeric setting inside its range, with the option's name in the message.

    Raises:
        UserError: the first setting out of range.
    """
    from .errors import UserError

    for section in (cfg.ingest, cfg.sfm, cfg.train, cfg.cleanup):
        for f in dataclasses.fields(section):
            rng = field_range(f)
            value = getattr(section, f.name)
            if rng is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            why = check_value("--" + f.name.replace("_", "-"), value, rng)
            if why:
                raise UserError(why + ".", "`splatkit train --help` explains each option.")


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
            # 3000: with the random background the held-out PSNR still rises from 2000 to 3000
            # steps on every set (fountain +0.4, castle +1.1, fox +0.8 dB; docs/benchmarks.md);
            # sets of 30+ training photos get 2000 (their SfM takes longer; PHOTO_TIERS below).
            "steps": 3000,
            "resolution": 320,
            # The CPU step time grows with the splat count: 40k keeps 3000 steps in minutes.
            "max_splats": 40_000,
            "sh_degree": 1,
            "sh_degree_interval": 500,
            "refine_start": 200,
            # DashGaussian's resolution schedule and splat budget, densifying until step 1000
            # (measured on fountain and castle against 1500 and the plain schedule:
            # docs/benchmarks.md, "quick preset").
            "refine_stop": 1000,
            "resolution_schedule": "dash",
            "densify_budget": True,
            # A random background each step: the splats must cover every pixel (nerfstudio's
            # default). Without it a short run leaves the sky and edges half transparent, dark
            # on the black background (+0.3 to +1.8 dB held-out on fountain, castle and South
            # Building; docs/benchmarks.md, "quick preset: random background").
            "random_background": True,
            "reset_every": 100_000,
            "eval_every": 500,
            "checkpoint_every": 250,
            # The learned sky (train/sky.py), kept where the photos show one.
            "sky": "auto",
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
            "sky": "auto",
        },
    },
    # The reference 3DGS schedule: 30k steps (the GPU default).
    "full": {"train": {"steps": 30_000, "resolution": 1600, "checkpoint_every": 2000, "sky": "auto"}},
    # GPU: the fastest published recipes that fit this trainer. DashGaussian (CVPR 2025): its
    # frequency-guided resolution schedule, its primitive budget and its delayed position-LR
    # decay; a shortened schedule (10k steps, densify to 6k: the resolution reaches full size
    # at 6k, so 4k full-size steps remain). Sparse Adam and fused SSIM are not in it yet (see
    # docs/benchmarks.md, GPU section). Target: within 0.3 dB of `full` in 1/4 of its time.
    "fast": {
        "train": {
            "steps": 10_000,
            "resolution": 1600,
            "refine_stop": 6000,
            "resolution_schedule": "dash",
            "densify_budget": True,
            "eval_every": 2000,
            "checkpoint_every": 2000,
            "sky": "auto",
        },
    },
}


@dataclass(frozen=True)
class PhotoTier:
    """Training settings a preset changes for photo sets of at least ``train_photos`` training
    photos (steps and splats sized to what the set's SfM leaves of the run's time)."""

    train_photos: int
    train: dict


#: Per preset, its tiers by number of training photos (the largest that applies wins). Applied
#: once SfM has placed the photos (:func:`tiered`), never over a setting given explicitly.
PHOTO_TIERS: dict[str, list[PhotoTier]] = {
    # quick spends about what a photo set's SfM leaves of a 5-minute run, or of the 10-minute
    # class budget for large sets (docs/benchmarks.md, "quick preset: random background and
    # photo tiers"): under 30 training photos SfM takes seconds and 3000 steps fit (fountain,
    # castle: 146 s in all); from 30, SfM takes a minute or more (fox: 58 s) and 2000 steps keep
    # the run near 4 minutes; from 80, more views need more steps and splats: South Building
    # (112 training photos) 22.1 dB at 2000 steps / 40k splats, 23.0 at 4000 / 60k, 8 minutes.
    "quick": [
        PhotoTier(30, {"steps": 2000}),
        # Camera clearance (train/clearance.py) for a walk of 80+ photos: South Building's
        # held-out photos were veiled by single splats on the path (22.76 dB without it, 23.01
        # over three seeds with it); on the small sets, with nothing to clear, it cost 0.2-0.6 dB
        # in every pair measured (docs/benchmarks.md).
        PhotoTier(80, {"steps": 4000, "max_splats": 60_000, "refine_stop": 2000,
                       "camera_clearance": 2.0}),
    ],
}


def tiered(cfg: RunConfig, train_photos: int, explicit: set[str]) -> tuple[RunConfig, dict]:
    """``cfg`` with its preset's tier for ``train_photos`` applied, and what changed
    (``{"steps": 3000, ...}``); settings in ``explicit`` (flattened keys, ``train.steps``) stay."""
    tiers = [t for t in PHOTO_TIERS.get(cfg.preset, []) if train_photos >= t.train_photos]
    if not tiers:
        return cfg, {}
    tier = max(tiers, key=lambda t: t.train_photos)
    changed = {k: v for k, v in tier.train.items()
               if f"train.{k}" not in explicit and getattr(cfg.train, k) != v}  # fmt: skip
    if not changed:
        return cfg, {}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changed)), changed


#: Presets made for a GPU (a CPU runs them only when asked with ``--device cpu``).
GPU_PRESETS = ("fast", "full")
#: The unit of :func:`cpu_hours`: the standard preset (7,000 steps at 800 px) takes about an hour
#: on a laptop CPU (docs/benchmarks.md); a step's time grows with the pixels drawn.
CPU_HOUR = (7000, 800)


def cpu_hours(cfg: RunConfig) -> float:
    """Roughly how many hours ``cfg``'s training takes on a laptop CPU (its steps and pixels
    against the standard preset's hour; SfM not counted)."""
    steps, res = CPU_HOUR
    return cfg.train.steps / steps * (cfg.train.resolution / res) ** 2


def preset_config(name: str) -> RunConfig:
    """The resolved configuration of a named preset."""
    if name not in PRESETS:
        raise KeyError(name)
    base = dataclasses.asdict(RunConfig())
    for section, values in PRESETS[name].items():
        base[section].update(values)
    base["preset"] = name
    return RunConfig.from_dict(base)
