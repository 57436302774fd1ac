"""Memory of the training photos at each preset's resolution, and the GPU estimate.

    python scripts/bench_train_memory.py _runs/bench_sfm/south_building_128_1600_incremental/sfm

For a scene folder (``sparse/0`` + ``images``, as ``splatkit sfm`` writes it) and each preset:
the training resolution, how the photos are held (:class:`splatkit.views.TrainImages`:
uint8, lazily beyond its byte budget), the bytes held against float32 photos, this process's
resident memory after loading them (and its peak, ``VmHWM``), the time to load them, and the
GPU memory estimate that training checks before it starts (``splatkit.train.memory``). Each
preset is measured in a fresh process, so the peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(scene_dir: Path, preset: str) -> dict:
    from splatkit.config import preset_config
    from splatkit.sfm import load_scene
    from splatkit.train.memory import estimate_bytes
    from splatkit.views import load_images, scaled_cameras

    cfg = preset_config(preset).train
    scene = load_scene(scene_dir)
    cams = scaled_cameras(scene.cameras, cfg.resolution)
    rss0 = _status_kib("VmRSS") * 1024
    t = time.time()
    images = load_images(scene, scene.train_idx, cams)
    for k in range(len(images)):  # use each once, as the first epoch does
        images[k]
    seconds = time.time() - t
    pixels = [int(cams.width[i]) * int(cams.height[i]) for i in scene.train_idx]
    splats = max(scene.points.shape[0] * 10, 100_000)
    splats = min(splats, cfg.max_splats)
    i0 = scene.train_idx[0]
    return {
        "preset": preset, "resolution": cfg.resolution,
        "size": f"{int(cams.width[i0])}x{int(cams.height[i0])}", "photos": len(images),
        "lazy": images.lazy, "held": images.held_bytes, "float32": 4 * images.total_bytes,
        "rss_before": rss0, "rss_after": _status_kib("VmRSS") * 1024,
        "peak": _status_kib("VmHWM") * 1024, "seconds": seconds,
        "gpu_estimate": estimate_bytes(pixels, splats), "splats_assumed": splats,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", type=Path)
    ap.add_argument("--presets", nargs="*", default=["quick", "standard", "full"])
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one preset, JSON out
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.scene, a.one)))
        return 0
    print("command: python scripts/bench_train_memory.py " + " ".join(sys.argv[1:]))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| preset | resolution | photo size | train photos | held as | held | as float32 | RSS after "
          "load | peak RSS | load time | GPU estimate (splats assumed) |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|")
    for p in a.presets:
        out = subprocess.run([sys.executable, __file__, str(a.scene), "--one", p], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {p} | {r['resolution']} | {r['size']} | {r['photos']} | "
              f"{'uint8, lazy' if r['lazy'] else 'uint8'} | {r['held'] / GIB:.3f} GiB | "
              f"{r['float32'] / GIB:.3f} GiB | {r['rss_after'] / GIB:.2f} GiB | {r['peak'] / GIB:.2f} GiB "
              f"| {r['seconds']:.1f} s | {r['gpu_estimate'] / GIB:.2f} GiB ({r['splats_assumed']:,}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
