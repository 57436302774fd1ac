"""GPU benchmark: splatkit (gsplat backend) beside gsplat's own simple_trainer, and quick CPU vs GPU.

Modes:

  # here (any machine with pycolmap): pack an SfM output folder (images/ + sparse/0) for the GPU box
  python scripts/bench_gpu.py pack _runs/bench_sfm/fox_800/sfm .device/data/fox_800

  # here: copy gsplat v1.5.3's simple_trainer (from a gsplat git checkout) into
  # .device/gsplat_examples, patched to run offline with splatkit's SSIM (see gpu_session.sh)
  python scripts/bench_gpu.py prepare-trainer /path/to/gsplat-checkout

  # on the GPU machine: train with splatkit's one training loop on CUDA and print the figures
  python scripts/bench_gpu.py run .device/data/fox_800 --steps 3000 --resolution 800

  # on the GPU machine: the whole comparison plan in priority order under a time budget; every
  # figure goes to OUT/results.json and OUT/results.md after each job (scripts/gpu_session.sh)
  python scripts/bench_gpu.py session --out $OUT --budget 540 [--only NAME ...] [--dry-run]

``run`` prints held-out PSNR/SSIM (INRIA split: every 8th image by name), splat count, training
wall time and peak GPU memory, then the same for the ``quick`` preset, with the command line.
The scene is packed so that the GPU machine needs no pycolmap. ``session`` runs :data:`PLAN`
(see :mod:`bench_gpu_plan`), skipping a job whose time estimate exceeds what is left.
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


def run_one(scene, preset: str, steps: int | None, resolution: int | None, device: str, out: Path,
            refine_stop: int | None = None, overrides: dict | None = None):
    from splatkit.config import preset_config
    from splatkit.evaluate import evaluate
    from splatkit.train import train

    cfg = preset_config(preset).train
    if steps:
        cfg.steps = steps
        # the historical rows cap densification at half the steps; --refine-stop sets it exactly
        cfg.refine_stop = min(cfg.refine_stop, steps // 2) if refine_stop is None else refine_stop
    if resolution:
        cfg.resolution = resolution
    for k, v in (overrides or {}).items():
        old = getattr(cfg, k)
        setattr(cfg, k, v in ("1", "true", "True") if isinstance(old, bool) else type(old)(v))
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
        "psnr": round(ev.psnr, 3), "ssim": round(ev.ssim, 4), "splats": len(res.splats),
        "train_seconds": round(wall, 1), "peak_gpu_mem_gib": round(mem, 2),
        "refine_stop": cfg.refine_stop, "overrides": overrides or {},
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
    r.add_argument("--refine-stop", type=int, default=None, help="last densification step (default: "
                   "the preset's, capped at half the steps as in the first GPU rows)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train setting, e.g. --set reset_every=1000000000")
    r.add_argument("--json", type=Path, default=None, help="also write the row to this file")
    t = sub.add_parser("prepare-trainer")
    t.add_argument("gsplat_checkout", type=Path)
    t.add_argument("--dst", type=Path, default=Path(".device/gsplat_examples"))
    t.add_argument("--tag", default="v1.5.3")
    from bench_gpu_plan import add_session_args

    add_session_args(sub.add_parser("session"))
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.src, a.dst)
        return 0
    if a.cmd == "prepare-trainer":
        from bench_gpu_plan import prepare_trainer

        prepare_trainer(a.gsplat_checkout, a.dst, a.tag)
        return 0
    if a.cmd == "session":
        from bench_gpu_plan import session

        return session(a)
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    if torch.cuda.is_available():
        print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
    print("machine:", platform.platform(), "| date:", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    scene = load_packed(a.data)
    out = Path("/tmp/bench_gpu")
    overrides = dict(kv.split("=", 1) for kv in a.set)
    row = run_one(scene, a.preset, a.steps, a.resolution, a.device, out / "main", a.refine_stop, overrides)
    if a.json:
        a.json.write_text(json.dumps(row))
    if a.quick:
        run_one(scene, "quick", None, None, a.device, out / "quick")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
