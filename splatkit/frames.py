"""Every change of coordinate frame splatkit does, in one place (any stage may import it).

Camera axes (the camera side of a pose; the world frame is left as it is):

``opencv``
    COLMAP's and splatkit's: x right, y down, z forward (``Cameras.world_to_cam``).
``opengl``
    ``transforms.json`` and three.js (the viewer): x right, y up, z backward. A camera-to-world
    pose changes by :data:`CV_TO_GL` (= :data:`GL_TO_CV`, its own inverse) on the right.

World frames, in the order the export goes through them:

``colmap``
    The SfM world: arbitrary orientation, origin and scale; cameras in OpenCV axes
    (x right, y down, z forward). The splats are trained in this frame.
``upright``
    splatkit's normalised world: right-handed, metres, **+Z up**, **+X forward** (the main
    viewing direction), +Y left, origin on the floor below the scene centre. Reached from
    ``colmap`` by a similarity ``x_up = s * R @ (x - o)`` (:class:`Similarity`, estimated in
    :mod:`splatkit.export.unreal`).
``ply:<plugin>``
    The frame the PLY is written in, chosen per plugin so that the plugin's *own* fixed PLY->UE
    mapping (its axes ``M``: :data:`RDF`, :data:`ITALINK_AXES`; each preset of
    :mod:`splatkit.export.plugins` names its own) puts Unreal +Z up and +X forward. Metres
    (plugins multiply by 100 themselves). Reached from ``upright`` by a proper rotation
    (:func:`upright_to_ply`).
``spz``
    Niantic's SPZ files: RUB (x right, y up, z back), a half turn about x from the PLY's RDF
    (:data:`RDF_TO_RUB`; the SH only change sign, :data:`RUB_SH_SIGNS`).
``gltf``
    glTF files (splats with ``KHR_gaussian_splatting``, the collision mesh): +Y up, right-handed,
    metres, reached from ``upright`` by the rotation :data:`UPRIGHT_TO_GLTF`.
``ue``
    Unreal: left-handed, centimetres, X forward, Y right, Z up. The same physical axes as
    ``upright`` with Y negated (``ue = 100 * (x, -y, z)``); this mirror in *coordinates* is only
    the change of handedness convention, not a mirror of the scene.

Applying a similarity to splats (:func:`transform_splats`): means ``s R (x - o)``, rotations
``q_R * q``, log-scales ``+ log s``, and the SH bands 1-3 rotated (:func:`sh_rotation`), since no
plugin rotates SH itself: it evaluates the SH with the view direction expressed in the PLY frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splatkit.render.sh import sh_bases
from splatkit.splats import Splats

# --------------------------------------------------------------------------------------------
# Camera axes

#: OpenCV camera axes <-> OpenGL camera axes (flip y and z), applied on the camera side of a
#: camera-to-world pose: ``c2w_gl = c2w_cv @ CV_TO_GL``, ``c2w_cv = c2w_gl @ GL_TO_CV``.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])
GL_TO_CV = CV_TO_GL  # its own inverse

#: OpenCV camera axes (x right, y down, z forward) -> upright-style (x forward, y left, z up).
OPENCV_TO_FLU = ((0.0, 0.0, 1.0), (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0))

# --------------------------------------------------------------------------------------------
# Plugin PLY frames and Unreal (``ue = 100 * M @ ply``; every plugin also multiplies by 100).
# Sources: ../shared/notes/unreal-plugins.md (the plugins' PLY readers).

Axes = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]

#: NanoGS (PLYFileReader.cpp) and PICOSplat (splat_ply_conversion.h): UE = 100 * (z, x, -y):
#: PLY +Z forward, +X right, -Y up (COLMAP/OpenCV "RDF"). XV3DGS, Luma and UEFN are closed
#: source: they are assumed to follow this de-facto convention (unverified); ``generic`` is it too.
RDF: Axes = ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
#: Italink (GaussianSplattingPointCloud.cpp): UE = 100 * (x, -z, -y): PLY +X forward, -Y up.
ITALINK_AXES: Axes = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, -1.0, 0.0))

#: ``ue = UPRIGHT_TO_UE_AXES @ upright * 100``: same physical axes, Y negated (handedness).
UPRIGHT_TO_UE_AXES = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))


def ply_to_ue_matrix(axes: Axes) -> Tensor:
    """``[3, 3]`` M with ``ue_cm = 100 * M @ ply_m`` for a plugin's ``axes`` (float64)."""
    return torch.tensor(axes, dtype=torch.float64)


def ply_to_ue(points: Tensor, axes: Axes) -> Tensor:
    """Positions in a plugin's PLY frame (metres) -> where the plugin puts them in UE (cm)."""
    return 100.0 * points.double() @ ply_to_ue_matrix(axes).T


def upright_to_ue(points: Tensor) -> Tensor:
    """Positions in the upright frame (metres) -> Unreal (cm)."""
    return 100.0 * points.double() @ torch.tensor(UPRIGHT_TO_UE_AXES, dtype=torch.float64).T


def upright_to_ue_directions(d: Tensor) -> Tensor:
    """Directions in the upright frame (+Y left) -> Unreal's axes (+Y right): Y negated, as for
    positions (:data:`UPRIGHT_TO_UE_AXES`) without the centimetres; its own inverse. The sky's
    panorama (:mod:`splatkit.export.sky_export`) is read and written with it."""
    return d * d.new_tensor([1.0, -1.0, 1.0])


def upright_to_ply(axes: Axes) -> Tensor:
    """The proper rotation ``[3, 3]`` taking upright coordinates to the PLY frame of a plugin
    whose mapping is ``axes``.

    Solves ``M @ ply = F @ upright`` (F = :data:`UPRIGHT_TO_UE_AXES`): ``R = M^-1 F``. Both M
    and F change handedness, so R is a rotation (det +1) and the splats are not mirrored.
    """
    M = ply_to_ue_matrix(axes)
    F = torch.tensor(UPRIGHT_TO_UE_AXES, dtype=torch.float64)
    return torch.linalg.solve(M, F)


#: ``gltf = UPRIGHT_TO_GLTF @ upright``: glTF's +Y up (right-handed, metres), chosen so that
#: Unreal's glTF import, ``ue = 100 * (x, z, y)`` (the inverse of Epic's glTF exporter's
#: ``FGLTFConverterUtility::ConvertVector``: UE (X, Y, Z) -> glTF (X, Z, Y)), puts a file
#: written in this frame exactly where the splats land: gltf +X = forward, +Y = up,
#: +Z = right (upright -Y). A proper rotation.
UPRIGHT_TO_GLTF = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))
#: ``ue = 100 * GLTF_TO_UE_AXES @ gltf``: Unreal's glTF import (Y and Z swapped, cm).
GLTF_TO_UE_AXES = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0))


def upright_to_gltf() -> Tensor:
    """The rotation ``[3, 3]`` from the upright frame to the glTF frame (see :data:`UPRIGHT_TO_GLTF`)."""
    return torch.tensor(UPRIGHT_TO_GLTF, dtype=torch.float64)


def gltf_to_ue(points: Tensor) -> Tensor:
    """Positions in a glTF file (metres) -> where Unreal's glTF import puts them (cm)."""
    return 100.0 * points.double() @ torch.tensor(GLTF_TO_UE_AXES, dtype=torch.float64).T


#: PLY frame (RDF) -> SPZ's RUB: a half turn about x.
RDF_TO_RUB = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
#: The SH coefficients under RDF -> RUB (a half turn about x): each one only changes sign
#: (``sh_rotation(RDF_TO_RUB, l)`` is diagonal; checked in the tests).
RUB_SH_SIGNS = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)


# --------------------------------------------------------------------------------------------
# Similarity transforms


@dataclass
class Similarity:
    """``y = scale * R @ (x - origin)``; float64 tensors. Identity by default."""

    R: Tensor
    origin: Tensor
    scale: float = 1.0

    @classmethod
    def identity(cls) -> Similarity:
        return cls(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 1.0)

    def apply(self, x: Tensor) -> Tensor:
        return (self.scale * (x.double() - self.origin) @ self.R.T).to(x.dtype)

    def then(self, other: Similarity) -> Similarity:
        """``other`` after ``self``: y = other(self(x))."""
        R = other.R @ self.R
        s = self.scale * other.scale
        # other(self(x)) = so*Ro(ss*Rs(x - os) - oo) = s*R(x - os - (ss*Rs)^-1 oo)
        origin = self.origin + self.R.T @ other.origin / self.scale
        return Similarity(R, origin, s)

    def matrix(self) -> Tensor:
        """``[4, 4]`` homogeneous matrix of the map."""
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = self.scale * self.R
        T[:3, 3] = -self.scale * self.R @ self.origin
        return T

    def transform_world_to_cam(self, world_to_cam: Tensor) -> Tensor:
        """A camera that sees the transformed scene as ``world_to_cam`` saw the original.

        Camera space is scaled by ``scale`` (a uniform scale of camera space leaves the
        perspective image unchanged), so the result is again rigid.
        """
        w2c = world_to_cam.double()
        out = torch.eye(4, dtype=torch.float64).repeat(*w2c.shape[:-2], 1, 1)
        Rc, tc = w2c[..., :3, :3], w2c[..., :3, 3]
        out[..., :3, :3] = Rc @ self.R.T
        out[..., :3, 3] = self.scale * (tc + (Rc @ self.origin[:, None])[..., 0])
        return out.to(world_to_cam.dtype)


# --------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z)


def rotmat_to_quat(R: Tensor) -> Tensor:
    """``[3, 3]`` rotation -> unit quaternion ``[4]`` (w, x, y, z), float64."""
    R = R.double()
    t = R.trace()
    if t > 0:
        s = math.sqrt(float(t) + 1.0) * 2
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + float(R[0, 0] - R[1, 1] - R[2, 2])) * 2
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + float(R[1, 1] - R[0, 0] - R[2, 2])) * 2
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + float(R[2, 2] - R[0, 0] - R[1, 1])) * 2
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = torch.tensor([float(v) for v in q], dtype=torch.float64)
    return q / q.norm()


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of (w, x, y, z) quaternions, broadcasting."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


# --------------------------------------------------------------------------------------------
# Real SH rotation (in the basis of splatkit/render/sh.py)

def sh_band(degree: int, d: Tensor) -> Tensor:
    """Basis functions of band ``degree`` (1-3) at unit directions ``d [..., 3]``: the renderer's
    own basis (:func:`splatkit.render.sh.sh_bases`), so rotation and rendering cannot disagree."""
    if not 1 <= degree <= 3:
        raise ValueError(degree)
    return sh_bases(degree, d)[..., degree * degree : (degree + 1) ** 2]


def _fibonacci_sphere(n: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack(
        [torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1
    )


def sh_rotation(R: Tensor, degree: int) -> Tensor:
    """``[2l+1, 2l+1]`` D with ``sum_m (D c)_m Y_m(R d) = sum_m c_m Y_m(d)`` for every d.

    Solved by least squares on 64 well-spread directions (exact: each band is a
    (2l+1)-dimensional space closed under rotation, so the system is consistent).
    """
    d = _fibonacci_sphere(64)
    A = sh_band(degree, d @ R.double().T)  # Y(R d)
    B = sh_band(degree, d)  # Y(d)
    return torch.linalg.lstsq(A, B).solution  # A @ D = B


def rotate_sh(shN: Tensor, R: Tensor) -> Tensor:
    """Rotate ``shN [N, K-1, 3]`` (coefficient-major) by R: band by band."""
    out = shN.clone()
    deg = math.isqrt(shN.shape[1] + 1) - 1
    for l in range(1, min(deg, 3) + 1):  # noqa: E741
        a, b = l * l - 1, (l + 1) ** 2 - 1
        D = sh_rotation(R, l).to(shN.dtype)
        out[:, a:b] = torch.einsum("ij,njc->nic", D, shN[:, a:b])
    if deg > 3:
        raise ValueError("SH rotation is implemented up to degree 3")
    return out


def transform_splats(splats: Splats, T: Similarity) -> Splats:
    """Apply ``T`` to splats: positions, rotations, sizes and view-dependent colour."""
    if abs(float(torch.linalg.det(T.R)) - 1) > 1e-6:
        raise ValueError("transform_splats needs a proper rotation (det +1)")
    dt = splats.means.dtype
    qR = rotmat_to_quat(T.R).to(dt)
    return Splats(
        means=T.apply(splats.means),
        log_scales=splats.log_scales + math.log(T.scale),
        quats=quat_multiply(qR.expand_as(splats.quats), splats.quats),
        opacity_logits=splats.opacity_logits.clone(),
        sh0=splats.sh0.clone(),
        shN=rotate_sh(splats.shN, T.R),
    )


def rotation_about(axis: Tensor, angle: float) -> Tensor:
    """Rodrigues: rotation by ``angle`` radians about ``axis``, float64 ``[3, 3]``."""
    k = axis.double() / axis.double().norm()
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """The smallest rotation taking direction ``a`` to direction ``b``."""
    a = a.double() / a.double().norm()
    b = b.double() / b.double().norm()
    v = torch.linalg.cross(a, b)
    c = float(a @ b)
    if v.norm() < 1e-12:
        if c > 0:
            return torch.eye(3, dtype=torch.float64)
        perp = torch.tensor([1.0, 0, 0], dtype=torch.float64)
        if abs(float(a[0])) > 0.9:
            perp = torch.tensor([0, 1.0, 0], dtype=torch.float64)
        return rotation_about(torch.linalg.cross(a, perp), math.pi)
    return rotation_about(v, math.atan2(float(v.norm()), c))
