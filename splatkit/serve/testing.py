"""Test hook of the classroom server: a stand-in for training (see :mod:`splatkit.serve.runner`).

``SPLATKIT_SERVE_JOB_FN=splatkit.serve.testing:stub_job`` makes each Ray task run :func:`stub_job`
instead of ``run_train``: it writes the same kinds of events to ``OUT/events.jsonl`` (stage, train
steps, PSNR), a step "checkpoint" it resumes from, a preview PNG and a ``scene.ply`` placeholder,
and appends one line per finished run to ``DATA/executions.log`` (the tests count them: every job
must finish exactly once). ``$SPLATKIT_STUB_STEP_S`` (default 0.05) is the time per step,
``$SPLATKIT_STUB_STEPS`` (default 10) the number of steps of the ``tiny`` and ``quick`` presets;
longer presets take :data:`PRESET_FACTOR` times as many, as training does. Used by the load, fault,
scale-out and limit tests; the API and browser tests run the real pipeline.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..events import EvalResult, Event, Message, StageStarted, TrainStep
from ..rundir import RunDir


def _emit(out: Path, event: Event) -> None:
    with open(RunDir(out).events, "a", encoding="utf-8") as f:
        f.write(event.to_json() + "\n")


PRESET_FACTOR = {"standard": 20, "full": 60}


def stub_job(spec: dict, stop_flag) -> str:
    out = Path(spec["out_dir"])
    step_s = float(os.environ.get("SPLATKIT_STUB_STEP_S", "0.05"))
    steps = int(os.environ.get("SPLATKIT_STUB_STEPS", "10")) * PRESET_FACTOR.get(spec["preset"], 1)
    rd = RunDir(out)
    ck = rd.checkpoints / "step.txt"
    ck.parent.mkdir(parents=True, exist_ok=True)
    start = int(ck.read_text()) if ck.exists() else 0
    _emit(out, StageStarted(stage="train", detail=f"stub, from step {start}"))
    for step in range(start + 1, steps + 1):
        if stop_flag():
            return "interrupted"
        time.sleep(step_s)
        _emit(out, TrainStep(step=step, total_steps=steps, loss=1.0 / step, num_splats=100,
                             eta_seconds=(steps - step) * step_s, seconds_per_step=step_s))
        ck.write_text(str(step))
    _emit(out, EvalResult(step=steps, psnr=20.0, ssim=0.5))
    from PIL import Image

    rd.previews.mkdir(exist_ok=True)
    Image.new("RGB", (32, 16), (40, 120, 200)).save(rd.previews / "0000.png")
    rd.scene_ply.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nend_header\n")
    _emit(out, Message(stage="done", text="stub finished"))
    line = json.dumps({"job": spec["job_id"], "attempt": spec["attempt"], "pid": os.getpid(),
                       "resumed_from": start, "t": time.time()})
    with open(out.parents[2] / "executions.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return "done"
