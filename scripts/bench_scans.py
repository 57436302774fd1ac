"""Phone-scan exports: their poses used directly against structure from motion on their images.

A Polycam raw-data export is written from a photo set with known cameras (a COLMAP text model,
e.g. Strecha fountain's ground truth): keyframes downscaled to ``--size`` pixels wide, their poses
as ARKit camera-to-world (OpenGL camera axes), optionally disturbed by ``--noise-deg`` degrees and
``--noise-cm`` centimetres (phone tracking drifts), plus a depth map rendered from nothing (not
needed here). Then ``splatkit train EXPORT`` (the export's poses used directly) and ``splatkit
train EXPORT/keyframes/corrected_images`` (SfM on the same images) are run with the same settings.

    python scripts/bench_scans.py --model DATASET/reference_colmap_txt --images DATASET/images \
        --steps 500 [--noise-deg 0.5 --noise-cm 2]

Rows: ``poses psnr ssim sfm_s train_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def read_text_model(model: Path) -> tuple[dict, list]:
    cams = {}
    for line in (model / "cameras.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            p = line.split()
            cams[int(p[0])] = (p[1], int(p[2]), int(p[3]), [float(v) for v in p[4:]])
    text = (model / "images.txt").read_text().splitlines()
    lines = [x for x in text if x.strip() and not x.startswith("#")]
    images = []
    for line in lines:
        p = line.split()
        if len(p) >= 10 and p[9].lower().endswith((".jpg", ".png", ".jpeg")):
            q = [float(v) for v in p[1:5]]
            R = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
            w2c = np.eye(4)
            w2c[:3, :3], w2c[:3, 3] = R, [float(v) for v in p[5:8]]
            images.append((p[9], int(p[8]), w2c))
    return cams, images


def write_polycam(a, out: Path) -> None:
    cams, images = read_text_model(a.model)
    kf = out / "keyframes"
    for d in ("corrected_images", "corrected_cameras"):
        (kf / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (name, cid, w2c) in enumerate(sorted(images)):
        model, w, h, params = cams[cid]
        fx, fy, cx, cy = params if model == "PINHOLE" else (params[0], params[0], params[1], params[2])
        s = a.size / w
        im = Image.open(a.images / name).convert("RGB")
        im = im.resize((a.size, round(h * s)), Image.Resampling.LANCZOS)
        stem = f"{i:05d}"
        im.save(kf / "corrected_images" / f"{stem}.jpg", quality=95)
        c2w = np.linalg.inv(w2c)
        if a.noise_deg or a.noise_cm:
            turn = Rotation.from_rotvec(rng.normal(size=3) * np.radians(a.noise_deg) / np.sqrt(3))
            c2w[:3, :3] = turn.as_matrix() @ c2w[:3, :3]
            c2w[:3, 3] += rng.normal(size=3) * a.noise_cm / 100 / np.sqrt(3) * a.metres
        gl = c2w @ GL_TO_CV
        cam = {"fx": fx * s, "fy": fy * s, "cx": cx * s, "cy": cy * s, "width": im.size[0],
               "height": im.size[1], "blur_score": 100.0}
        cam |= {f"t_{r}{c}": float(gl[r, c]) for r in range(3) for c in range(4)}
        (kf / "corrected_cameras" / f"{stem}.json").write_text(json.dumps(cam))


def train(src: Path, out: Path, steps: int) -> dict:
    cmd = [sys.executable, "-m", "splatkit", "train", str(src), "-o", str(out), "--preset", "quick",
           "--quiet"]
    if steps:
        cmd += ["--steps", str(steps)]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="COLMAP text model with the known cameras")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "_runs" / "scan_bench")
    ap.add_argument("--size", type=int, default=1024, help="keyframe width (Polycam: 1024)")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: the quick preset's)")
    ap.add_argument("--noise-deg", type=float, default=0.0)
    ap.add_argument("--noise-cm", type=float, default=0.0)
    ap.add_argument("--metres", type=float, default=1.0, help="metres per model unit (for --noise-cm)")
    a = ap.parse_args()
    export = a.out / "polycam_export"
    if not export.exists():
        write_polycam(a, export)
    print("poses psnr ssim sfm_s train_s", flush=True)
    for label, src in (("direct", export), ("sfm", export / "keyframes" / "corrected_images")):
        t = time.time()
        m = train(src, a.out / f"run_{label}", a.steps)
        s = m["seconds"]
        print(f"{label} {m['psnr']:.2f} {m['ssim']:.3f} {s.get('sfm', 0) + s.get('ingest', 0):.0f} "
              f"{s.get('train', 0):.0f}  ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
