"""Exposure compensation on a capture whose exposure varies: held-out PSNR with and without.

    python scripts/bench_appearance.py SFM_DIR [--steps 1500] [--resolution 200] [--device cpu]

``SFM_DIR`` is an SfM output folder (``sparse/0`` + images, e.g. from ``splatkit sfm``). Trains
the ``quick`` preset's schedule at ``--resolution`` for ``--steps`` steps twice, with
``appearance=none`` and ``appearance=bilagrid`` (same seed), and prints per run the held-out
PSNR/SSIM (test photos rendered plainly: they have no grid) and the colour-corrected PSNR/SSIM
(Zip-NeRF's per-image colour fit, as gsplat's simple_trainer reports with its bilateral grid),
splats and training seconds, with the command line, machine, load average and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def run(scene, appearance: str, steps: int, resolution: int, device: str, out: Path) -> dict:
    from splatkit.config import preset_config
    from splatkit.evaluate import evaluate
    from splatkit.render import select_renderer
    from splatkit.train import train
    from splatkit.train.appearance import corrected_scores

    cfg = preset_config("quick").train
    cfg.steps, cfg.resolution, cfg.appearance = steps, resolution, appearance
    cfg.refine_stop = min(cfg.refine_stop, int(steps * 0.75))
    cfg.eval_every = cfg.checkpoint_every = 0
    renderer = select_renderer(device)
    t0 = time.perf_counter()
    res = train(scene, cfg, out, renderer)
    wall = time.perf_counter() - t0
    ev = evaluate(res.splats, scene, resolution, renderer.name, renderer.device)
    row = {"appearance": appearance, "steps": steps, "resolution": resolution,
           "psnr": round(ev.psnr, 3), "ssim": round(ev.ssim, 4),
           **{k: round(v, 3) for k, v in corrected_scores(ev).items()},
           "views": ev.num_views, "splats": len(res.splats), "train_seconds": round(wall, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sfm", type=Path)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--resolution", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_appearance"))
    a = ap.parse_args()
    from splatkit.sfm import load_scene

    scene = load_scene(a.sfm)
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"scene: {len(scene.train_idx)} training, {len(scene.test_idx)} held-out photos")
    rows = [run(scene, app, a.steps, a.resolution, a.device, a.out / app) for app in ("none", "bilagrid")]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| appearance | held-out PSNR | SSIM | colour-corrected PSNR | cc SSIM | splats | train |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['appearance']} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['cc_psnr']:.2f} dB | "
              f"{r['cc_ssim']:.3f} | {r['splats']:,} | {r['train_seconds']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
