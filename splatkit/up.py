"""Which way is up, from evidence: the ground under the cameras, then the cameras themselves.

:func:`estimate_up` tries, in order:

1. **the cameras** (:func:`camera_up`):
   - *nadir*: all cameras look the same way and stand in a plane across that direction (a drone
     survey grid), or in a line along which their image tops point (one survey strip): up is
     opposite their mean viewing direction;
   - *level cameras*: people hold cameras with little roll, so up is perpendicular to every
     camera's x axis (least eigenvector of sum x x^T), when the x axes span a plane;
   - *level walk*: one heading (parallel x axes) along a line of positions: up is perpendicular
     to both (walking on level ground);
   - *camera plane*: cameras spread in a plane (walked around at eye height): its normal;
   - *camera up average*: the mean of the cameras' up (-y) vectors.
2. **ground plane** of the sparse points (RANSAC, then a least-squares refit of the inliers),
   among planes within :data:`GROUND_MAX_TILT_DEG` of the cameras' estimate and lying below
   most cameras: its normal, pointing towards the cameras, is up when the camera method is
   weak (camera plane, average up: a walk with one heading, a pitched capture); it also gives
   the ground height (origin, eye-height scale).

Each result carries an uncertainty in degrees (bootstrap over inliers or cameras).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: How far (degrees) a ground plane may tilt from each camera method's up and still count:
#: the camera methods' own systematic error (level cameras: the photographers' roll; the
#: average up: the cameras' pitch).
GROUND_MAX_TILT_DEG = {
    "nadir-cameras": 10.0,
    "level-cameras": 10.0,
    "level-walk": 10.0,
    "camera-plane": 20.0,
    "camera-up-average": 30.0,
}
#: Camera methods trusted over a ground plane (which may slope); the others defer to it.
STRONG_CAMERA_METHODS = ("nadir-cameras", "level-cameras", "level-walk")
#: Bootstrap resamples for the uncertainties.
BOOTSTRAP = 16


@dataclass
class Plane:
    """Points x with ``normal . x = offset``; ``normal`` unit (float64), pointing up."""

    normal: Tensor
    offset: float
    inliers: int = 0
    inlier_rms: float = 0.0

    def height(self, x: Tensor) -> Tensor:
        """Signed distance of points ``[N, 3]`` above the plane."""
        return x.double() @ self.normal - self.offset


@dataclass
class UpEstimate:
    """World up (unit, float64), how it was found and how sure (1-sigma degrees, None: unknown)."""

    vector: Tensor
    method: str
    uncertainty_deg: float | None = None
    ground: Plane | None = None
    candidates: dict = field(default_factory=dict)


def _unit(v: Tensor) -> Tensor:
    return v / v.norm().clamp(min=1e-12)


def angle_deg(a: Tensor, b: Tensor) -> float:
    """Angle between two directions, degrees."""
    c = float(_unit(a.double()) @ _unit(b.double()))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def camera_axes(w2c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World directions of the cameras' x (right), -y (up) and z (forward) axes, ``[C, 3]`` each."""
    R = w2c[:, :3, :3].double()
    return R[:, 0, :], -R[:, 1, :], R[:, 2, :]


def _spread(x: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values and right singular vectors of centred points."""
    c = x - x.mean(0)
    _, S, Vh = torch.linalg.svd(c, full_matrices=False)
    return S, Vh


def nadir_up(w2c: Tensor, centers: Tensor) -> Tensor | None:
    """Up for a downward-looking survey, or None when the cameras do not look like one."""
    _, upv, fwd = camera_axes(w2c)
    fm = fwd.mean(0)
    if len(fwd) < 3 or fm.norm() < 0.95:
        return None
    fm = _unit(fm)
    c = centers.double() - centers.double().mean(0)
    along = c @ fm
    S, Vh = _spread(c - along[:, None] * fm)
    if S[0] < 1e-9 or S[0] < 3.0 * float(along.std()) * math.sqrt(len(c)):
        return None  # not spread across the viewing direction
    heading_varies = upv.mean(0).norm() < 0.9  # image tops turn (serpentine flight lines)
    if S[1] > 0.3 * S[0]:  # a grid
        return -fm if heading_varies else None  # a grid with fixed heading may be a facade
    line = Vh[0]
    tops_along_line = float((upv @ line).abs().mean()) > math.cos(math.radians(45))
    return -fm if tops_along_line else None


def _level_up(right: Tensor, mean_up: Tensor) -> Tensor | None:
    if len(right) < 2:
        return None
    evals, evecs = torch.linalg.eigh(right.T @ right / len(right))
    if evals[1] > 0.02 * evals[2] and evals[0] < 0.2 * evals[1]:
        up = evecs[:, 0]
        return up if up @ mean_up >= 0 else -up
    return None


def _walk_up(right: Tensor, centers: Tensor, mean_up: Tensor) -> Tensor | None:
    """Parallel x axes and positions along a line not parallel to them: up = x cross line."""
    if len(right) < 3 or right.mean(0).norm() < 0.95:
        return None
    S, Vh = _spread(centers.double())
    if S[0] < 1e-9 or S[1] > 0.3 * S[0]:
        return None
    up = torch.linalg.cross(_unit(right.mean(0)), Vh[0])
    if up.norm() < 0.5:  # walking sideways, along the x axes
        return None
    up = _unit(up)
    return up if up @ mean_up >= 0 else -up


def _plane_up(centers: Tensor, mean_up: Tensor) -> Tensor | None:
    if len(centers) < 3:
        return None
    S, Vh = _spread(centers.double())
    if S[1] <= 1e-9 or S[2] >= 0.3 * S[1]:
        return None
    n = Vh[2] if Vh[2] @ mean_up >= 0 else -Vh[2]
    return _unit(n + mean_up) if n @ mean_up > math.cos(math.radians(30)) else None


def _camera_up_once(w2c: Tensor, centers: Tensor) -> tuple[Tensor, str]:
    right, upv, _ = camera_axes(w2c)
    mean_up = _unit(upv.mean(0))
    up = nadir_up(w2c, centers)
    if up is not None:
        return up, "nadir-cameras"
    for method, fn in (
        ("level-cameras", lambda: _level_up(right, mean_up)),
        ("level-walk", lambda: _walk_up(right, centers, mean_up)),
        ("camera-plane", lambda: _plane_up(centers, mean_up)),
    ):
        up = fn()
        if up is not None:
            return up, method
    return mean_up, "camera-up-average"


def camera_up(w2c: Tensor, centers: Tensor, seed: int = 0) -> UpEstimate:
    """Up from the camera poses alone, with a bootstrap (over cameras) uncertainty."""
    w2c, centers = w2c.double(), centers.double()
    up, method = _camera_up_once(w2c, centers)
    n = len(w2c)
    unc = None
    if n >= 4:
        g = torch.Generator().manual_seed(seed)
        angles = []
        for _ in range(BOOTSTRAP):
            idx = torch.randint(0, n, (n,), generator=g)
            u, _ = _camera_up_once(w2c[idx], centers[idx])
            angles.append(angle_deg(u, up))
        unc = float(torch.tensor(angles).square().mean().sqrt())
    return UpEstimate(up, method, unc)


def _fit_plane(pts: Tensor) -> tuple[Tensor, float]:
    centre = pts.mean(0)
    _, _, Vh = torch.linalg.svd(pts - centre, full_matrices=False)
    n = Vh[2]
    return n, float(n @ centre)


def _ransac_planes(pts: Tensor, prior: Tensor, tol: float, iters: int, g, max_tilt: float) -> list:
    """Candidate (normal, inlier mask) pairs with normals near ``prior``, best first."""
    n_pts = len(pts)
    idx = torch.randint(0, n_pts, (iters, 3), generator=g)
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    nrm = torch.linalg.cross(b - a, c - a)
    ok = nrm.norm(dim=1) > 1e-12
    nrm = nrm[ok] / nrm[ok].norm(dim=1, keepdim=True)
    a = a[ok]
    nrm = torch.where((nrm @ prior)[:, None] >= 0, nrm, -nrm)
    keep = nrm @ prior > math.cos(math.radians(max_tilt))
    nrm, a = nrm[keep], a[keep]
    if len(nrm) == 0:
        return []
    d = ((pts[None, :, :] - a[:, None, :]) * nrm[:, None, :]).sum(-1).abs()  # [H, N]
    counts = (d < tol).sum(1)
    order = counts.argsort(descending=True)[:8]
    return [(nrm[i], d[i] < tol) for i in order]


def ground_plane(
    points: Tensor, centers: Tensor, prior: Tensor, max_tilt: float = 30.0, seed: int = 0
) -> Plane | None:
    """The ground: the best-supported plane within ``max_tilt`` degrees of ``prior`` with most
    cameras above it."""
    pts = points.double()
    if len(pts) < 30 or len(centers) < 1:
        return None
    g = torch.Generator().manual_seed(seed)
    if len(pts) > 4000:
        pts = pts[torch.randperm(len(pts), generator=g)[:4000]]
    scale = float((centers.double() - centers.double().mean(0)).norm(dim=1).max())
    scale = max(scale, float((pts - pts.median(0).values).norm(dim=1).median()))
    tol = 0.01 * scale
    best = None
    for _normal, mask in _ransac_planes(pts, _unit(prior.double()), tol, 400, g, max_tilt):
        inl = pts[mask]
        if len(inl) < max(15, 0.01 * len(pts)):
            continue
        n, off = _fit_plane(inl)
        n, off = (n, off) if n @ prior >= 0 else (-n, -off)
        heights = centers.double() @ n - off
        if float((heights > tol).double().mean()) < 0.8:
            continue  # not under the cameras: a wall or a ceiling
        rms = float(((inl @ n - off) ** 2).mean().sqrt())
        if best is None or len(inl) > best.inliers:
            best = Plane(n, off, len(inl), rms)
    return best


def _plane_uncertainty(points: Tensor, plane: Plane) -> float:
    """1-sigma angle (degrees) of a least-squares plane normal: residual rms / (in-plane spread
    x sqrt(inliers)), about each in-plane axis, combined."""
    pts = points.double()
    inl = pts[plane.height(pts).abs() < 3 * max(plane.inlier_rms, 1e-12)]
    if len(inl) < 10:
        return float("nan")
    S, _ = _spread(inl)
    n = len(inl)
    sig = S[:2] / math.sqrt(n)  # in-plane standard deviations
    rms = float(S[2]) / math.sqrt(n)
    return math.degrees(math.sqrt(rms**2 / n * float((1 / sig.clamp(min=1e-12) ** 2).sum())))


def estimate_up(w2c: Tensor, centers: Tensor, points: Tensor | None = None) -> UpEstimate:
    """World up from the cameras, or from the ground plane of the sparse points when the
    cameras alone are weak evidence; ``ground`` (normal = the up returned) when one is found."""
    cam = camera_up(w2c, centers)
    candidates = {cam.method: cam.vector.tolist()}
    plane = None
    if points is not None and len(points) >= 30:
        plane = ground_plane(points, centers, cam.vector, GROUND_MAX_TILT_DEG[cam.method])
    if plane is None:
        cam.candidates = candidates
        return cam
    candidates["ground-plane"] = plane.normal.tolist()
    if cam.method in STRONG_CAMERA_METHODS:
        up, method, unc = cam.vector, cam.method, cam.uncertainty_deg
    else:
        up, method, unc = plane.normal, "ground-plane", _plane_uncertainty(points, plane)
    inl = points.double()[plane.height(points).abs() < 3 * max(plane.inlier_rms, 1e-12)]
    ground = Plane(up, float((inl @ up).median()), plane.inliers, plane.inlier_rms)
    return UpEstimate(up, method, unc, ground, candidates)


def estimate_forward(w2c: Tensor, up: Tensor) -> Tensor:
    """The main viewing direction, horizontal: the cameras' mean forward, or when those cancel
    out (captures all around an object), the first camera's forward; looking straight down,
    the cameras' mean image-up."""
    _, cam_up, fwd = camera_axes(w2c)
    up = up.double()
    for cand in (fwd.mean(0), fwd[0], cam_up.mean(0), cam_up[0]):
        f = cand - (cand @ up) * up
        if f.norm() > 0.3:
            return f / f.norm()
    helper = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    helper = helper if abs(float(up[0])) < 0.9 else torch.tensor([0, 1.0, 0], dtype=torch.float64)
    f = helper - (helper @ up) * up
    return f / f.norm()


def basis_from_up_forward(up: Tensor, forward: Tensor) -> Tensor:
    """Rotation R with R @ up = +Z and R @ forward = +X (rows: new axes in old coordinates)."""
    z = up / up.norm()
    x = forward - (forward @ z) * z
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z]).double()
