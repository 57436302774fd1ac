"""Synthetic scenes and ground-truth readers shared by the Unreal export tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from splatkit import frames as F
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def look_at(center: torch.Tensor, target: torch.Tensor, up: torch.Tensor, roll: float = 0.0):
    """OpenCV world_to_cam for a camera at ``center`` looking at ``target`` with world ``up``."""
    z = target - center
    z = z / z.norm()
    x = torch.linalg.cross(z, up)  # right = forward x up (with y down)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        R = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]], dtype=R.dtype) @ R
    w2c = torch.eye(4, dtype=center.dtype)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ center
    return w2c


def synthetic_scene(R_world: torch.Tensor, n_cams: int = 12, seed: int = 0, roll_deg: float = 1.0):
    """Cameras at eye height around an object, gravity -Z, then the world rotated by R_world."""
    g = torch.Generator().manual_seed(seed)
    up = torch.tensor([0, 0, 1.0], dtype=torch.float64)
    w2cs = []
    for i in range(n_cams):
        a = 2 * math.pi * i / n_cams * 0.6  # a 216-degree arc
        h = 1.6 + 0.2 * torch.rand(1, generator=g).item()
        c = torch.tensor([4 * math.cos(a), 4 * math.sin(a), h], dtype=torch.float64)
        tgt = torch.tensor([0, 0, 0.5 + torch.rand(1, generator=g).item()], dtype=torch.float64)
        roll = math.radians(roll_deg) * (2 * torch.rand(1, generator=g).item() - 1)
        w2cs.append(look_at(c, tgt, up, roll))
    w2c = torch.stack(w2cs)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = R_world
    w2c = w2c @ torch.linalg.inv(T)  # world' = R_world @ world
    K = torch.tensor([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]]).repeat(n_cams, 1, 1)
    cams = Cameras(
        [f"{i:03d}.jpg" for i in range(n_cams)],
        K,
        w2c.float(),
        torch.full((n_cams,), 128),
        torch.full((n_cams,), 96),
    )
    pts = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.3])
    pts[:, 2] = pts[:, 2].abs()  # on and above the floor z = 0
    pts[:150, 2] = 0.005 * torch.randn(150, generator=g, dtype=torch.float64)  # the floor itself
    pts = pts @ R_world.T
    return Scene(cams, Path("."), pts.float(), torch.rand(500, 3)), R_world @ up


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    return F.Similarity.identity().R if q.norm() == 0 else _qmat(q / q.norm())


def _qmat(q):
    from splatkit.render.projection import quat_to_rotmat

    return quat_to_rotmat(q[None])[0]


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    c = float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def random_splats(n: int, degree: int, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(
        means=torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.5,
        log_scales=torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 - 2.5,
        quats=torch.randn(n, 4, generator=g, dtype=torch.float64),
        opacity_logits=torch.randn(n, generator=g, dtype=torch.float64),
        sh0=torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * 0.5,
        shN=torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=g, dtype=torch.float64) * 0.3,
    )


def fox_w2c() -> torch.Tensor:
    meta = json.loads((DATASETS / "fox" / "transforms.json").read_text())
    c2w = torch.tensor([f["transform_matrix"] for f in meta["frames"]], dtype=torch.float64)
    c2w[:, :3, 1:3] *= -1  # OpenGL -> OpenCV camera axes
    return torch.linalg.inv(c2w)


def strecha_w2c(name: str) -> torch.Tensor:
    """Ground-truth world-to-camera matrices of a Strecha set (LIDAR frame, metres, up = -Z)."""
    rows = []
    for ln in (DATASETS / name / "reference_colmap_txt" / "images.txt").read_text().splitlines():
        tok = ln.split()
        if ln.startswith("#") or len(tok) < 10:
            continue
        qw, qx, qy, qz, tx, ty, tz = map(float, tok[1:8])
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = _qmat(torch.tensor([qw, qx, qy, qz], dtype=torch.float64))
        w2c[:3, 3] = torch.tensor([tx, ty, tz], dtype=torch.float64)
        rows.append(w2c)
    return torch.stack(rows)


def centers(w2c: torch.Tensor) -> torch.Tensor:
    return -(w2c[:, :3, :3].transpose(1, 2) @ w2c[:, :3, 3:])[:, :, 0]


def cameras_from_w2c(w2c: torch.Tensor, f: float = 500.0, w: int = 640, h: int = 480) -> Cameras:
    n = len(w2c)
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]).repeat(n, 1, 1)
    return Cameras(
        [f"{i:03d}.jpg" for i in range(n)], K, w2c.float(), torch.full((n,), w), torch.full((n,), h)
    )


def look_dir(c, fwd, top) -> torch.Tensor:
    """OpenCV world_to_cam at ``c`` looking along ``fwd`` with the image top towards ``top``."""
    c, fwd, top = (torch.as_tensor(v, dtype=torch.float64) for v in (c, fwd, top))
    z = fwd / fwd.norm()
    y = -(top - (top @ z) * z)
    y = y / y.norm()
    x = torch.linalg.cross(y, z)
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = torch.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ c
    return M


def nadir_grid(seed: int = 0, serpentine: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A drone survey: 6 lines of 8 photos at 60 m looking down (+-1 deg), ground points; up +Z."""
    g = torch.Generator().manual_seed(seed)
    w2c = []
    for i, y in enumerate(torch.linspace(-40, 40, 6).tolist()):
        for x in torch.linspace(-50, 50, 8).tolist():
            tilt = torch.randn(2, generator=g, dtype=torch.float64) * math.radians(1)
            top = [1.0 if (i % 2 == 0 or not serpentine) else -1.0, 0, 0]
            w2c.append(look_dir([x, y, 60.0], [float(tilt[0]), float(tilt[1]), -1.0], top))
    pts = torch.cat(
        [
            torch.rand(3000, 2, generator=g, dtype=torch.float64) * 160 - 80,
            torch.randn(3000, 1, generator=g, dtype=torch.float64) * 0.3,
        ],
        1,
    )
    return torch.stack(w2c), pts


def walk(seed: int = 0, pitch_deg: float = -15.0) -> tuple[torch.Tensor, torch.Tensor]:
    """25 photos walking along +X looking ahead, pitched down, eye height; street points; up +Z."""
    g = torch.Generator().manual_seed(seed)
    w2c = []
    for t in torch.linspace(0, 30, 25).tolist():
        p = math.radians(pitch_deg + 2 * float(torch.randn(1, generator=g)))
        roll = math.radians(float(torch.randn(1, generator=g)))
        fwd = torch.tensor([math.cos(p), 0, math.sin(p)], dtype=torch.float64)
        top = torch.tensor([-math.sin(p), 0, math.cos(p)], dtype=torch.float64)
        top = math.cos(roll) * top + math.sin(roll) * torch.linalg.cross(fwd, top)
        w2c.append(look_dir([t, 0.1 * float(torch.randn(1, generator=g)), 1.6], fwd, top))
    ground = torch.cat(
        [
            torch.rand(2000, 1, generator=g) * 42 - 2,
            torch.rand(2000, 1, generator=g) * 10 - 5,
            torch.randn(2000, 1, generator=g) * 0.02,
        ],
        1,
    )
    wall = torch.cat(
        [
            torch.rand(1000, 1, generator=g) * 42 - 2,
            torch.full((1000, 1), 6.0),
            torch.rand(1000, 1, generator=g) * 8,
        ],
        1,
    )
    return torch.stack(w2c), torch.cat([ground, wall]).double()


def rotate_world(w2c: torch.Tensor, pts: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same cameras and points after the world is rotated by R (x' = R x)."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = R
    return w2c @ torch.linalg.inv(T), pts @ R.T
