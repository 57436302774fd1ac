"""Blocks as Ray tasks: one block per worker (or GPU), on a local Ray or an existing cluster.

Each task runs :func:`splatkit.blocks.driver.train_block` on a block folder that every node can
reach (a shared file system on a cluster; the local disk on one machine). A task that fails or
whose worker is lost is retried by Ray (``max_retries``) and resumes from the block's own
checkpoints; a finished block is never trained twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import BlocksConfig, RunConfig
from ..scene import Scene
from .driver import BlockDispatch, BlockResult, train_block
from .partition import Partition


@dataclass(frozen=True)
class RayBlocksConfig:
    """Where the blocks run when Ray runs them."""

    address: str | None = None
    """An existing Ray cluster (``ray://host:10001`` or ``auto``); None starts a local Ray."""
    workers: int = 2
    """Blocks trained at once on a local Ray (each with ``cpus_per_block`` CPU threads)."""
    cpus_per_block: int = 1
    """CPU threads each block's training uses (numba and torch)."""
    gpus_per_block: float = 0.0
    """GPUs each block asks for (1 on a GPU cluster: one block per GPU)."""
    max_retries: int = 2
    """Times a failed or lost block is tried again (it resumes from its checkpoints)."""


def _block_task(scene: Scene, part: Partition, index: int, cfg: RunConfig, folder: str,
                device: str, threads: int, run_id: str, explicit: frozenset[str]) -> BlockResult:
    import numba
    import torch

    from ..render import select_renderer

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(max(1, threads))
    block = next(b for b in part.blocks if b.index == index)
    return train_block(scene, block, cfg, Path(folder), select_renderer(device), run_id=run_id,
                       explicit=explicit)


def train_blocks_ray(scene: Scene, part: Partition, cfg: RunConfig, folders: list[Path], device: str,
                     rcfg: RayBlocksConfig, run_id: str = "",
                     explicit: frozenset[str] = frozenset()) -> list[BlockResult]:
    """Train every block as a Ray task; returns the blocks' results in block order."""
    import ray

    started_here = False
    if not ray.is_initialized():
        if rcfg.address:
            ray.init(address=rcfg.address, namespace="splatkit-blocks", log_to_driver=False)
        else:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            ray.init(address=None, include_dashboard=False, num_cpus=rcfg.workers * rcfg.cpus_per_block,
                     namespace="splatkit-blocks", log_to_driver=False,
                     object_store_memory=200 * 1024 * 1024)
        started_here = True
    try:
        task = ray.remote(max_retries=rcfg.max_retries, retry_exceptions=True)(_block_task)
        scene_ref, part_ref = ray.put(scene), ray.put(part)
        refs = [task.options(num_cpus=rcfg.cpus_per_block, num_gpus=rcfg.gpus_per_block).remote(
                    scene_ref, part_ref, b.index, cfg, str(f), device, rcfg.cpus_per_block, run_id, explicit)
                for b, f in zip(part.blocks, folders, strict=True)]
        return list(ray.get(refs))
    finally:
        if started_here:
            ray.shutdown()


def ray_dispatcher(b: BlocksConfig, device: str, run_id: str = "",
                   explicit: frozenset[str] = frozenset()) -> BlockDispatch:
    """The blocks' dispatch for :func:`splatkit.blocks.driver.train_in_blocks` when
    ``b.ray_address`` is set: ``local`` starts a Ray on this machine, else the cluster there."""
    address = None if b.ray_address == "local" else b.ray_address
    rcfg = RayBlocksConfig(address, b.ray_workers, b.ray_cpus_per_block, b.ray_gpus_per_block)

    def dispatch(scene: Scene, part: Partition, cfg: RunConfig, folders: list[Path]) -> list[BlockResult]:
        return train_blocks_ray(scene, part, cfg, folders, device, rcfg, run_id, explicit)

    return dispatch
