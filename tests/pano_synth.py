"""A textured box room ray-cast into equirectangular frames with known poses (tests of 360 input).

Each wall carries its own multi-scale noise texture (blobs and edges at several scales, nothing
repeats), which SIFT finds plenty of features in. The frame conventions are those of
:mod:`splatkit.pano.equirect`: ``pano_to_world`` rotates panorama-frame rays into the world.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from splatkit.pano.equirect import rays_from_pixels, sample_bilinear

ROOM_MIN = np.array([-4.0, -2.5, -4.0])
ROOM_MAX = np.array([4.0, 1.5, 4.0])
TEXELS_PER_METRE = 48


def wall_textures(seed: int = 0, size: int = 384) -> list[np.ndarray]:
    """Six ``uint8 [size, size, 3]`` textures (faces -x, +x, -y, +y, -z, +z)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(6):
        acc = np.zeros((size, size, 3), np.float32)
        for cells, w in ((4, 1.0), (12, 0.8), (32, 0.6), (96, 0.4)):
            small = rng.random((cells, cells, 3)).astype(np.float32)
            im = Image.fromarray((small * 255).astype(np.uint8))
            im = im.resize((size, size), Image.Resampling.BICUBIC)
            acc += w * np.asarray(im, np.float32)
        acc -= acc.min()
        out.append(np.clip(acc * (255.0 / acc.max()), 0, 255).astype(np.uint8))
    return out


def cast(origins: np.ndarray, dirs: np.ndarray, textures: list[np.ndarray]) -> np.ndarray:
    """Colour ``[N, 3]`` float of rays ``origins + t dirs`` (inside the room) on its walls."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(dirs > 0, ROOM_MAX, ROOM_MIN)
        t = (bound - origins) / dirs
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    axis = np.argmin(t, axis=1)
    tmin = t[np.arange(len(t)), axis]
    hit = origins + tmin[:, None] * dirs
    colour = np.zeros((len(dirs), 3), np.float32)
    for a in range(3):
        for side in (0, 1):
            sel = (axis == a) & ((dirs[:, a] > 0) == bool(side))
            if not sel.any():
                continue
            u_ax, v_ax = [b for b in range(3) if b != a]
            uv = np.stack([(hit[sel, u_ax] - ROOM_MIN[u_ax]), (hit[sel, v_ax] - ROOM_MIN[v_ax])], -1)
            colour[sel] = sample_bilinear(textures[2 * a + side], uv * TEXELS_PER_METRE)
    return colour


def render_pano(centre: np.ndarray, pano_to_world: np.ndarray, width: int, textures) -> np.ndarray:
    """``uint8 [width/2, width, 3]`` equirectangular frame taken at ``centre``."""
    H = width // 2
    v, u = np.mgrid[0:H, 0:width] + 0.5
    rays = rays_from_pixels(np.stack([u, v], -1), width, H).reshape(-1, 3) @ pano_to_world.T
    c = cast(np.broadcast_to(centre, rays.shape).copy(), rays, textures)
    return np.clip(np.rint(c), 0, 255).astype(np.uint8).reshape(H, width, 3)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def walk(n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` poses ``(centre, pano_to_world)`` along a walk through the room, turning a little."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = i / max(1, n - 1)
        centre = np.array([-1.6 + 3.2 * s, 0.2 * np.sin(3 * s), 0.8 * np.sin(2 * s)])
        R = rot_y(rng.uniform(-40, 40)) @ rot_x(rng.uniform(-6, 6))
        out.append((centre, R))
    return out


def rotation_error_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """The angle of ``Ra Rb^T`` (atan2 of its sine and cosine: accurate near 0 as well)."""
    D = Ra @ Rb.T
    s = np.linalg.norm([D[2, 1] - D[1, 2], D[0, 2] - D[2, 0], D[1, 0] - D[0, 1]]) / 2.0
    return float(np.degrees(np.arctan2(s, (np.trace(D) - 1.0) / 2.0)))


def render_pinhole(c2w: np.ndarray, K: np.ndarray, w: int, h: int, textures) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [h, w, 3] image, float [h, w] z-depth)`` of an OpenCV camera in the room."""
    v, u = np.mgrid[0:h, 0:w] + 0.5
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    o = np.broadcast_to(c2w[:3, 3], d.shape).copy()
    colour = cast(o, d, textures)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, ROOM_MAX, ROOM_MIN)
        t = np.where(np.isfinite((bound - o) / d) & ((bound - o) / d > 0), (bound - o) / d, np.inf)
    z = t.min(1)  # along a ray whose camera-z component is 1: t is the z-depth
    img = np.clip(np.rint(colour), 0, 255).astype(np.uint8).reshape(h, w, 3)
    return img, z.reshape(h, w)


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world at ``centre`` looking at ``target``, world -y up."""
    f = target - centre
    f = f / np.linalg.norm(f)
    r = np.cross(f, [0.0, -1.0, 0.0])
    r /= np.linalg.norm(r)
    m = np.eye(4)
    m[:3, :3] = np.stack([r, np.cross(f, r), f], 1)
    m[:3, 3] = centre
    return m
