"""GPU benchmark: splatkit (gsplat backend) beside gsplat's own simple_trainer, and quick CPU vs GPU.

Two modes:

  # here (any machine with pycolmap): pack an SfM output folder (images/ + sparse/0) for the GPU box
  python scripts/bench_gpu.py pack _runs/bench_sfm/fox_800/sfm .device/data/fox_800

  # on the GPU machine: train with splatkit's one training loop on CUDA and print the figures
  python scripts/bench_gpu.py run .device/data/fox_800 --steps 3000 --resolution 800

``run`` prints held-out PSNR/SSIM (INRIA split: every 8th image by name), splat count, training
wall time and peak GPU memory, then the same for the ``quick`` preset, with the command line.
The scene is packed so that the GPU machine needs no pycolmap.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch


def pack(src: Path, dst: Path) -> None:
    from splatkit.sfm import load_scene

    scene = load_scene(src)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "images").mkdir(exist_ok=True)
    for n in scene.cameras.names:
        shutil.copy2(scene.image_dir / n, dst / "images" / n)
    if (src / "sparse" / "0").exists():
        shutil.copytree(src / "sparse" / "0", dst / "sparse" / "0", dirs_exist_ok=True)
    c = scene.cameras
    torch.save(
        {
            "names": c.names, "K": c.K, "world_to_cam": c.world_to_cam, "width": c.width,
            "height": c.height, "points": scene.points, "point_colors": scene.point_colors,
            "train_idx": scene.train_idx, "test_idx": scene.test_idx,
        },
        dst / "scene.pt",
    )  # fmt: skip
    print(f"packed {len(c)} cameras, {scene.points.shape[0]} points into {dst}")


def load_packed(d: Path):
    from splatkit.scene import Cameras, Scene

    p = torch.load(d / "scene.pt", weights_only=False)
    cams = Cameras(p["names"], p["K"], p["world_to_cam"], p["width"], p["height"])
    return Scene(cams, d / "images", p["points"], p["point_colors"], p["train_idx"], p["test_idx"])


def run_one(scene, preset: str, steps: int | None, resolution: int | None, device: str, out: Path):
    from splatkit.config import preset_config
    from splatkit.evaluate import evaluate
    from splatkit.train import train

    cfg = preset_config(preset).train
    if steps:
        cfg.steps = steps
        cfg.refine_stop = min(cfg.refine_stop, steps // 2)
    if resolution:
        cfg.resolution = resolution
    cfg.eval_every = 0
    cfg.checkpoint_every = 0
    backend = "gsplat" if device == "cuda" else "cpu"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = train(scene, cfg, out, backend=backend, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    ev = evaluate(res.splats.to(device), scene, cfg.resolution, backend, device)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    row = {
        "preset": preset, "steps": cfg.steps, "resolution": cfg.resolution, "device": device,
        "psnr": round(ev["psnr"], 3), "ssim": round(ev["ssim"], 4), "splats": len(res.splats),
        "train_seconds": round(wall, 1), "peak_gpu_mem_gib": round(mem, 2),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    r = sub.add_parser("run")
    r.add_argument("data", type=Path)
    r.add_argument("--steps", type=int, default=3000)
    r.add_argument("--resolution", type=int, default=800)
    r.add_argument("--preset", default="full")
    r.add_argument("--quick", action="store_true", help="also run the quick preset")
    r.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.src, a.dst)
        return 0
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    if torch.cuda.is_available():
        print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
    print("machine:", platform.platform(), "| date:", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    scene = load_packed(a.data)
    out = Path("/tmp/bench_gpu")
    run_one(scene, a.preset, a.steps, a.resolution, a.device, out / "main")
    if a.quick:
        run_one(scene, "quick", None, None, a.device, out / "quick")
    return 0


if __name__ == "__main__":
    sys.exit(main())
