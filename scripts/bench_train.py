"""Train on a real SfM output folder and print seconds per step, splat count and held-out PSNR.

Usage (the folder holds ``sparse/0`` and ``images/``, as written by ``splatkit sfm``)::

    python scripts/bench_train.py OUT_DIR --preset quick --steps 2000 --resolution 320 \
        --backend cpu --threads 1 --work /tmp/bench

Compare with the OpenSplat CPU anchor (shared/notes/cpu-anchor.md): same images, poses,
resolution, held-out views and step count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from splatkit.config import preset_config
from splatkit.evaluate import evaluate
from splatkit.events import EventBus
from splatkit.sfm import load_scene
from splatkit.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scene_dir", type=Path)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--strategy", choices=("default", "mcmc"))
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--work", type=Path, default=Path("bench_out"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = preset_config(args.preset).train
    over = {k: getattr(args, k) for k in ("steps", "resolution", "strategy") if getattr(args, k)}
    cfg = dataclasses.replace(cfg, **over)
    scene = load_scene(args.scene_dir)
    print(f"scene: {len(scene.cameras)} cameras ({len(scene.train_idx)} train, "
          f"{len(scene.test_idx)} test), {scene.points.shape[0]} points")  # fmt: skip

    bus = EventBus()
    every = max(1, cfg.steps // 10)

    def show(e) -> None:
        if e.kind == "train_step" and e.step % every == 0:
            line = f"step {e.step:6d}  loss {e.loss:.4f}  splats {e.num_splats:7d}  "
            line += f"{e.seconds_per_step:.3f} s/step  eta {e.eta_seconds:.0f} s"
            print(line, flush=True)
        elif e.kind == "eval":
            print(f"eval @ {e.step}: PSNR {e.psnr:.2f} dB  SSIM {e.ssim:.3f} (subset)", flush=True)

    bus.subscribe(show)
    t = time.perf_counter()
    res = train(scene, cfg, args.work, args.backend, args.device, bus=bus)
    train_s = time.perf_counter() - t
    ev = evaluate(res.splats, scene, cfg.resolution, args.backend, args.device, keep_images=False)
    out = {
        "steps": res.steps_done,
        "resolution": ev.resolution,
        "train_seconds": round(train_s, 1),
        "seconds_per_step": round(train_s / max(res.steps_done, 1), 4),
        "splats": len(res.splats),
        "psnr": round(ev.psnr, 3),
        "ssim": round(ev.ssim, 4),
        "test_views": ev.num_views,
        "torch_threads": torch.get_num_threads(),
        "backend": args.backend,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
