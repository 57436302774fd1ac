"""The densification adapters (splatkit/train/densify.py): what the loop asks of each strategy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from splatkit.config import TrainConfig
from splatkit.splats import Splats
from splatkit.train.densify import DENSIFIERS, DefaultDensifier, MCMCDensifier, make_densifier
from splatkit.train.losses import regularisers
from splatkit.train.optim import (
    SplatDefaultStrategy,
    SplatMCMCStrategy,
    make_optimizers,
    splats_to_params,
    strategy_info,
)


def _params(n: int = 50):
    return splats_to_params(Splats.random(n, 1, seed=0))


def test_every_strategy_the_config_offers_has_an_adapter():
    (field,) = [f for f in dataclasses.fields(TrainConfig) if f.name == "strategy"]
    assert set(field.metadata["choices"]) == set(DENSIFIERS)
    for name, kind in DENSIFIERS.items():
        d, state = make_densifier(TrainConfig(strategy=name), 1.0)
        assert isinstance(d, kind) and isinstance(state, dict)
    assert isinstance(make_densifier(TrainConfig(strategy="mcmc"), 1.0)[0].strategy, SplatMCMCStrategy)
    assert isinstance(make_densifier(TrainConfig(strategy="default"), 1.0)[0].strategy, SplatDefaultStrategy)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_densifier(TrainConfig(strategy="nope"), 1.0)


def test_mcmc_adds_its_regularisers_the_default_does_not():
    params, loss = _params(), torch.tensor(1.0)
    mcmc, _ = make_densifier(TrainConfig(strategy="mcmc"), 1.0)
    default, _ = make_densifier(TrainConfig(strategy="default"), 1.0)
    assert default.regularise(loss, params) is loss
    assert torch.allclose(mcmc.regularise(loss, params), loss + regularisers(params, 0.01, 0.01))
    assert MCMCDensifier.expected_splats(TrainConfig(max_splats=7), 10) == 7
    assert DefaultDensifier.expected_splats(TrainConfig(), 20_000) == 200_000
    assert DefaultDensifier.budgetable and not MCMCDensifier.budgetable


def test_default_is_capped_after_its_step_and_mcmc_keeps_no_per_splat_state():
    cfg = TrainConfig(strategy="default", refine_start=10_000)
    params = _params(50)
    opts = make_optimizers(params, cfg, 1.0)
    d, state = make_densifier(cfg, 1.0)
    means2d = torch.zeros(50, 2, requires_grad=True)
    means2d.grad = torch.zeros(50, 2)
    info = strategy_info(means2d, torch.ones(50, 2, dtype=torch.int32), 8, 8)
    d.after_backward(params, opts, state, 0, info, lambda: 1e-3, max_splats=30)
    assert len(params["means"]) == 30
    mcmc, mstate = make_densifier(TrainConfig(strategy="mcmc"), 1.0)
    assert mcmc.per_splat_state(mstate) == {} and d.per_splat_state(state) is state


def test_no_module_of_training_branches_on_the_strategy():
    """The loop asks the adapter: no ``isinstance(..., *Strategy)`` nor ``cfg.strategy ==``."""
    root = Path(__file__).resolve().parents[1] / "splatkit"
    pattern = re.compile(r"isinstance\([^)]*Strategy\)|\.strategy\s*[!=]=")
    found = [f"{f.relative_to(root)}:{i}" for f in root.rglob("*.py") if f.name != "densify.py"
             for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
