"""The optional parts of a training step, behind one object the loop calls at fixed points.

- camera-pose refinement (``pose_opt``, :mod:`.pose`): the training view's pose is corrected;
- exposure compensation (``appearance = "bilagrid"``, :mod:`.appearance`): the rendered image
  passes through the photo's bilateral grid, whose smoothness term joins the loss;
- the sky (``sky``, :mod:`.sky`): a learned panorama composited behind the render where the
  splats' alpha leaves room;
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
from .sky import Sky, decision_step, sky_frame


@dataclass
class Addons:
    pose: PoseRefiner | None = None
    appearance: BilateralGrids | None = None
    schedule: ResolutionSchedule | None = None
    scaled: ScaledData = field(default_factory=ScaledData)
    sky: Sky | None = None

    @classmethod
    def build(cls, cfg: TrainConfig, images: list[Tensor], device: str,
              views: list[View] | None = None) -> Addons:  # fmt: skip
        n, until = len(images), min(cfg.refine_stop, cfg.steps)
        pose = PoseRefiner(n, cfg.pose_opt_lr, cfg.pose_opt_reg, cfg.steps, device) if cfg.pose_opt else None
        grids = BilateralGrids(n, cfg.steps, device) if cfg.appearance == "bilagrid" else None
        dash = cfg.resolution_schedule == "dash"
        schedule = ResolutionSchedule.from_images(images, until, cfg.steps) if dash else None
        sky = None
        if getattr(cfg, "sky", "off") != "off" and views:
            import torch

            frame = sky_frame(torch.stack([v.world_to_cam for v in views]))
            sky = Sky(frame, cfg.sky_width, cfg.sky_lr, cfg.sky,
                      decision_step(cfg.steps, cfg.refine_stop), n, device)  # fmt: skip
            sky.init_from_photos(views, images)
        return cls(pose=pose, appearance=grids, schedule=schedule, sky=sky)

    @property
    def sky_on(self) -> bool:
        """Whether the sky is composited behind the renders (the random background is not)."""
        return self.sky is not None and self.sky.active

    def background(self, k: int, view: View, image: Tensor, alpha: Tensor) -> Tensor:
        """Training view ``k``'s render with what lies behind the splats (the sky, when on)."""
        return self.sky.composite(k, view, image, alpha) if self.sky_on else image

    def sky_map(self):
        """The learned sky (:class:`splatkit.sky.SkyMap`), or None when there is none."""
        return self.sky.sky_map() if self.sky is not None else None

    def messages(self) -> list[str]:
        """What a part decided since the last call (said in the log)."""
        if self.sky is None or not self.sky.messages:
            return []
        out, self.sky.messages = self.sky.messages, []
        return out

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
        for name, part in self._parts():
            if name != "sky" or self.sky_on:
                part.step(step)

    def _parts(self) -> list[tuple[str, Any]]:
        parts = (("pose", self.pose), ("appearance", self.appearance), ("sky", self.sky))
        return [(n, p) for n, p in parts if p is not None]

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self._parts()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for name, part in self._parts():
            part.load_state_dict(d[name])
