"""A small synthetic ``splatkit train`` output folder, for report and viewer tests.

Eight cameras on a ring around coloured blobs (COLMAP binary model written by hand, so the test
does not depend on SfM), a ``scene.ply`` of a few hundred splats, metrics, events and previews
rendered with splatkit's own renderer.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

W, H = 160, 120
N_CAMS = 8


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (COLMAP's convention)."""
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


def ring_cameras(n: int = N_CAMS, radius: float = 4.0) -> list[np.ndarray]:
    """World-to-camera (OpenCV) matrices looking at the origin; world up is -y (as in COLMAP)."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        c = np.array([radius * math.sin(a), -1.2, -radius * math.cos(a)])
        z = -c / np.linalg.norm(c)
        x = np.cross(np.array([0.0, 1.0, 0.0]), z)  # y down in the image = +y world
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ c
        out.append(w2c)
    return out


def write_colmap(sparse: Path, w2cs, K: np.ndarray, points: np.ndarray, colors: np.ndarray):
    sparse.mkdir(parents=True, exist_ok=True)
    with open(sparse / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<iiQQ", 1, 1, W, H))  # PINHOLE
        f.write(struct.pack("<4d", K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    with open(sparse / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(w2cs)))
        for i, m in enumerate(w2cs):
            q = _rotmat_to_qvec(m[:3, :3])
            f.write(struct.pack("<i4d3di", i + 1, *q, *m[:3, 3], 1))
            f.write(f"{i + 1:04d}.jpg".encode() + b"\0")
            f.write(struct.pack("<Q", 0))
    with open(sparse / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for i, (p, c) in enumerate(zip(points, colors, strict=True)):
            f.write(struct.pack("<Q3d3BdQ", i + 1, *p, *c, 0.5, 0))


def blob_splats(seed: int = 0):
    from splatkit.splats import Splats, rgb_to_sh0

    g = torch.Generator().manual_seed(seed)
    n = 400
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    means[:, 1] *= 0.6
    rgb = torch.rand(n, 3, generator=g) * 0.8 + 0.1
    return Splats(
        means=means,
        log_scales=torch.full((n, 3), math.log(0.06)) + 0.3 * torch.randn(n, 3, generator=g),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1),
        opacity_logits=torch.full((n,), 2.0),
        sh0=rgb_to_sh0(rgb)[:, None, :],
        shN=torch.zeros(n, 0, 3),
    )


def intrinsics() -> np.ndarray:
    # principal point off centre on purpose: the viewer must honour it
    return np.array([[150.0, 0, 83.0], [0, 150.0, 57.0], [0, 0, 1]])


def render_view(splats, w2c: np.ndarray, K: np.ndarray, backend: str = "cpu") -> np.ndarray:
    """uint8 [H, W, 3] render by splatkit's own renderer (black background)."""
    from splatkit.render import RenderSettings, View, get_renderer

    render = get_renderer(backend)
    view = View(torch.tensor(w2c, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), W, H)
    with torch.no_grad():
        out = render(splats, view, RenderSettings(sh_degree=0))
    img = out.image.clamp(0, 1).numpy()
    return (img * 255 + 0.5).astype(np.uint8)


def make_fake_run(out: Path) -> Path:
    from splatkit.export.ply import write_ply

    out.mkdir(parents=True, exist_ok=True)
    K = intrinsics()
    w2cs = ring_cameras()
    splats = blob_splats()
    pts = splats.means.numpy().astype(np.float64)
    cols = (np.clip(0.5 + 0.28209479 * splats.sh0[:, 0].numpy(), 0, 1) * 255).astype(np.uint8)
    write_colmap(out / "sparse" / "0", w2cs, K, pts, cols)
    write_ply(splats, out / "scene.ply")
    (out / "config.json").write_text(json.dumps({"preset": "quick"}))

    names = [f"{i + 1:04d}.jpg" for i in range(N_CAMS)]
    test = [names[0]]  # INRIA rule: every 8th by name
    per_image = [{"name": n, "psnr": 20.0 + i, "ssim": 0.7 + 0.01 * i} for i, n in enumerate(test)]
    (out / "previews").mkdir(exist_ok=True)
    for n in test:
        img = render_view(splats, w2cs[0], K)
        Image.fromarray(np.concatenate([img, img], axis=1)).save(out / "previews" / f"{n[:-4]}.png")
    metrics = {
        "psnr": 20.0, "ssim": 0.7, "per_image": per_image, "steps": 300,
        "num_splats": len(splats), "device": "cpu", "backend": "cpu", "preset": "quick",
        "resolution": W,
        "images": {"input": 10, "used": 9, "skipped": [{"name": "blurry.jpg",
                                                        "reason": "too small (40x30 px)"}],
                   "registered": 8, "unregistered": ["0009.jpg"], "train": 7, "test": 1},
        "seconds": {"ingest": 0.5, "sfm": 10.0, "train": 60.0, "evaluate": 2.0, "export": 0.1,
                    "total": 72.6},
        "versions": {"splatkit": "0.1.0", "python": "3.11"},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    ev = [{"kind": "stage_started", "stage": "train", "time": 0.0, "detail": ""}]
    for s in range(10, 301, 10):
        ev.append({"kind": "train_step", "step": s, "total_steps": 300, "loss": 0.3 / (1 + s / 50),
                   "num_splats": 400, "eta_seconds": 1.0, "seconds_per_step": 0.2, "time": s})
        if s % 100 == 0:
            ev.append({"kind": "eval", "step": s, "psnr": 14 + s / 50, "ssim": 0.5, "time": s})
    ev.append({"kind": "message", "stage": "ingest", "text": "skipped blurry.jpg",
               "level": "warning", "time": 1.0})
    with open(out / "events.jsonl", "w") as f:
        for e in ev:
            f.write(json.dumps(e) + "\n")
        f.write('{"kind": "train_step", "step": 3')  # a truncated last line (crash) is tolerated
    return out


REPO = Path(__file__).resolve().parents[1]
#: Steps of the real test run: enough for a recognisable scene, short on a 2-core CPU.
REAL_STEPS = 300
#: Longest side of the photos copied for the real run (small: the run is part of CI).
REAL_PHOTO_SIZE = 480


def real_photos(tmp_path_factory) -> Path:
    """strecha_fountain_p11's 11 photos downscaled to 480 px, in a session temp folder."""
    from PIL import Image

    src = REPO.parent / "shared" / "datasets" / "strecha_fountain_p11" / "images"
    dst = tmp_path_factory.getbasetemp() / "fountain photos"
    if not dst.exists():
        if not src.is_dir():
            import pytest

            pytest.skip(f"shared datasets not found at {src}")
        dst.mkdir()
        for f in sorted(src.glob("*.jpg")):
            im = Image.open(f)
            im.thumbnail((REAL_PHOTO_SIZE, REAL_PHOTO_SIZE), Image.LANCZOS)
            im.save(dst / f.name, quality=95)
    return dst


def real_run(tmp_path_factory) -> Path:
    """A real ``splatkit train`` (quick preset, 300 steps) of a real photo set, once per session.

    The photos are strecha_fountain_p11 from ``../shared/datasets`` at 480 px, run through the
    CLI exactly as a user would. ``SPLATKIT_TEST_RUN=/path/to/OUT`` reuses a finished output
    folder instead.
    """
    import os
    import subprocess
    import sys

    env = os.environ.get("SPLATKIT_TEST_RUN")
    if env:
        return Path(env)
    photos = real_photos(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "fountain-run"
    if not (out / "metrics.json").exists():
        cmd = [sys.executable, "-m", "splatkit", "train", str(photos),
               "-o", str(out), "--preset", "quick", "--steps", str(REAL_STEPS), "--quiet"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return out
