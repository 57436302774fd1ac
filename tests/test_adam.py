"""SelectiveAdam: Adam on the visible splats, nothing at all on the others."""

import numba
import pytest
import torch
from gsplat.strategy.ops import duplicate, remove

from splatkit.train.adam import SelectiveAdam

SHAPES = {"means": (3,), "opacities": (), "shN": (15, 3)}


def make(n=300, seed=0, cls=SelectiveAdam, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    params = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(torch.randn(n, *s, generator=g, dtype=dtype)) for k, s in SHAPES.items()}
    )
    opts = {k: cls([{"params": [p], "lr": 1e-2, "name": k}], eps=1e-15) for k, p in params.items()}
    return params, opts


def set_grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def state(opt):
    return next(iter(opt.state.values()))


def test_every_splat_visible_is_torch_adam():
    params, opts = make()
    ref_params, ref_opts = make(cls=torch.optim.Adam)
    for step in range(5):
        for ps, os, vis in ((params, opts, torch.ones(300, dtype=torch.bool)), (ref_params, ref_opts, None)):
            set_grads(ps, step)
            for o in os.values():
                o.step() if vis is None else o.step(visibility=vis)
    for k in SHAPES:
        torch.testing.assert_close(params[k], ref_params[k], rtol=1e-5, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state(opts[k])[key], state(ref_opts[k])[key], rtol=1e-5, atol=1e-6)
        assert float(state(opts[k])["step"]) == 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # numba kernel, torch ops
def test_visible_rows_follow_adam_and_hidden_rows_stay_untouched(dtype):
    params, opts = make(dtype=dtype)
    ref_params, ref_opts = make(cls=torch.optim.Adam, dtype=dtype)
    always = torch.arange(300) < 100  # visible in every step
    never = torch.arange(300) >= 250  # hidden in every step
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        vis = always | ((torch.rand(300, generator=g) < 0.5) & ~never)
        for ps in (params, ref_params):
            set_grads(ps, 10 + step)
        for k in SHAPES:
            opts[k].step(visibility=vis)
            ref_opts[k].step()
    init, _ = make(dtype=dtype)
    for k in SHAPES:
        s = state(opts[k])
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(params[k][always], ref_params[k][always], **tol)
        torch.testing.assert_close(s["exp_avg"][always], state(ref_opts[k])["exp_avg"][always], **tol)
        assert torch.equal(params[k][never], init[k][never])
        assert (s["exp_avg"][never] == 0).all() and (s["exp_avg_sq"][never] == 0).all()
        sometimes = ~always & ~never
        assert not torch.allclose(params[k][sometimes], ref_params[k][sometimes])


def test_one_sparse_step_from_any_state():
    """From a shared non-trivial state, one step: visible rows equal a dense Adam step, hidden
    rows keep parameters and moments bit for bit."""
    params, opts = make(seed=2)
    ref_params, ref_opts = make(seed=2, cls=torch.optim.Adam)
    set_grads(params, 0)
    set_grads(ref_params, 0)
    for k in SHAPES:  # a few dense steps so that moments and step counts are not trivial
        for _ in range(3):
            opts[k].step()
            ref_opts[k].step()
    vis = torch.rand(300, generator=torch.Generator().manual_seed(4)) < 0.3
    set_grads(params, 7)
    set_grads(ref_params, 7)
    before = {k: (params[k].detach().clone(), {n: t.clone() for n, t in state(opts[k]).items()})
              for k in SHAPES}  # fmt: skip
    for k in SHAPES:
        opts[k].step(visibility=vis)
        ref_opts[k].step()
        p0, s0 = before[k]
        torch.testing.assert_close(params[k][vis], ref_params[k][vis], rtol=1e-5, atol=1e-6)
        assert torch.equal(params[k][~vis], p0[~vis])
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state(opts[k])[key][~vis], s0[key][~vis])
            torch.testing.assert_close(state(opts[k])[key][vis], state(ref_opts[k])[key][vis])


def test_gsplat_strategy_ops_and_state_dict():
    params, opts = make()
    set_grads(params, 0)
    for o in opts.values():
        o.step(visibility=torch.arange(0, 300, 2))
    state_ = {"grad2d": torch.zeros(300), "count": torch.zeros(300)}
    duplicate(params, opts, state_, torch.arange(300) < 20)
    remove(params, opts, state_, torch.arange(320) % 3 == 0)
    n = len(params["means"])
    for k, o in opts.items():
        s = state(o)
        assert o.param_groups[0]["params"][0] is params[k] and s["exp_avg"].shape == params[k].shape
        assert o.param_groups[0]["name"] == k and float(s["step"]) == 1
    set_grads(params, 1)
    for o in opts.values():
        o.step(visibility=torch.ones(n, dtype=torch.bool))
    clone = SelectiveAdam([{"params": [params["means"]], "lr": 1.0, "name": "means"}], eps=1e-15)
    clone.load_state_dict(opts["means"].state_dict())
    assert torch.equal(state(clone)["exp_avg"], state(opts["means"])["exp_avg"])


def test_bitwise_across_thread_counts():
    results = []
    old = numba.get_num_threads()
    try:
        for threads in (old, 1):
            numba.set_num_threads(threads)
            params, opts = make(n=5000)
            set_grads(params, 3)
            for o in opts.values():
                o.step(visibility=torch.arange(5000) % 7 != 0)
            results.append({k: p.detach().clone() for k, p in params.items()})
    finally:
        numba.set_num_threads(old)
    assert all(torch.equal(results[0][k], results[1][k]) for k in SHAPES)


def test_optimizer_step_and_make_optimizers_follow_the_config():
    from splatkit.config import TrainConfig
    from splatkit.train.optim import make_optimizers, optimizer_step

    params, _ = make(n=50)
    opts = make_optimizers(params, TrainConfig(), 1.0)
    assert all(isinstance(o, SelectiveAdam) for o in opts.values())
    dense = make_optimizers(params, TrainConfig(sparse_adam=False), 1.0)
    assert not any(isinstance(o, SelectiveAdam) for o in dense.values())
    before = {k: p.detach().clone() for k, p in params.items()}
    radii = torch.ones(50, 2, dtype=torch.int32)
    radii[::3] = 0  # culled in this view
    set_grads(params, 5)
    optimizer_step(opts, radii)
    for k, p in params.items():
        assert torch.equal(p[::3], before[k][::3]) and not torch.equal(p[1::3], before[k][1::3])
        assert p.grad is None


def test_one_launch_for_all_groups_equals_one_step_per_optimizer():
    from splatkit.train.adam import step_selective

    a_params, a_opts = make(n=2000, seed=4)
    b_params, b_opts = make(n=2000, seed=4)
    # One group off the numba path (a transposed, non-contiguous parameter): the torch update.
    for params, opts in ((a_params, a_opts), (b_params, b_opts)):
        t = torch.nn.Parameter(torch.randn(3, 2000, generator=torch.Generator().manual_seed(9)).t())
        params["t"] = t
        opts["t"] = SelectiveAdam([{"params": [t], "lr": 1e-2, "name": "t"}], eps=1e-15)
        for i, o in enumerate(opts.values()):  # each group its own hyperparameters
            o.param_groups[0].update(lr=1e-3 * (i + 1), betas=(0.9 - 0.1 * i, 0.999 - 0.01 * i))
    for step in range(3):
        vis = torch.arange(2000) % (step + 2) != 0
        for params in (a_params, b_params):
            set_grads(params, 10 + step)
        for o in a_opts.values():
            o.step(visibility=vis)
        step_selective(list(b_opts.values()), vis)
    for k in a_params:
        assert torch.equal(a_params[k], b_params[k]), k
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state(a_opts[k])[key], state(b_opts[k])[key]), (k, key)
    assert not a_params["t"].is_contiguous() and float(state(b_opts["t"])["step"]) == 3
