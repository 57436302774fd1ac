"""The loop's optional parts together (splatkit.train.addons): pose refinement, bilateral grids
and the resolution schedule in one run, interrupted and resumed bit for bit."""

from __future__ import annotations

import pytest
import torch
from test_train import BACKEND, make_scene, small_cfg

from splatkit.train import checkpoint as ck
from splatkit.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_addons_resume_bitwise(tmp_path):
    scene, _ = make_scene(tmp_path / "s", n=60, ncam=5)
    cfg = small_cfg(steps=8, pose_opt=True, pose_opt_lr=1e-3, appearance="bilagrid",
                    resolution_schedule="dash", densify_budget=True, refine_start=2, refine_stop=6,
                    refine_every=2, grow_grad2d=1e-6, checkpoint_every=4, sh_degree=0)
    full = train(scene, cfg, tmp_path / "full", BACKEND)
    calls = {"n": 0}

    def stop_after_5() -> bool:
        calls["n"] += 1
        return calls["n"] == 5

    part = train(scene, cfg, tmp_path / "part", BACKEND, stop_flag=stop_after_5)
    assert part.interrupted and part.steps_done == 5
    resumed = train(scene, cfg, tmp_path / "part", BACKEND, resume=True)
    assert resumed.resumed_from == 5 and resumed.steps_done == 8
    a, b = full.splats.as_dict(), resumed.splats.as_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pa = ck.load_checkpoint(ck.latest_checkpoint(tmp_path / "full"))["extra"]["addons"]
    pb = ck.load_checkpoint(ck.latest_checkpoint(tmp_path / "part"))["extra"]["addons"]
    assert set(pa) == {"pose", "appearance"}
    assert torch.equal(pa["pose"]["deltas"], pb["pose"]["deltas"]) and pa["pose"]["deltas"].abs().sum() > 0
    assert torch.equal(pa["appearance"]["grids"], pb["appearance"]["grids"])
