"""Metres per scene unit, from evidence, each with an uncertainty.

SfM has no metric scale. Sources, best first (:func:`choose_scale`):

- ``gps``: the photos' EXIF GPS positions (recorded by ingest in ``OUT/work/images/ingest.json``)
  converted to a local east-north-up frame (``pymap3d``); a robust (Huber-weighted) similarity
  fit, in the horizontal plane, of the camera centres to them: GPS heights are too noisy to help.
  Uncertainty: the residual spread over the spread of the positions (least-squares theory);
- ``known-distance``: ``'PHOTO_A,PHOTO_B,METRES[,TOLERANCE]'``, the measured distance between
  where two photos were taken (tolerance default :data:`DEFAULT_TOLERANCE_M`);
- ``known-size``: ``'PHOTO,X1,Y1,X2,Y2,METRES'``: the two ends of an object of known length,
  in pixels of ``OUT/images/PHOTO``; each end is placed at the depth of the sparse points seen
  around it;
- ``eye-height`` (a heuristic): the median camera height above the detected ground plane is
  taken to be :data:`EYE_HEIGHT_M`; uncertainty :data:`EYE_HEIGHT_SPREAD_M` (how high people
  hold cameras varies);
- ``factor``: a number given by the user; ``none``: 1.0 when nothing else is known.

A source the user names is used; otherwise (``auto``) the one with the smallest uncertainty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from splatkit.errors import UserError
from splatkit.scene import Scene
from splatkit.up import Plane

#: Camera height assumed by the eye-height heuristic, and how much it varies (1 sigma), metres.
EYE_HEIGHT_M = 1.5
EYE_HEIGHT_SPREAD_M = 0.15
#: Default tolerance of a measured ``known-distance``, metres.
DEFAULT_TOLERANCE_M = 0.02
#: Pixel radius (fraction of the image width) within which sparse points give an end's depth.
KNOWN_SIZE_RADIUS = 0.03


@dataclass
class ScaleEstimate:
    """``metres_per_unit`` from ``source``, relative 1-sigma ``uncertainty`` (None: unknown)."""

    metres_per_unit: float
    source: str
    uncertainty: float | None
    detail: str

    def describe(self) -> str:
        unc = "unknown uncertainty" if self.uncertainty is None else f"+-{100 * self.uncertainty:.1f}%"
        return f"{self.source}: {self.metres_per_unit:.4g} m per unit ({unc}; {self.detail})"

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "metres_per_unit": self.metres_per_unit,
            "uncertainty": self.uncertainty,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------------------------
# GPS


def read_photo_gps(out_dir: Path) -> dict[str, tuple[float, float, float]]:
    """``{working-copy name: (lat, lon, alt)}`` from ingest's record in ``out_dir`` (empty if none)."""
    from splatkit.ingest.photos import MANIFEST
    from splatkit.rundir import RunDir

    path = RunDir(Path(out_dir)).work_images / MANIFEST
    try:
        photos = json.loads(path.read_text(encoding="utf-8")).get("photos", {})
    except (OSError, ValueError):
        return {}
    out = {}
    for entry in photos.values():
        p = entry.get("photo", {}) if isinstance(entry, dict) else {}
        gps = p.get("gps")
        if p.get("name") and gps and len(gps) == 3 and all(math.isfinite(float(v)) for v in gps):
            out[p["name"]] = tuple(float(v) for v in gps)
    return out


def gps_to_enu(gps: np.ndarray) -> np.ndarray:
    """``[N, 3]`` (lat, lon, alt) degrees/metres -> east, north, up metres around their median."""
    import pymap3d

    lat0, lon0, alt0 = np.median(gps, axis=0)
    e, n, u = pymap3d.geodetic2enu(gps[:, 0], gps[:, 1], gps[:, 2], lat0, lon0, alt0)
    return np.stack([e, n, u], axis=1)


def _horizontal_basis(up: np.ndarray) -> np.ndarray:
    """Rows e1, e2 spanning the plane perpendicular to ``up``, with e1 x e2 = up."""
    helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = helper - (helper @ up) * up
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(up, e1)])


def fit_similarity_2d(
    src: np.ndarray, dst: np.ndarray, iters: int = 20
) -> tuple[complex, complex, np.ndarray]:
    """Robust ``dst ~ a * src + b`` for 2D points as complex numbers (a: scale and rotation).

    Iteratively reweighted least squares with Huber weights (k = 1.345 x the residuals' MAD
    scale); returns (a, b, weights).
    """
    z = src[:, 0] + 1j * src[:, 1]
    w_ = dst[:, 0] + 1j * dst[:, 1]
    wts = np.ones(len(z))
    for _ in range(iters):
        zm, wm = np.average(z, weights=wts), np.average(w_, weights=wts)
        a = np.sum(wts * np.conj(z - zm) * (w_ - wm)) / max(np.sum(wts * np.abs(z - zm) ** 2), 1e-300)
        b = wm - a * zm
        r = np.abs(w_ - (a * z + b))
        s = 1.4826 * np.median(r) + 1e-12
        k = 1.345 * s
        wts = np.where(r <= k, 1.0, k / np.maximum(r, 1e-300))
    return a, b, wts


def scale_from_gps(scene: Scene, gps: dict, up: Tensor) -> ScaleEstimate | None:
    """Similarity fit of the camera centres to their GPS positions (horizontal), or None."""
    names = [n for n in scene.cameras.names if n in gps]
    if len(names) < 3:
        return None
    idx = [scene.cameras.names.index(n) for n in names]
    enu = gps_to_enu(np.array([gps[n] for n in names], dtype=np.float64))
    c = scene.cameras.centers.double()[idx].numpy()
    basis = _horizontal_basis(up.double().numpy() / float(up.norm()))
    src = c @ basis.T
    dst = enu[:, :2]
    a, _, wts = fit_similarity_2d(src, dst)
    s = abs(a)
    res = dst - np.stack(
        [(a * (src[:, 0] + 1j * src[:, 1])).real, (a * (src[:, 0] + 1j * src[:, 1])).imag], 1
    )
    res -= np.average(res, axis=0, weights=wts)
    n_eff = float(wts.sum())
    if n_eff <= 2.5 or s <= 0:
        return None
    sigma = math.sqrt(float(np.sum(wts[:, None] * res**2)) / (2 * n_eff - 4))  # per axis
    spread = math.sqrt(float(np.sum(wts[:, None] * (dst - np.average(dst, 0, wts)) ** 2)))
    unc = sigma / max(spread, 1e-12)
    return ScaleEstimate(
        float(s),
        "gps",
        unc,
        f"{len(names)} photos with GPS, residual {sigma:.1f} m, "
        f"spread {spread / math.sqrt(len(names)):.0f} m",
    )


# --------------------------------------------------------------------------------------------
# Known distance, known size


def _float(text: str, what: str, example: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (v > 0 and math.isfinite(v)):
        raise UserError(f"{what}: {text!r} is not a positive number of metres.", example)
    return v


def _camera_index(scene: Scene | None, name: str, what: str) -> int:
    if scene is None or not len(scene.cameras):
        raise UserError(f"{what} needs the camera poses.", "Export from a training folder.")
    if name not in scene.cameras.names:
        raise UserError(
            f"{what}: no photo named {name!r} among the cameras.",
            f"Use names like {scene.cameras.names[0]!r} (see OUT/images/).",
        )
    return scene.cameras.names.index(name)


def scale_from_known_distance(spec: str, scene: Scene | None) -> ScaleEstimate:
    """``'PHOTO_A,PHOTO_B,METRES[,TOLERANCE]'``: the distance between where two photos were taken."""
    parts = [p.strip() for p in spec.split(",")]
    example = "Example: --known-distance IMG_001.jpg,IMG_040.jpg,3.5 (or ...,3.5,0.05)"
    if len(parts) not in (3, 4):
        raise UserError(f"known_distance {spec!r} is not 'PHOTO_A,PHOTO_B,METRES'.", example)
    metres = _float(parts[2], "known_distance", example)
    tol = _float(parts[3], "known_distance tolerance", example) if len(parts) == 4 else DEFAULT_TOLERANCE_M
    ia, ib = (_camera_index(scene, p, "known_distance") for p in parts[:2])
    c = scene.cameras.centers.double()
    d = float((c[ia] - c[ib]).norm())
    if d < 1e-9:
        raise UserError(f"Cameras {parts[0]} and {parts[1]} are at the same place.", "Pick two others.")
    return ScaleEstimate(
        metres / d, "known-distance", tol / metres, f"{parts[0]} to {parts[1]} = {metres} m +- {tol} m"
    )


def _end_point(scene: Scene, i: int, px: float, py: float) -> tuple[Tensor, float]:
    """3D point at pixel (px, py) of camera i, at the depth of the sparse points around it, and
    the relative spread of those depths."""
    cams = scene.cameras
    w2c, K = cams.world_to_cam[i].double(), cams.K[i].double()
    pc = scene.points.double() @ w2c[:3, :3].T + w2c[:3, 3]
    front = pc[:, 2] > 1e-6
    uv = (pc[:, :2] / pc[:, 2:3].clamp(min=1e-9)) * K[[0, 1], [0, 1]] + K[:2, 2]
    dist = (uv - torch.tensor([px, py], dtype=torch.float64)).norm(dim=1)
    radius = KNOWN_SIZE_RADIUS * float(cams.width[i])
    near = front & (dist < radius)
    if int(near.sum()) < 3:
        raise UserError(
            f"known_size: too few 3D points near pixel ({px:.0f}, {py:.0f}) of "
            f"{cams.names[i]} to place that end.",
            "Pick object ends on textured surfaces, or use --known-distance.",
        )
    z = pc[near, 2]
    z = z[dist[near].argsort()[: min(6, len(z))]]
    depth = float(z.median())
    spread = float(1.4826 * (z - depth).abs().median()) / depth  # a depth edge shows here
    ray = torch.tensor([(px - K[0, 2]) / K[0, 0], (py - K[1, 2]) / K[1, 1], 1.0], dtype=torch.float64)
    p_cam = ray * depth
    return w2c[:3, :3].T @ (p_cam - w2c[:3, 3]), spread


def scale_from_known_size(spec: str, scene: Scene | None) -> ScaleEstimate:
    """``'PHOTO,X1,Y1,X2,Y2,METRES'``: an object of known length seen in one photo."""
    parts = [p.strip() for p in spec.split(",")]
    example = "Example: --known-size IMG_007.jpg,812,140,815,655,2.0 (a 2 m door, pixels of OUT/images)"
    if len(parts) != 6:
        raise UserError(f"known_size {spec!r} is not 'PHOTO,X1,Y1,X2,Y2,METRES'.", example)
    try:
        x1, y1, x2, y2 = (float(v) for v in parts[1:5])
    except ValueError:
        raise UserError(f"known_size: {','.join(parts[1:5])!r} are not pixel positions.", example) from None
    metres = _float(parts[5], "known_size", example)
    i = _camera_index(scene, parts[0], "known_size")
    a, ua = _end_point(scene, i, x1, y1)
    b, ub = _end_point(scene, i, x2, y2)
    d = float((a - b).norm())
    if d < 1e-12:
        raise UserError("known_size: the two ends are at the same place.", "Check the pixel positions.")
    px_len = math.hypot(x2 - x1, y2 - y1)
    unc = math.sqrt(ua**2 + ub**2 + (1.4 / max(px_len, 1.0)) ** 2)
    return ScaleEstimate(
        metres / d, "known-size", unc, f"{metres} m between two points of {parts[0]} ({px_len:.0f} px apart)"
    )


# --------------------------------------------------------------------------------------------
# Eye height


def scale_from_eye_height(centers: Tensor, ground: Plane) -> ScaleEstimate | None:
    """Median camera height above ``ground`` taken as :data:`EYE_HEIGHT_M` (a heuristic)."""
    h = float(ground.height(centers).median())
    if not h > 1e-9:
        return None
    return ScaleEstimate(
        EYE_HEIGHT_M / h,
        "eye-height",
        EYE_HEIGHT_SPREAD_M / EYE_HEIGHT_M,
        f"heuristic: cameras assumed {EYE_HEIGHT_M} m above the detected ground",
    )


# --------------------------------------------------------------------------------------------
# Choice


def choose_scale(
    spec: str,
    scene: Scene | None,
    ground: Plane | None,
    up: Tensor | None,
    gps: dict | None = None,
    known_distance: str | None = None,
    known_size: str | None = None,
) -> tuple[ScaleEstimate, list[ScaleEstimate]]:
    """The scale to use and every candidate found (for printing and the manifest).

    ``spec``: ``auto``, ``gps``, ``eye`` or a number; ``known_distance``/``known_size`` win.
    """
    spec = (spec or "auto").strip().lower()
    if known_distance:
        est = scale_from_known_distance(known_distance, scene)
        return est, [est]
    if known_size:
        est = scale_from_known_size(known_size, scene)
        return est, [est]
    if spec not in ("auto", "gps", "eye"):
        s = _float(spec, "scale", "Example: --scale 0.5, or --scale auto / gps / eye")
        est = ScaleEstimate(s, "factor", None, "given")
        return est, [est]
    cands = []
    has_cams = scene is not None and len(scene.cameras) > 0
    if has_cams and gps and up is not None and spec in ("auto", "gps"):
        g = scale_from_gps(scene, gps, up)
        cands += [g] if g is not None else []
    if has_cams and ground is not None and spec in ("auto", "eye"):
        e = scale_from_eye_height(scene.cameras.centers, ground)
        cands += [e] if e is not None else []
    if spec != "auto" and not cands:
        what = "GPS positions in the photos" if spec == "gps" else "a ground plane under the cameras"
        raise UserError(f"scale={spec}: found no {what}.", "Use --known-distance or give a number.")
    if not cands:
        return ScaleEstimate(1.0, "none", None, "no camera poses or ground to go by"), []
    return min(cands, key=lambda c: c.uncertainty), cands
