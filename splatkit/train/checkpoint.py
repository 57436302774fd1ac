"""Training checkpoints: ``out_dir/checkpoints/step_XXXXXX.pt``, written atomically, last 2 kept.

A checkpoint holds everything the next step depends on, so that a resumed run continues bit for
bit: parameters (normalised world), Adam states, the densification strategy's state, the step,
the RNG states (torch, numpy, python, the view-order generator) and the configuration.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..fileio import atomic_path

CHECKPOINT_DIR = "checkpoints"
KEEP = 2
_NAME = re.compile(r"^step_(\d{6,})\.pt$")


def checkpoint_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"step_{step:06d}.pt"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``out_dir``, oldest first."""
    d = Path(out_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(d: dict[str, Any]) -> None:
    torch.set_rng_state(d["torch"])
    np.random.set_state(d["numpy"])
    random.setstate(d["python"])


def _to_cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_cpu(v) for v in x)
    return x


def save_checkpoint(
    out_dir: Path,
    step: int,
    params: torch.nn.ParameterDict,
    optimizers: dict[str, torch.optim.Optimizer],
    strategy_state: dict[str, Any],
    view_order: dict[str, Any],
    cfg: TrainConfig,
    extra: dict[str, Any] | None = None,
    keep: int = KEEP,
) -> Path:
    """Write ``step_XXXXXX.pt`` atomically, then delete all but the newest ``keep``."""
    payload = {
        "version": 1,
        "step": step,
        "params": {k: v.detach().cpu() for k, v in params.items()},
        "optimizers": {k: _to_cpu(o.state_dict()) for k, o in optimizers.items()},
        "strategy_state": _to_cpu(strategy_state),
        "view_order": view_order,
        "rng": rng_states(),
        "config": dataclasses.asdict(cfg),
        "extra": extra or {},
    }
    path = checkpoint_path(out_dir, step)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: the payload holds numpy/python RNG states (our own files only).
    return torch.load(path, map_location="cpu", weights_only=False)


def restore(
    ckpt: dict[str, Any], device: str | torch.device
) -> tuple[torch.nn.ParameterDict, dict[str, Any]]:
    """Parameters (on ``device``) and the strategy state from a checkpoint payload."""
    params = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.to(device)) for k, v in ckpt["params"].items()}
    )
    state = {
        k: (v.to(device) if isinstance(v, torch.Tensor) else v)
        for k, v in ckpt["strategy_state"].items()
    }
    return params, state


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    now = dataclasses.asdict(cfg)
    return sorted(k for k in now if k in saved and saved[k] != now[k])
