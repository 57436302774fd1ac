"""A large synthetic capture with known poses, rendered from a trained run.

    python scripts/make_large_capture.py RUN --views 5000 -o OUT [--width 320] [--seed 0]

RUN is a finished ``splatkit train`` folder (``scene.ply`` + ``sparse/0``). The views walk
``--loops`` times around the run's own camera path (ordered by angle around the cameras' centre
on the ground plane), each loop at another distance and height, looking at the scene's centre
with a little yaw; each view is rendered from ``scene.ply`` by splatkit's CPU renderer.

OUT becomes a COLMAP project that ``splatkit train OUT`` reads as it is (SfM skipped):
``images/NNNNNN.jpg``, ``sparse/0/{cameras,images,points3D}.txt`` (one PINHOLE camera, the run's
SfM points); ``OUT/images`` alone is a photo set for SfM timing. Prints one row per 500 views
and the total time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from splatkit.export.ply import read_ply
from splatkit.render import RenderSettings, View, make_renderer
from splatkit.sfm.loaders import load_scene
from splatkit.up import estimate_up


def _rotation_to_qvec(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (COLMAP's image quaternion)."""
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


def look_at(center: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera, OpenCV axes (x right, y down, z forward)."""
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ center
    return M


def path(centers: np.ndarray, up: np.ndarray, target: np.ndarray, views: int, loops: int,
         seed: int) -> list[np.ndarray]:
    """``views`` world-to-camera matrices along ``loops`` loops around the cameras' path."""
    g = np.random.default_rng(seed)
    rel = centers - target
    flat = rel - np.outer(rel @ up, up)
    u = flat[np.argmax(np.linalg.norm(flat, axis=1))]
    u /= np.linalg.norm(u)
    v = np.cross(up, u)
    order = np.argsort(np.arctan2(flat @ v, flat @ u))
    ring = centers[order]
    extent = float(np.linalg.norm(flat, axis=1).max())
    out = []
    for k in range(views):
        t = k / views * loops
        loop, frac = int(t), t - int(t)
        pos = frac * len(ring)
        a, b = ring[int(pos) % len(ring)], ring[(int(pos) + 1) % len(ring)]
        c = a + (pos - int(pos)) * (b - a)
        radial = (c - target) - ((c - target) @ up) * up
        scale = 1.0 + 0.15 * math.sin(2 * math.pi * (loop / max(loops, 1)) + 0.3)
        height = 0.05 * extent * math.sin(2 * math.pi * loop / max(loops, 1) * 2)
        cam = target + ((c - target) @ up) * up + scale * radial + height * up
        yaw = math.radians(g.normal(0, 6))
        look = target + 0.15 * extent * (math.sin(yaw) * np.cross(up, radial / np.linalg.norm(radial)))
        out.append(look_at(cam, look, up))
    return out


def write_colmap_text(sparse: Path, w2cs, K: np.ndarray, W: int, H: int, points, colors) -> None:
    sparse.mkdir(parents=True, exist_ok=True)
    (sparse / "cameras.txt").write_text(
        f"# Camera list\n1 PINHOLE {W} {H} {float(K[0, 0])!r} {float(K[1, 1])!r} {float(K[0, 2])!r} "
        f"{float(K[1, 2])!r}\n")
    lines = ["# Image list: IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then its (empty) 2D points"]
    for i, M in enumerate(w2cs):
        q, t = _rotation_to_qvec(M[:3, :3]), M[:3, 3]
        lines.append(f"{i + 1} {' '.join(repr(float(x)) for x in (*q, *t))} 1 {i:06d}.jpg")
        lines.append("")
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    pts = ["# 3D point list: POINT3D_ID X Y Z R G B ERROR TRACK[]"]
    for i, (p, c) in enumerate(zip(points, colors, strict=True)):
        x, y, z = (float(v) for v in p)
        pts.append(f"{i + 1} {x!r} {y!r} {z!r} {int(c[0])} {int(c[1])} {int(c[2])} 0.5")
    (sparse / "points3D.txt").write_text("\n".join(pts) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--views", type=int, default=5000)
    ap.add_argument("--loops", type=int, default=0, help="loops around the path (0: views / 250)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    scene = load_scene(a.run)
    splats = read_ply(a.run / "scene.ply")
    cams = scene.cameras
    up = estimate_up(cams.world_to_cam.double(), cams.centers.double(), scene.points).vector.numpy()
    centers = cams.centers.double().numpy()
    target = np.median(scene.points.double().numpy(), axis=0)
    loops = a.loops or max(1, a.views // 250)
    w2cs = path(centers, up, target, a.views, loops, a.seed)
    W = a.width
    H = int(round(W * float(cams.height[0]) / float(cams.width[0])))
    K = cams.K[0].double().numpy() * (W / float(cams.width[0]))
    K[2, 2] = 1.0
    (a.out / "images").mkdir(parents=True, exist_ok=True)
    render = make_renderer("cpu")
    settings = RenderSettings(sh_degree=splats.sh_degree)
    t0 = time.perf_counter()
    for i, M in enumerate(w2cs):
        view = View(torch.from_numpy(M).float(), torch.from_numpy(K).float(), W, H)
        img = render(splats, view, settings).image.clamp(0, 1).numpy()
        out = a.out / "images" / f"{i:06d}.jpg"
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(out, quality=92)
        if (i + 1) % 500 == 0:
            print(f"views {i + 1:6d}  seconds {time.perf_counter() - t0:8.1f}", flush=True)
    cols = (scene.point_colors.numpy() * 255).round().clip(0, 255)
    write_colmap_text(a.out / "sparse" / "0", w2cs, K, W, H, scene.points.double().numpy(), cols)
    print(f"wrote {len(w2cs)} views ({W}x{H}) and {len(scene.points)} points to {a.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    print("command: python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
