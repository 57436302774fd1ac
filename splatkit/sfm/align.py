"""Pose accuracy against reference cameras: similarity (Umeyama) alignment and errors.

Used by the tests and ``scripts/bench_sfm.py``. All poses here are camera-to-world with OpenCV
camera axes; ``R_c2w`` is ``[N, 3, 3]``, centres ``[N, 3]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..frames import GL_TO_CV


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``dst ~ s * R @ src + t`` (least squares, Umeyama 1991). Returns (s, R, t)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s)
    t = mu_d - s * R @ mu_s
    return s, R, t


@dataclass
class PoseErrors:
    """Errors of estimated cameras against reference ones after a similarity alignment."""

    rot_deg: np.ndarray  # [N] angle between aligned and reference camera orientations
    center: np.ndarray  # [N] distance between aligned and reference centres (reference units)
    extent: float  # reference scene extent: 1.1 x largest distance of a centre from their mean

    @property
    def median_rot_deg(self) -> float:
        return float(np.median(self.rot_deg))

    @property
    def max_rot_deg(self) -> float:
        return float(np.max(self.rot_deg))

    @property
    def median_center_frac(self) -> float:
        """Median centre error as a fraction of the reference scene extent."""
        return float(np.median(self.center) / self.extent)


def pose_errors(
    est_R_c2w: np.ndarray, est_C: np.ndarray, ref_R_c2w: np.ndarray, ref_C: np.ndarray
) -> PoseErrors:
    """Align estimated centres to reference centres (similarity), then compare poses."""
    s, R, t = umeyama(est_C, ref_C)
    C_al = (s * (R @ np.asarray(est_C, np.float64).T)).T + t
    R_al = R[None] @ np.asarray(est_R_c2w, np.float64)
    rel = np.transpose(R_al, (0, 2, 1)) @ np.asarray(ref_R_c2w, np.float64)
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    rot = np.degrees(np.arccos(cos))
    center = np.linalg.norm(C_al - ref_C, axis=1)
    ref_C = np.asarray(ref_C, np.float64)
    extent = 1.1 * float(np.linalg.norm(ref_C - ref_C.mean(0), axis=1).max())
    return PoseErrors(rot, center, extent)


def scene_errors(scene, ref: dict[str, tuple[np.ndarray, np.ndarray]]) -> PoseErrors:
    """Errors of a Scene's cameras against ``ref``: name -> (R_c2w, C). Matched by file stem."""
    by_stem = {Path(k).stem: v for k, v in ref.items()}
    c2w = scene.cameras.cam_to_world.double().numpy()
    est_R, est_C, ref_R, ref_C = [], [], [], []
    for i, n in enumerate(scene.cameras.names):
        r = by_stem.get(Path(n).stem)
        if r is None:
            continue
        est_R.append(c2w[i, :3, :3])
        est_C.append(c2w[i, :3, 3])
        ref_R.append(r[0])
        ref_C.append(r[1])
    if len(est_C) < 3:
        raise ValueError(f"only {len(est_C)} cameras match the reference by name")
    return pose_errors(np.stack(est_R), np.stack(est_C), np.stack(ref_R), np.stack(ref_C))


def read_strecha_cameras(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Strecha ``*.camera`` files: image name -> (R camera-to-world, centre C).

    File format: 3 lines K, 1 line distortion, 3 lines R (camera-to-world), 1 line C, 1 line w h.
    """
    out = {}
    for f in sorted(Path(folder).glob("*.camera")):
        v = np.array(f.read_text().split(), np.float64)
        out[f.name[: -len(".camera")]] = (v[12:21].reshape(3, 3), v[21:24])
    return out


def read_transforms_cameras(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``transforms.json`` frames: image path -> (R camera-to-world in OpenCV axes, centre)."""
    meta = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for fr in meta["frames"]:
        c2w = np.asarray(fr["transform_matrix"], np.float64) @ GL_TO_CV
        out[fr["file_path"]] = (c2w[:3, :3], c2w[:3, 3])
    return out
