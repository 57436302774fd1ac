"""The densification strategy as the training loop calls it: one adapter per kind.

gsplat's strategies differ in what the loop must do around them: MCMC adds its opacity and scale
regularisers to the loss, takes the next step's position learning rate and keeps no per-splat
running state; the default (3DGS) strategy is capped at ``max_splats`` after each step and may
grow within DashGaussian's budget. A :class:`Densifier` says those things for its kind, so the
loop asks it instead of testing the strategy's class or the config's name; the strategy's state
stays explicit beside it (``TrainState.strategy_state``, what a checkpoint saves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..config import TrainConfig
from .losses import regularisers
from .optim import SplatDefaultStrategy, SplatMCMCStrategy, cap_splats

#: MCMC regularisers (gsplat simple_trainer's ``mcmc`` preset: opacity_reg = scale_reg = 0.01).
MCMC_OPACITY_REG = 0.01
MCMC_SCALE_REG = 0.01


@dataclass
class Densifier:
    """A gsplat strategy and what the loop does around it (see the module docstring)."""

    strategy: Any
    #: ``--densify-budget`` (DashGaussian's growth budget) applies to this kind
    budgetable: ClassVar[bool] = False

    @classmethod
    def build(cls, cfg: TrainConfig, scene_scale: float) -> tuple[Densifier, dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def expected_splats(cfg: TrainConfig, num_points: int) -> int:
        """How many splats training will likely reach (the GPU memory check)."""
        raise NotImplementedError

    def regularise(self, loss: Tensor, params) -> Tensor:
        return loss

    def after_backward(self, params, optimizers, state: dict[str, Any], step: int, info,
                       lr_next: Callable[[], float], max_splats: int) -> None:
        raise NotImplementedError

    def per_splat_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state kept in step when splats are removed outside the strategy."""
        return state

    def check_sanity(self, params, optimizers) -> None:
        self.strategy.check_sanity(params, optimizers)


class DefaultDensifier(Densifier):
    """3DGS clone/split/prune (:class:`~splatkit.train.optim.SplatDefaultStrategy`), capped."""

    budgetable = True

    @classmethod
    def build(cls, cfg: TrainConfig, scene_scale: float) -> tuple[Densifier, dict[str, Any]]:
        s = SplatDefaultStrategy(
            grow_grad2d=cfg.grow_grad2d,
            refine_start_iter=cfg.refine_start,
            refine_stop_iter=cfg.refine_stop,
            refine_every=cfg.refine_every,
            reset_every=cfg.reset_every,
            absgrad=cfg.absgrad,
        )
        return cls(s), s.initialize_state(scene_scale=scene_scale)

    @staticmethod
    def expected_splats(cfg: TrainConfig, num_points: int) -> int:
        return max(num_points * 10, 100_000)

    def after_backward(self, params, optimizers, state, step, info, lr_next, max_splats) -> None:
        self.strategy.step_post_backward(params, optimizers, state, step, info)
        cap_splats(params, optimizers, state, max_splats)


class MCMCDensifier(Densifier):
    """3DGS as MCMC (:class:`~splatkit.train.optim.SplatMCMCStrategy`): a fixed budget."""

    @classmethod
    def build(cls, cfg: TrainConfig, scene_scale: float) -> tuple[Densifier, dict[str, Any]]:
        s = SplatMCMCStrategy(
            cap_max=cfg.max_splats,
            refine_start_iter=cfg.refine_start,
            refine_stop_iter=cfg.refine_stop,
            refine_every=cfg.refine_every,
        )
        return cls(s), s.initialize_state()

    @staticmethod
    def expected_splats(cfg: TrainConfig, num_points: int) -> int:
        return cfg.max_splats

    def regularise(self, loss: Tensor, params) -> Tensor:
        return loss + regularisers(params, MCMC_OPACITY_REG, MCMC_SCALE_REG)

    def after_backward(self, params, optimizers, state, step, info, lr_next, max_splats) -> None:
        self.strategy.step_post_backward(params, optimizers, state, step, info, lr=lr_next())

    def per_splat_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return {}  # MCMC keeps no per-splat running state (only its binomial table)


#: ``TrainConfig.strategy`` -> its adapter: the one place the strategy's name is read.
DENSIFIERS: dict[str, type[Densifier]] = {"default": DefaultDensifier, "mcmc": MCMCDensifier}


def densifier_kind(cfg: TrainConfig) -> type[Densifier]:
    try:
        return DENSIFIERS[cfg.strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {cfg.strategy!r}") from None


def make_densifier(cfg: TrainConfig, scene_scale: float) -> tuple[Densifier, dict[str, Any]]:
    """The adapter of ``cfg.strategy`` and the strategy's initial state."""
    return densifier_kind(cfg).build(cfg, scene_scale)
