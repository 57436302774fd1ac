"""Training a large capture block by block: each block is an ordinary training run.

One block at a time holds memory: its photos, its splats and its optimiser. A finished block's
splats are written to ``<block folder>/splats.pt`` (atomically) and released, so peak memory
follows the largest block, not the capture. A block interrupted or killed resumes from its own
checkpoints (``<block folder>/checkpoints``); a finished block is not trained again.

The same function trains one block in-process and inside a Ray task (:mod:`.ray_dispatch`).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, tiered
from ..events import NULL_BUS, EventBus, Message
from ..scene import Scene
from ..splats import Splats
from .partition import Block, BlockConfig, Partition, merge, partition

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


def block_scene(scene: Scene, block: Block) -> Scene:
    """The block's own scene: the training cameras that see it and the SfM points in its bounds
    (never a held-out photo: those score the merged scene)."""
    held_out = set(scene.test_idx)
    idx = [int(i) for i in block.camera_idx if int(i) not in held_out]
    pts = torch.as_tensor(block.point_idx, dtype=torch.long)
    return Scene(scene.cameras.subset(idx), scene.image_dir, scene.points[pts], scene.point_colors[pts],
                 train_idx=list(range(len(idx))), test_idx=[])


def split_scene(scene: Scene, up: np.ndarray, cfg: BlockConfig) -> Partition:
    """The scene's blocks (held-out cameras count for the split but train nothing)."""
    return partition(scene.cameras, scene.points.double().numpy(), up, cfg)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux and macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


def _save_splats(splats: Splats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".splats-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in splats.as_dict().items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
                       len(result.splats), time.perf_counter() - t0, peak_rss_mb(), result.interrupted)


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
