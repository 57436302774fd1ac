"""Camera-pose refinement (``--pose-opt``): a learnable SE(3) correction per training camera.

The recipe of gsplat's ``examples/simple_trainer.py`` (``CameraOptModule``, v1.5.3):

- one 9-vector per training camera: a translation ``dx`` (3) and a rotation in the continuous
  6D representation of Zhou et al. (CVPR 2019; the first two rows of the matrix, Gram-Schmidt
  orthonormalised), both added to the identity and initialised at zero, so training starts from
  the SfM poses exactly;
- the correction ``T = [R(d6 + id) | dx]`` acts in the camera's own frame:
  ``cam_to_world' = cam_to_world @ T``, i.e. ``world_to_cam' = T^-1 @ world_to_cam`` (computed
  in closed form, ``T^-1 = [R^T | -R^T dx]``, rather than by a general matrix inverse);
- Adam at ``pose_opt_lr`` (1e-5) with ``weight_decay = pose_opt_reg`` (1e-6, pulls the deltas
  back towards the SfM poses), the learning rate decaying exponentially to 1 % by the last step.

Units: ``dx`` is in splatkit's normalised world (cameras within a unit sphere), as gsplat's is in
its normalised world; the learning rates are comparable.

Held-out evaluation stays honest, as in simple_trainer: test cameras are never optimised (they
have no delta) and are rendered from their SfM poses; the refined training poses only serve the
fit. A splat model that drifted with the corrected cameras scores worse on the held-out views,
it is never helped by them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..render import View

#: 6D representation of the identity rotation (first two rows of I).
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """``[..., 6]`` -> rotation matrices ``[..., 3, 3]`` whose first two rows are the
    Gram-Schmidt orthonormalisation of the two 3-vectors (Zhou et al. 2019, section B)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def apply_delta(world_to_cam: Tensor, delta: Tensor) -> Tensor:
    """``world_to_cam [4, 4]`` corrected by ``delta [9]`` (dx, d6): ``T^-1 @ world_to_cam``."""
    R = rotation_6d_to_matrix(delta[3:] + delta.new_tensor(IDENTITY_6D))
    dx = delta[:3]
    top = torch.cat([R.T, -(R.T @ dx)[:, None]], dim=1)  # [3, 4] of T^-1
    w2c = world_to_cam.to(delta.dtype)
    return torch.cat([top @ w2c, w2c[3:]], dim=0)


class PoseRefiner:
    """The per-camera deltas, their Adam and its learning-rate decay."""

    def __init__(self, n_cameras: int, lr: float, weight_decay: float, steps: int,
                 device: str | torch.device = "cpu") -> None:
        self.deltas = torch.nn.Parameter(torch.zeros(n_cameras, 9, device=device))
        self.lr0, self.steps = float(lr), max(int(steps), 1)
        self.optimizer = torch.optim.Adam([self.deltas], lr=self.lr0, weight_decay=weight_decay)

    def view(self, view: View, k: int) -> View:
        """Training view ``k`` seen through its corrected pose (autograd reaches the delta)."""
        return View(apply_delta(view.world_to_cam, self.deltas[k]), view.K, view.width, view.height)

    def step(self, step: int) -> None:
        """Adam step on the deltas, then set the learning rate of the next step."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr0 * 0.01 ** (min(step + 1, self.steps) / self.steps)

    @torch.no_grad()
    def world_to_cams(self, views: list[View]) -> Tensor:
        """The refined ``[C, 4, 4]`` world-to-camera matrices of the training views."""
        return torch.stack([apply_delta(v.world_to_cam, self.deltas[k]) for k, v in enumerate(views)])

    def state_dict(self) -> dict[str, Any]:
        return {"deltas": self.deltas.detach().cpu().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        with torch.no_grad():
            self.deltas.copy_(d["deltas"].to(self.deltas.device))
        self.optimizer.load_state_dict(d["optimizer"])
