"""Scale and up error of the Unreal export against ground truth (issue 16).

For each Strecha set (LIDAR ground truth in metres, world up = -Z): the SfM reconstruction of
``splatkit sfm --preset quick`` (made into ``--work`` if not there) is aligned to the ground-truth
cameras (Umeyama similarity): that gives the true metres per SfM unit and the true up in the SfM
frame. Then each evidence source the export uses is measured against them:

- ``gps``: EXIF-like GPS built from the ground-truth camera centres (east/north at a random
  heading, WGS84 via pymap3d), with noise: ``iid-N``: every photo off by N m (1 sigma,
  horizontal radial; vertical 2N m); ``bias+jitter``: one N m offset for the session plus 0.5 m
  per photo (how phone GPS errors behave over minutes). ``--trials`` draws per row: median and
  95th-percentile absolute error, and the mean uncertainty the export reported;
- ``known-distance``: the farthest pair of cameras at its true distance;
- ``known-size``: pairs of sparse points seen in one photo, 30-70% of the image apart, at their
  true distance, pixel positions off by 2 px (median of ``--trials`` pairs);
- ``eye-height``: the heuristic (cameras 1.5 m above the detected ground);

and up: the export's estimate (and the cameras alone) against the true up. Synthetic camera sets
with known up: a nadir survey grid (serpentine flight lines, gimbal pitch -90 +- 1 deg) and a walk
with one heading pitched down 15 deg (roll +- 1 deg), both over ground points.

Example::

    python scripts/bench_unreal_scale.py --work /tmp/unreal --trials 200
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splatkit import up as U
from splatkit.export import scale as S
from splatkit.export.unreal import UnrealExportOptions, estimate_upright
from splatkit.scene import Cameras, Scene
from splatkit.sfm.align import umeyama

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SETS = ("strecha_fountain_p11", "strecha_castle_p19")
GT_UP = np.array([0.0, 0.0, -1.0])


def sfm_scene(name: str, work: Path) -> Scene:
    from splatkit.sfm.loaders import load_scene

    out = work / f"sfm_{name}"
    if not (out / "sparse" / "0").is_dir():
        cmd = [
            "splatkit",
            "sfm",
            str(DATASETS / name / "images"),
            "-o",
            str(out),
            "--preset",
            "quick",
            "--quiet",
        ]
        print(f"running: {shlex.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
    return load_scene(out)


def ground_truth(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{image name: (R camera-to-world, centre)}`` from gt_dense_cameras (Strecha format)."""
    out = {}
    for f in sorted(glob.glob(str(DATASETS / name / "gt_dense_cameras" / "*.camera"))):
        v = np.array(Path(f).read_text().split(), dtype=np.float64)
        out[os.path.basename(f)[: -len(".camera")]] = (v[12:21].reshape(3, 3), v[21:24])
    return out


def alignment(scene: Scene, gt: dict) -> tuple[float, np.ndarray, np.ndarray]:
    c = scene.cameras.centers.double().numpy()
    g = np.array([gt[n][1] for n in scene.cameras.names])
    return umeyama(c, g)


def fake_gps(gt_centres: np.ndarray, sigma: float, model: str, rng) -> np.ndarray:
    """(lat, lon, alt) of ground-truth centres seen through a noisy GPS (see module doc)."""
    import pymap3d

    yaw = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    # GT up is -Z: (x, -y, -z) is the GT frame turned half a turn about x, right-handed like ENU
    x, y, h = gt_centres[:, 0], -gt_centres[:, 1], -gt_centres[:, 2]
    east, north = c * x - s * y, s * x + c * y
    n = len(gt_centres)
    if model == "iid":
        noise = rng.normal(0, sigma / math.sqrt(2), (n, 2))
        dz = rng.normal(0, 2 * sigma, n)
    else:
        noise = rng.normal(0, sigma / math.sqrt(2), (1, 2)) + rng.normal(0, 0.5 / math.sqrt(2), (n, 2))
        dz = rng.normal(0, 2 * sigma) + rng.normal(0, 1.0, n)
    lat, lon, alt = pymap3d.enu2geodetic(
        east + noise[:, 0], north + noise[:, 1], h + dz + 400, 46.52, 6.56, 0.0
    )
    return np.stack([lat, lon, alt], 1)


def row(name: str, source: str, est: list[float], true: float, unc: list[float | None]) -> str:
    err = np.abs(np.array(est) / true - 1) * 100
    u = [x for x in unc if x is not None]
    unc_s = f"{100 * np.mean(u):.1f}%" if u else "-"
    p95 = f"{np.percentile(err, 95):.2f}%" if len(err) > 1 else "-"
    return (
        f"| {name} | {source} | {np.median(est):.4g} | {true:.4g} | {np.median(err):.2f}% | {p95} | {unc_s} |"
    )


def bench_gps(name, scene, gt, s_true, R, up_sfm, trials, rng) -> list[str]:
    rows = []
    g = np.array([gt[n][1] for n in scene.cameras.names])
    for model, sigma in (("iid", 2.0), ("iid", 5.0), ("bias+jitter", 2.0), ("bias+jitter", 5.0)):
        est, unc = [], []
        for _ in range(trials):
            gps = dict(zip(scene.cameras.names, map(tuple, fake_gps(g, sigma, model, rng)), strict=True))
            e = S.scale_from_gps(scene, gps, torch.tensor(up_sfm))
            est.append(e.metres_per_unit)
            unc.append(e.uncertainty)
        rows.append(row(name, f"gps {model}-{sigma:g} m", est, s_true, unc))
    return rows


def bench_known(name, scene, gt, s_true, trials, rng) -> list[str]:
    c = scene.cameras.centers.double().numpy()
    names = scene.cameras.names
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    true_d = float(np.linalg.norm(gt[names[i]][1] - gt[names[j]][1]))
    e = S.scale_from_known_distance(f"{names[i]},{names[j]},{true_d:.4f}", scene)
    rows = [row(name, "known-distance (farthest pair)", [e.metres_per_unit], s_true, [e.uncertainty])]
    est, unc = [], []
    for _ in range(trials * 10):
        if len(est) >= trials:
            break
        k = int(rng.integers(len(names)))
        spec = _known_size_case(scene, k, s_true, rng)
        if spec is None:
            continue
        try:
            e = S.scale_from_known_size(spec, scene)
        except Exception:  # noqa: BLE001 - an end without points nearby: draw another pair
            continue
        est.append(e.metres_per_unit)
        unc.append(e.uncertainty)
    if est:
        rows.append(row(name, f"known-size (2 px noise, {len(est)} pairs)", est, s_true, unc))
    return rows


def _known_size_case(scene: Scene, k: int, s_true: float, rng) -> str | None:
    cams = scene.cameras
    w2c, K = cams.world_to_cam[k].double(), cams.K[k].double()
    pc = scene.points.double() @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (pc[:, :2] / pc[:, 2:3]) * K[[0, 1], [0, 1]] + K[:2, 2]
    W, H = float(cams.width[k]), float(cams.height[k])
    ok = torch.where((pc[:, 2] > 0) & (uv[:, 0] > 0) & (uv[:, 0] < W) & (uv[:, 1] > 0) & (uv[:, 1] < H))[0]
    if len(ok) < 20:
        return None
    a, b = (int(ok[i]) for i in rng.choice(len(ok), 2, replace=False))
    px = float((uv[a] - uv[b]).norm())
    if not 0.3 * W < px < 0.7 * W:
        return None
    metres = float((scene.points[a].double() - scene.points[b].double()).norm()) * s_true
    (x1, y1), (x2, y2) = (
        (uv[a] + torch.tensor(rng.normal(0, 2, 2))).tolist(),
        (uv[b] + torch.tensor(rng.normal(0, 2, 2))).tolist(),
    )
    return f"{cams.names[k]},{x1:.1f},{y1:.1f},{x2:.1f},{y2:.1f},{metres:.4f}"


def bench_set(name: str, work: Path, trials: int, rng) -> tuple[list[str], list[str]]:
    scene = sfm_scene(name, work)
    gt = ground_truth(name)
    s_true, R, _ = alignment(scene, gt)
    up_true = R.T @ GT_UP  # the true up in the SfM frame
    T, info = estimate_upright(scene, UnrealExportOptions(scale="eye"))
    up_rows = [
        f"| {name} | export (auto) | {info['up']} | {U.angle_deg(T.R[2], torch.tensor(up_true)):.2f} | "
        f"{info['up_uncertainty_deg']:.2f} |"
    ]
    cam = U.camera_up(scene.cameras.world_to_cam, scene.cameras.centers)
    up_rows.append(
        f"| {name} | cameras only | {cam.method} | {U.angle_deg(cam.vector, torch.tensor(up_true)):.2f} | "
        f"{cam.uncertainty_deg:.2f} |"
    )
    rows = bench_gps(name, scene, gt, s_true, R, T.R[2].numpy(), trials, rng)
    rows += bench_known(name, scene, gt, s_true, trials, rng)
    rows.append(
        row(name, "eye-height (heuristic)", [info["metres_per_unit"]], s_true, [info["scale_uncertainty"]])
    )
    return rows, up_rows


def _look(c: np.ndarray, fwd: np.ndarray, top: np.ndarray) -> np.ndarray:
    z = fwd / np.linalg.norm(fwd)
    y = -(top - (top @ z) * z)
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ c
    return M


def synthetic_sets(rng) -> dict[str, tuple[Cameras, np.ndarray, np.ndarray]]:
    """name -> (cameras, ground points, true up), world up +Z, then a random rotation."""
    out = {}
    w2c = []
    for row_i, y in enumerate(np.linspace(-40, 40, 6)):  # serpentine: heading flips per line
        for x in np.linspace(-50, 50, 8):
            tilt = np.radians(rng.normal(0, 1, 2))
            fwd = np.array([tilt[0], tilt[1], -1.0])
            top = np.array([1.0, 0, 0]) * (1 if row_i % 2 == 0 else -1)
            w2c.append(_look(np.array([x, y, 60.0]), fwd, top))
    pts = np.c_[rng.uniform(-80, 80, (3000, 2)), rng.normal(0, 0.3, 3000)]
    out["nadir survey grid (48 photos)"] = (w2c, pts)
    w2c = []
    for t in np.linspace(0, 30, 25):  # a walk along +X looking ahead, pitched down 15 deg
        p = np.radians(-15 + rng.normal(0, 2))
        roll = np.radians(rng.normal(0, 1))
        fwd = np.array([math.cos(p), 0, math.sin(p)])
        top = np.array([-math.sin(p), 0, math.cos(p)])
        top = math.cos(roll) * top + math.sin(roll) * np.cross(fwd, top)
        w2c.append(_look(np.array([t, rng.normal(0, 0.1), 1.6 + rng.normal(0, 0.03)]), fwd, top))
    pts = np.c_[rng.uniform(-2, 40, 2000), rng.uniform(-5, 5, 2000), rng.normal(0, 0.02, 2000)]
    pts = np.r_[pts, np.c_[rng.uniform(-2, 40, 1000), np.full(1000, 6.0), rng.uniform(0, 8, 1000)]]
    out["walk, one heading, pitched 15 deg (25 photos)"] = (w2c, pts)
    result = {}
    for name, (w, p) in out.items():
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        Rw = _qmat(q)
        T = np.eye(4)
        T[:3, :3] = Rw
        w2c = np.array(w) @ np.linalg.inv(T)
        K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]).repeat(len(w2c), 1, 1)
        cams = Cameras(
            [f"{i:03d}.jpg" for i in range(len(w2c))],
            K,
            torch.tensor(w2c).float(),
            torch.full((len(w2c),), 640),
            torch.full((len(w2c),), 480),
        )
        result[name] = (cams, p @ Rw.T, Rw @ np.array([0, 0, 1.0]))
    return result


def _qmat(q):
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/unreal"), help="SfM outputs (made if missing)")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"command: {shlex.join([sys.executable] + sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}\n")
    scale_rows, up_rows = [], []
    for name in args.sets:
        r, u = bench_set(name, args.work, args.trials, rng)
        scale_rows += r
        up_rows += u
    for name, (cams, pts, up_true) in synthetic_sets(rng).items():
        est = U.estimate_up(cams.world_to_cam, cams.centers, torch.tensor(pts))
        cam = U.camera_up(cams.world_to_cam, cams.centers)
        truth = torch.tensor(up_true)
        for label, e in (("export (auto)", est), ("cameras only", cam)):
            err = U.angle_deg(e.vector, truth)
            up_rows.append(f"| {name} | {label} | {e.method} | {err:.2f} | {e.uncertainty_deg:.2f} |")
    print(
        "| set | source | metres/unit (median) | true | median error | 95th pct error | reported +- (mean) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(scale_rows))
    print("\n| set | estimate | method | up error (deg) | reported +- (deg) |")
    print("|---|---|---|---:|---:|")
    print("\n".join(up_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
