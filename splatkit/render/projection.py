"""EWA projection of 3D Gaussians to the image plane, following gsplat's CUDA kernel.

Pure PyTorch, any float dtype, differentiable by autograd. The maths matches
``gsplat/cuda/csrc/ProjectionEWA3DGSFused.cu`` (pinhole camera):

- covariance ``R S S^T R^T`` with R from the *normalised* (w, x, y, z) quaternion;
- the Jacobian uses the camera-space x/z and y/z clamped to 1.3x the field of view
  (``lim = (W - cx) / fx + 0.3 * tan_fovx`` etc.); the projected mean uses the unclamped point;
- ``eps2d`` (0.3 px^2) is added to the 2D covariance diagonal; ``conic`` is the inverse of the
  blurred covariance stored as (a, b, c) with sigma = 0.5 (a dx^2 + c dy^2) + b dx dy;
- antialiased: ``compensation = sqrt(max(0, det_orig / det_blur))`` multiplies opacity;
- radius = ceil(extend * sqrt(cov2d_blur diag)) with the opacity-aware
  ``extend = min(3.33, sqrt(2 ln(opacity / (1/255))))`` (3.33 when no opacities are given);
- culled (radii = 0): depth < near or > far, det <= 0, opacity (x compensation) < 1/255,
  both radii <= 0, or the [mean - radius, mean + radius] box entirely off-screen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..splats import Splats
from . import ALPHA_THRESHOLD, RenderSettings, View

#: Gaussian extent in standard deviations when the opacity is unknown (gsplat's 3.33).
MAX_EXTENT = 3.33


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """``quats [..., 4]`` (w, x, y, z), any norm -> rotation matrices ``[..., 3, 3]``."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """``quats [N, 4]`` (wxyz), ``scales [N, 3]`` (activated, > 0) -> covariances ``[N, 3, 3]``."""
    M = quat_to_rotmat(quats) * scales[..., None, :]  # R @ diag(s)
    return M @ M.transpose(-1, -2)


def world_to_camera(means: Tensor, covars: Tensor, world_to_cam: Tensor) -> tuple[Tensor, Tensor]:
    """``means [N, 3]``, ``covars [N, 3, 3]``, ``world_to_cam [4, 4]`` -> camera-frame versions."""
    R = world_to_cam[:3, :3]
    t = world_to_cam[:3, 3]
    means_c = means @ R.T + t
    covars_c = R @ covars @ R.T
    return means_c, covars_c


def camera_centre(world_to_cam: Tensor) -> Tensor:
    """World position ``[3]`` of the camera centre, ``-R^T t``."""
    R = world_to_cam[:3, :3]
    t = world_to_cam[:3, 3]
    return -(R.T @ t)


def project(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    world_to_cam: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
    opacities: Tensor | None = None,  # [N]
    antialiased: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project Gaussians; returns ``(means2d [N, 2], conics [N, 3], depths [N], radii [N, 2] int32,
    compensations [N] | None)``.

    ``compensations`` is returned when ``antialiased``. Culled Gaussians get radii 0, means2d 0 and
    conics 0; their gradients are exactly 0 (no NaN even at depth 0).
    """
    dtype = means.dtype
    world_to_cam = world_to_cam.to(dtype)
    K = K.to(dtype)
    means_c, covars_c = world_to_camera(means, covars, world_to_cam)
    x, y, z = means_c.unbind(-1)
    depths = z

    in_depth = (z >= near) & (z <= far)
    # Culled Gaussians are computed at a harmless point so that no inf/NaN enters autograd.
    zs = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / zs
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(zs)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det_orig = a * c - b * b
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    ok_det = det > 0
    dets = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c / dets, -b / dets, a / dets], dim=-1)
    compensations = None
    if antialiased:
        compensations = torch.sqrt(torch.clamp(det_orig / dets, min=0.0))

    with torch.no_grad():
        valid = in_depth & ok_det
        extend = torch.full_like(z, MAX_EXTENT)
        if opacities is not None:
            op = opacities.detach().to(dtype)
            if compensations is not None:
                op = op * compensations.detach()
            valid &= op >= ALPHA_THRESHOLD
            ratio = torch.clamp(op / ALPHA_THRESHOLD, min=1.0)
            extend = torch.clamp(torch.sqrt(2.0 * torch.log(ratio)), max=MAX_EXTENT)
        rx = torch.ceil(extend * torch.sqrt(torch.clamp(a.detach(), min=0.0)))
        ry = torch.ceil(extend * torch.sqrt(torch.clamp(c.detach(), min=0.0)))
        valid &= (rx > 0) | (ry > 0)
        mx, my = means2d.detach().unbind(-1)
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], dim=-1)
        radii = torch.where(valid[:, None], radii, torch.zeros_like(radii)).to(torch.int32)

    means2d = torch.where(valid[:, None], means2d, torch.zeros_like(means2d))
    conics = torch.where(valid[:, None], conics, torch.zeros_like(conics))
    return means2d, conics, depths, radii, compensations


def project_splats(splats: Splats, view: View, settings: RenderSettings):
    """Project activated splats into ``view``, in the dtype of ``splats.means``.

    Returns ``(means2d [N,2], conics [N,3], depths [N], radii [N,2], opacities [N], w2c [4,4])``
    with the antialiasing compensation already applied to ``opacities``: the part every
    rasterizing backend shares.
    """
    dtype = splats.means.dtype
    w2c = view.world_to_cam.to(dtype)
    covars = quat_scale_to_covar(splats.quats, splats.scales)
    opacities = splats.opacities
    means2d, conics, depths, radii, comp = project(
        splats.means, covars, w2c, view.K.to(dtype), view.width, view.height,
        eps2d=settings.eps2d, near=settings.near_plane, far=settings.far_plane,
        opacities=opacities, antialiased=settings.antialiased,
    )  # fmt: skip
    if comp is not None:
        opacities = opacities * comp
    return means2d, conics, depths, radii, opacities, w2c
