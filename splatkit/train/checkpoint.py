"""Training checkpoints: ``out_dir/checkpoints/step_XXXXXX.pt``, written atomically, last 2 kept.

A checkpoint holds everything the next step depends on, so that a resumed run continues bit for
bit: parameters (normalised world), Adam states, the densification strategy's state, the step,
the RNG states (torch, numpy, python, the view-order generator), the configuration, and the id of
the run that wrote it (``.splatkit/run.json``): a resume only ever reads its own run's
checkpoints. Retention keeps the newest ``KEEP`` of the run and never deletes the one just
written. A damaged newest checkpoint (a crash or a full disk mid-write of an older version, a
copy cut short) is skipped with a message in favour of the one before it.
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
from ..rundir import RunDir, as_rundir

KEEP = 2
_NAME = re.compile(r"^step_(\d{6,})\.pt$")


def checkpoint_path(out_dir: RunDir | Path, step: int) -> Path:
    return as_rundir(out_dir).checkpoints / f"step_{step:06d}.pt"


def list_checkpoints(out_dir: RunDir | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``out_dir``, oldest first."""
    d = as_rundir(out_dir).checkpoints
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: RunDir | Path) -> Path | None:
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
    out_dir: RunDir | Path,
    step: int,
    params: torch.nn.ParameterDict,
    optimizers: dict[str, torch.optim.Optimizer],
    strategy_state: dict[str, Any],
    view_order: dict[str, Any],
    cfg: TrainConfig,
    extra: dict[str, Any] | None = None,
    keep: int = KEEP,
    run_id: str = "",
) -> Path:
    """Write ``step_XXXXXX.pt`` atomically, then delete older ones beyond the newest ``keep``
    (never the one just written)."""
    payload = {
        "version": 1,
        "run_id": run_id,
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
    older = [p for s, p in list_checkpoints(out_dir) if s < step]
    for old in older[: max(0, len(older) - (keep - 1))]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: the payload holds numpy/python RNG states (our own files only).
    return torch.load(path, map_location="cpu", weights_only=False)


def load_latest(out_dir: RunDir | Path, run_id: str = "", bus=None) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint of run ``run_id`` (any run's when empty), newest first;
    damaged files and other runs' checkpoints are skipped, each with a message."""
    from ..events import Message

    for _, path in reversed(list_checkpoints(out_dir)):
        try:
            payload = load_checkpoint(path)
            int(payload["step"]), payload["params"], payload["optimizers"]  # noqa: B018
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped the same way
            if bus is not None:
                bus.emit(Message("train", f"Checkpoint {path.name} is damaged ({_short(e)}); "
                                 "using the one before it.", level="warning"))
            continue
        if run_id and payload.get("run_id", run_id) != run_id:
            if bus is not None:
                bus.emit(Message("train", f"Checkpoint {path.name} belongs to another run; skipped.",
                                 level="warning"))
            continue
        return path, payload
    return None


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:80]


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


def resume_conflicts(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Settings of a checkpoint that differ from ``cfg`` and may not change on resume
    (everything but :data:`splatkit.config.SAFE_ON_RESUME`), as ``--option`` names."""
    from ..config import SAFE_ON_RESUME

    return sorted("--" + k.replace("_", "-") for k in config_differences(saved, cfg)
                  if f"train.{k}" not in SAFE_ON_RESUME)
