"""Training a large capture block by block: each block is an ordinary training run.

One block at a time holds memory: its photos, its splats and its optimiser. A finished block's
splats are written to ``<block folder>/splats.pt`` (atomically) and released, so peak memory
follows the largest block, not the capture. A block interrupted or killed resumes from its own
checkpoints (``<block folder>/checkpoints``); a finished block is not trained again.

The same function trains one block in-process and inside a Ray task (:mod:`.ray_dispatch`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import BlocksConfig, RunConfig, tiered
from ..events import NULL_BUS, EventBus, Message
from ..fileio import atomic_path
from ..rundir import RunDir
from ..scene import Scene
from ..splats import Splats
from .partition import Block, Partition, merge, partition

#: The finished block's splats, beside its checkpoints.
BLOCK_SPLATS = "splats.pt"


@dataclass
class BlockResult:
    """What one block's training left: where, how long, how big."""

    index: int
    folder: Path
    cameras: int
    points: int
    steps: int
    splats: int
    seconds: float
    peak_rss_mb: float
    interrupted: bool = False
    longest_side: int = 0


def block_scene(scene: Scene, block: Block) -> Scene:
    """The block's own scene: the training cameras that see it and the SfM points in its bounds
    (never a held-out photo: those score the merged scene)."""
    held_out = set(scene.test_idx)
    idx = [int(i) for i in block.camera_idx if int(i) not in held_out]
    pts = torch.as_tensor(block.point_idx, dtype=torch.long)
    return Scene(scene.cameras.subset(idx), scene.image_dir, scene.points[pts], scene.point_colors[pts],
                 train_idx=list(range(len(idx))), test_idx=[])


def blocks_for(cfg: BlocksConfig, photos: int) -> int:
    """How many blocks a capture of ``photos`` photos trains in."""
    return cfg.blocks if cfg.blocks > 0 else max(1, math.ceil(photos / cfg.max_photos))


def scene_up(scene: Scene) -> np.ndarray:
    """World up of the scene (the export's estimate: cameras, then the ground plane)."""
    from ..up import estimate_up

    c = scene.cameras
    return estimate_up(c.world_to_cam.double(), c.centers.double(), scene.points).vector.numpy()


def split_scene(scene: Scene, n: int, cfg: BlocksConfig, up: np.ndarray | None = None) -> Partition:
    """The scene's ``n`` blocks (held-out cameras count for the split but train nothing)."""
    up = scene_up(scene) if up is None else up
    return partition(scene.cameras, scene.points.double().numpy(), up, n, cfg.overlap, cfg.visibility)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux and macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


def _save_splats(splats: Splats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in splats.as_dict().items()}, tmp)


def load_block_splats(folder: Path) -> Splats | None:
    """A finished block's splats, or None when the block has not finished."""
    path = Path(folder) / BLOCK_SPLATS
    if not path.is_file():
        return None
    return Splats.from_dict(torch.load(path, map_location="cpu", weights_only=True))


def train_block(scene: Scene, block: Block, cfg: RunConfig, folder: Path, renderer,
                bus: EventBus = NULL_BUS, stop_flag: Callable[[], bool] | None = None,
                run_id: str = "", explicit: frozenset[str] = frozenset()) -> BlockResult:
    """Train one block into ``folder`` (resuming its own checkpoints), unless it finished before."""
    from ..train import train

    sub = block_scene(scene, block)
    done = load_block_splats(folder)
    if done is not None:
        return BlockResult(block.index, folder, len(sub.cameras), len(block.point_idx), -1, len(done),
                           0.0, peak_rss_mb())
    bcfg, _ = tiered(cfg, len(sub.train_idx), set(explicit))
    t0 = time.perf_counter()
    result = train(sub, bcfg.train, folder, renderer, bus=bus, resume=True, stop_flag=stop_flag,
                   run_id=run_id)
    if not result.interrupted:
        _save_splats(result.splats, folder / BLOCK_SPLATS)
    return BlockResult(block.index, folder, len(sub.cameras), len(block.point_idx), result.steps_done,
                       len(result.splats), time.perf_counter() - t0, peak_rss_mb(), result.interrupted,
                       result.trained_longest_side)


def train_blocks_sequential(scene: Scene, part: Partition, cfg: RunConfig, folders: list[Path],
                            renderer, bus: EventBus = NULL_BUS, stop_flag=None, run_id: str = "",
                            explicit: frozenset[str] = frozenset()) -> list[BlockResult]:
    """Every block in turn on this machine; stops early (interrupted) when ``stop_flag`` says so."""
    results = []
    for block, folder in zip(part.blocks, folders, strict=True):
        bus.emit(Message(stage="train", text=f"Block {block.index + 1} of {len(part.blocks)}: "
                         f"{len(block.camera_idx)} photos, {len(block.point_idx):,} points."))
        r = train_block(scene, block, cfg, folder, renderer, bus, stop_flag, run_id, explicit)
        results.append(r)
        if r.interrupted:
            break
    return results


def merge_blocks(part: Partition, folders: list[Path]) -> tuple[Splats, np.ndarray]:
    """The finished blocks' splats, each block keeping its core."""
    trained = {}
    for block, folder in zip(part.blocks, folders, strict=True):
        s = load_block_splats(folder)
        if s is None:
            raise RuntimeError(f"block {block.index} has not finished")
        trained[block.index] = s
    return merge(part, trained)


#: Trains every block of a partition into its folder and returns the blocks' results in block
#: order: ``dispatch(scene, part, cfg, folders)``. The pipeline hands one in for a Ray cluster
#: (:func:`splatkit.blocks.ray_dispatch.ray_dispatcher`); without one the blocks train here in turn.
BlockDispatch = Callable[[Scene, Partition, RunConfig, list[Path]], list[BlockResult]]


def train_in_blocks(scene: Scene, cfg: RunConfig, rd: RunDir, renderer, n: int, bus: EventBus = NULL_BUS,
                    stop_flag=None, run_id: str = "", explicit: frozenset[str] = frozenset(),
                    dispatch: BlockDispatch | None = None):
    """:func:`splatkit.train.train` for a capture split into ``n`` blocks: the blocks trained in
    ``OUT/blocks/block_NNN`` (by ``dispatch``, else here one after another), merged into one
    :class:`TrainResult`."""
    from ..train import TrainResult

    t0 = time.perf_counter()
    part = split_scene(scene, n, cfg.blocks)
    folders = [rd.blocks / f"block_{b.index:03d}" for b in part.blocks]
    sizes = ", ".join(str(len(b.camera_idx)) for b in part.blocks)
    bus.emit(Message(stage="train", text=f"{len(scene.cameras)} photos: training in {len(part.blocks)} "
                     f"blocks of {sizes} photos ({cfg.blocks.overlap:.0%} overlap)."))
    if dispatch is not None:
        results = dispatch(scene, part, cfg, folders)
    else:
        results = train_blocks_sequential(scene, part, cfg, folders, renderer, bus, stop_flag, run_id,
                                          explicit)
    _write_summary(rd.blocks_summary, part, results, border_views(scene, part))
    steps = sum(max(r.steps, 0) for r in results)
    longest = max((r.longest_side for r in results), default=0)
    if len(results) < len(part.blocks) or any(r.interrupted for r in results):
        return TrainResult(Splats.random(0, cfg.train.sh_degree), steps, time.perf_counter() - t0,
                           interrupted=True, trained_longest_side=longest)
    merged, _ = merge_blocks(part, folders)
    return TrainResult(merged, steps, time.perf_counter() - t0, trained_longest_side=longest)


def border_views(scene: Scene, part: Partition, least: float = 0.2) -> dict[str, list[int]]:
    """Held-out photos that look across a border: the blocks holding at least ``least`` of the
    SfM points each one sees (a seam would show in them)."""
    from .partition import visible_in

    owner = part.owner(scene.points.double().numpy())
    out = {}
    for i in scene.test_idx:
        seen = visible_in(scene.cameras.subset([i]), scene.points.double().numpy())
        if not seen.any():
            continue
        share = np.bincount(owner[seen], minlength=max(b.index for b in part.blocks) + 1) / seen.sum()
        blocks = [int(b) for b in np.flatnonzero(share >= least)]
        if len(blocks) >= 2:
            out[scene.cameras.names[i]] = blocks
    return out


def _write_summary(path: Path, part: Partition, results: list[BlockResult],
                   borders: dict[str, list[int]]) -> None:
    """``blocks.json``: each block's core, photos, points, splats, time and peak memory, and the
    held-out photos that look across a border."""
    from ..fileio import write_text_atomic

    rows = [{"block": r.index, "core": [None if not math.isfinite(x) else x for x in b.core],
             "photos": r.cameras, "points": r.points, "splats": r.splats, "seconds": round(r.seconds, 2),
             "peak_rss_mb": round(r.peak_rss_mb, 1), "finished": not r.interrupted}
            for b, r in zip(part.blocks, results, strict=False)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"blocks": rows, "border_views": borders}, indent=2))
