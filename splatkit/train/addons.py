"""The optional parts of a training step, behind one object the loop calls at fixed points.

- camera-pose refinement (``pose_opt``, :mod:`.pose`): the training view's pose is corrected;
- exposure compensation (``appearance = "bilagrid"``, :mod:`.appearance`): the rendered image
  passes through the photo's bilateral grid, whose smoothness term joins the loss;
- DashGaussian's resolution schedule (``resolution_schedule = "dash"``, :mod:`.schedule`): the
  view and photo are downscaled early on, and the position learning rate is held meanwhile.

Each keeps its own parameters and Adam; :meth:`Addons.state_dict` goes into the checkpoint's
``extra["addons"]`` so that a resumed run continues bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..config import TrainConfig
from ..render import View
from .appearance import BilateralGrids
from .pose import PoseRefiner
from .schedule import ResolutionSchedule, ScaledData


@dataclass
class Addons:
    pose: PoseRefiner | None = None
    appearance: BilateralGrids | None = None
    schedule: ResolutionSchedule | None = None
    scaled: ScaledData = field(default_factory=ScaledData)

    @classmethod
    def build(cls, cfg: TrainConfig, images: list[Tensor], device: str) -> Addons:
        n, until = len(images), min(cfg.refine_stop, cfg.steps)
        pose = PoseRefiner(n, cfg.pose_opt_lr, cfg.pose_opt_reg, cfg.steps, device) if cfg.pose_opt else None
        grids = BilateralGrids(n, cfg.steps, device) if cfg.appearance == "bilagrid" else None
        dash = cfg.resolution_schedule == "dash"
        schedule = ResolutionSchedule.from_images(images, until, cfg.steps) if dash else None
        return cls(pose=pose, appearance=grids, schedule=schedule)

    def view(self, k: int, view: View, gt: Tensor, step: int) -> tuple[View, Tensor]:
        """Training view ``k`` and its photo as this step trains on them."""
        if self.schedule is not None:
            view, gt = self.scaled.get(k, view, gt, self.schedule.scale_at(step))
        if self.pose is not None:
            view = self.pose.view(view, k)
        return view, gt

    def image(self, k: int, image: Tensor) -> Tensor:
        return image if self.appearance is None else self.appearance.apply(image, k)

    def loss(self, loss: Tensor) -> Tensor:
        return loss if self.appearance is None else loss + self.appearance.loss()

    def lr_step(self, step: int) -> float:
        """The step whose position learning rate this step uses."""
        return step if self.schedule is None else self.schedule.lr_step(step)

    def step(self, step: int) -> None:
        for _, part in self._parts():
            part.step(step)

    def _parts(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in (("pose", self.pose), ("appearance", self.appearance)) if p is not None]

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self._parts()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for name, part in self._parts():
            part.load_state_dict(d[name])
