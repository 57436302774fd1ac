"""Budgeted densification: growth follows the budget line and picks the largest gradients."""

import torch

from splatkit.config import TrainConfig
from splatkit.splats import Splats
from splatkit.train.optim import SplatDefaultStrategy, make_optimizers, make_strategy, splats_to_params


def grown(budget, grads, step=150):
    n = len(grads)
    params = splats_to_params(Splats.random(n, sh_degree=1, seed=0))
    with torch.no_grad():
        params["scales"].fill_(-8.0)  # small: cloned, not split
        params["opacities"].fill_(2.0)  # not pruned
    opts = make_optimizers(params, TrainConfig(), 1.0)
    s = SplatDefaultStrategy(refine_start_iter=100, refine_stop_iter=200, refine_every=50,
                             grow_grad2d=1e-3, budget=budget)  # fmt: skip
    state = s.initialize_state(scene_scale=1.0)
    state["grad2d"], state["count"] = grads.clone(), torch.ones(n)
    state["radii"] = None
    before = params["means"].detach().clone()
    s._grow_gs(params, opts, state, step)
    return params, before


def test_budget_limits_growth_to_the_largest_gradients():
    g = torch.Generator().manual_seed(0)
    grads = torch.rand(100, generator=g) * 1e-2  # ~90 % above the threshold
    params, before = grown(budget=140, grads=grads, step=150)  # halfway: room for 20
    assert len(params["means"]) == 120
    top = torch.topk(grads, 20).indices
    torch.testing.assert_close(params["means"][100:], before[top.sort().values])
    unlimited, _ = grown(budget=0, grads=grads)
    assert len(unlimited["means"]) == 100 + int((grads > 1e-3).sum())


def test_make_strategy_passes_the_budget():
    s, _ = make_strategy(TrainConfig(budget_growth=True, max_splats=5000), 1.0)
    assert s.budget == 5000
    assert make_strategy(TrainConfig(), 1.0)[0].budget == 0
