"""360 input benchmark: a synthetic 360 walk rendered from a trained scene, placed as a rig.

The trained splats (a run folder's ``scene.ply``, or its latest checkpoint; those inside the box of
its sparse points, :func:`crop_to_points`) are rendered into
equirectangular frames with known poses along the path of the run's own cameras: six 90-degree
cube faces per frame with splatkit's CPU rasterizer, assembled into the panorama by the frame
conventions of :mod:`splatkit.pano.equirect`. Then ``splatkit``'s 360 path (views cut, rig SfM)
places them; the rotation of every frame relative to the first is compared with the known one.
With ``--train`` the whole ``splatkit train FRAMES`` runs after (held-out PSNR of the views).

    python scripts/bench_pano.py --run RUN --frames 12 --width 2048 [--layout cube5] [--approach 0.4] \
        [--train] [--steps N]

Rows: ``layout frames registered rot_err_median_deg rot_err_max_deg cut_s sfm_s s_per_frame``
(and ``psnr train_s`` with ``--train``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from splatkit.config import RunConfig  # noqa: E402
from splatkit.pano.equirect import LAYOUTS, rays_from_pixels, sample_bilinear, view_rotation  # noqa: E402
from splatkit.render import RenderSettings, View  # noqa: E402
from splatkit.sfm.loaders import load_scene  # noqa: E402

#: cube faces as (yaw, pitch): front, right, back, left, up, down
FACES = ((0, 0), (90, 0), (180, 0), (270, 0), (0, 90), (0, -90))


def load_splats(run: Path):
    from splatkit.export.ply import read_ply

    if (run / "scene.ply").is_file():
        return read_ply(run / "scene.ply")
    from splatkit.train.checkpoint import latest_checkpoint, load_checkpoint
    from splatkit.train.optim import params_to_splats
    from splatkit.views import WorldNorm

    ck = load_checkpoint(latest_checkpoint(run))
    norm = WorldNorm(ck["extra"]["norm_center"], float(ck["extra"]["norm_scale"]))
    return norm.splats_to_world(params_to_splats(ck["params"]))


def crop_to_points(splats, scene, margin: float = 0.1):
    """The splats inside the box of the sparse points (2-98 percentiles, ``margin`` wider): the
    floaters a quickly trained scene leaves in front of its cameras would fill the panoramas."""
    from splatkit.splats import Splats

    p = scene.points.double().numpy()
    lo, hi = np.percentile(p, 2, 0), np.percentile(p, 98, 0)
    lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
    m = splats.means.detach().double().numpy()
    keep = torch.from_numpy(((m >= lo) & (m <= hi)).all(1))
    d = splats.detach().as_dict()
    return Splats(**{k: v[keep] for k, v in d.items()})


def walk_poses(scene, n: int, approach: float, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(centre, pano_to_world)`` along the run's cameras (sorted by name), moved ``approach`` of
    the way towards the sparse points' median, upright on average, each turned by a random yaw
    (so that the rotations differ)."""
    c2w = scene.cameras.cam_to_world.double().numpy()
    order = np.argsort(scene.cameras.names)
    target = np.median(scene.points.double().numpy(), 0)
    centres = c2w[order, :3, 3] * (1 - approach) + target * approach
    s = np.linspace(0, len(centres) - 1, n)
    path = np.stack([np.interp(s, np.arange(len(centres)), centres[:, k]) for k in range(3)], 1)
    down = c2w[:, :3, 1].mean(0)
    down /= np.linalg.norm(down)
    fwd = c2w[:, :3, 2].mean(0)
    fwd -= down * (fwd @ down)
    fwd /= np.linalg.norm(fwd)
    base = np.stack([np.cross(down, fwd), down, fwd], 1)  # pano axes (x right, y down, z fwd) in world
    rng = np.random.default_rng(seed)
    return [(p, base @ view_rotation(rng.uniform(-45, 45), 0).T) for p in path]


def render_pano(splats, centre, pano_to_world, width: int) -> np.ndarray:
    from splatkit.render.cpu import render

    H, face = width // 2, width // 4
    K = torch.tensor([[face / 2, 0, face / 2], [0, face / 2, face / 2], [0, 0, 1]], dtype=torch.float32)
    # grey, not black, around the scene: the ingest skips all-black frames
    settings = RenderSettings(sh_degree=splats.sh_degree, background=(0.5, 0.5, 0.5))
    faces, rots = [], []
    for yaw, pitch in FACES:
        R = view_rotation(yaw, pitch) @ pano_to_world.T  # cam_from_world
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, -R @ centre
        view = View(torch.tensor(w2c, dtype=torch.float32), K, face, face)
        with torch.no_grad():
            faces.append(render(splats, view, settings).image.clamp(0, 1).numpy())
        rots.append(view_rotation(yaw, pitch))
    v, u = np.mgrid[0:H, 0:width] + 0.5
    rays = rays_from_pixels(np.stack([u, v], -1), width, H)
    out = np.zeros((H, width, 3), np.float32)
    best = np.argmax(np.stack([rays @ R[2] for R in rots], -1), -1)
    for k, R in enumerate(rots):
        sel = best == k
        r = rays[sel] @ R.T
        uv = np.stack([face / 2 * r[:, 0] / r[:, 2] + face / 2, face / 2 * r[:, 1] / r[:, 2] + face / 2], -1)
        out[sel] = sample_bilinear(faces[k], uv)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def rotation_error_deg(Ra, Rb) -> float:
    D = Ra @ Rb.T
    s = np.linalg.norm([D[2, 1] - D[1, 2], D[0, 2] - D[2, 0], D[1, 0] - D[0, 1]]) / 2.0
    return math.degrees(math.atan2(s, (np.trace(D) - 1.0) / 2.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True,
                    help="a trained run folder (sparse/0, and scene.ply or checkpoints/)")
    ap.add_argument("--out", type=Path, default=REPO / "_runs" / "pano_bench")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--layout", default="cube5", choices=sorted(LAYOUTS))
    ap.add_argument("--approach", type=float, default=0.4,
                    help="fraction of the way from the run's cameras to its scene centre walked")
    ap.add_argument("--train", action="store_true",
                    help="then run splatkit train on the frames (--preset quick)")
    ap.add_argument("--steps", type=int, default=0, help="with --train: steps (0: the preset's)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    frames_dir = a.out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    scene = load_scene(a.run)
    splats = crop_to_points(load_splats(a.run), scene)
    poses = walk_poses(scene, a.frames, a.approach)
    t = time.time()
    for i, (c, R) in enumerate(poses):
        f = frames_dir / f"pano_{i:03d}.jpg"
        if not f.is_file():
            Image.fromarray(render_pano(splats, c, R, a.width)).save(f, quality=95)
    known = [{"centre": c.tolist(), "pano_to_world": R.tolist()} for c, R in poses]
    (a.out / "poses.json").write_text(json.dumps(known))
    print(f"rendered {a.frames} frames {a.width}x{a.width // 2} in {time.time() - t:.0f} s", flush=True)
    sfm_row(a, poses, frames_dir)


def sfm_row(a, poses, frames_dir: Path) -> None:
    from splatkit.ingest import SourceKind
    from splatkit.pano.source import run_pano_sfm
    from splatkit.sfm.calls import quiet_colmap

    cfg = RunConfig()
    cfg.ingest.pano_views = a.layout
    cfg.sfm.num_threads = 2
    out = a.out / f"sfm_{a.layout}"
    t = time.time()
    with quiet_colmap():
        _, scene = run_pano_sfm(frames_dir, SourceKind.PANO, out, cfg)
    total = time.time() - t
    rec = json.loads((out / "sfm_work" / "pano.json").read_text())
    w2c = {n: scene.cameras.world_to_cam[i].double().numpy() for i, n in enumerate(scene.cameras.names)}
    R0 = LAYOUTS[a.layout].rotations()[0]
    est = {f: R0.T @ w2c[f"v00/{f}"][:3, :3] for f in rec["placed"]}  # pano_from_world
    gt = {f"pano_{i:03d}.jpg": R.T for i, (_, R) in enumerate(poses)}
    ref = sorted(est)[0]
    errs = [rotation_error_deg(est[f] @ est[ref].T, gt[f] @ gt[ref].T) for f in sorted(est) if f != ref]
    cut = total - sum(rec["seconds"].values())
    print("layout frames registered rot_err_median_deg rot_err_max_deg cut_s sfm_s s_per_frame")
    print(f"{a.layout} {a.frames} {len(rec['placed'])} {np.median(errs):.3f} {max(errs):.3f} {cut:.0f} "
          f"{sum(rec['seconds'].values()):.0f} {total / a.frames:.1f}", flush=True)
    if a.train:
        train_row(a, frames_dir)


def train_row(a, frames_dir: Path) -> None:
    import subprocess

    out = a.out / f"train_{a.layout}"
    cmd = [sys.executable, "-m", "splatkit", "train", str(frames_dir), "-o", str(out), "--preset", "quick",
           "--quiet"]
    if a.steps:
        cmd += ["--steps", str(a.steps)]
    t = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    m = json.loads((out / "metrics.json").read_text())
    print("psnr ssim train_s views_train views_test s_per_frame_total")
    took = time.time() - t
    print(f"{m['psnr']:.2f} {m['ssim']:.3f} {took:.0f} {m['images']['train']} {m['images']['test']} "
          f"{took / a.frames:.1f}", flush=True)


if __name__ == "__main__":
    main()
