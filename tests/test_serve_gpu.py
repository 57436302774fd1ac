"""The classroom server's GPU path (splatkit.serve.runner.Dispatcher with ``num_gpus``).

On the CPU: the capacity and the Ray options of one job from a fake cluster's resources (GPUs x
jobs per GPU, a 1/jobs_per_gpu share of a GPU per job), and that ``submit`` hands exactly those
options to Ray. Marked ``gpu``: a real local Ray that detects the GPU runs two jobs as Ray tasks
asking for half a GPU each; inside each task CUDA is visible, Ray assigned the GPU, and a few
training steps run with the gsplat renderer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[serve]'")

from splatkit.serve.runner import Dispatcher  # noqa: E402
from splatkit.serve.store import Store  # noqa: E402

HERE = Path(__file__).resolve().parent


def _fake_cluster(monkeypatch, resources: dict, nodes: int = 1) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(resources))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}] * nodes + [{"Alive": False}])


class _FakeRemote:
    """Stands for ``ray.remote(run_job)``: records the options and specs it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, dict]] = []

    def options(self, **opts):
        outer = self

        class _Call:
            def remote(self, spec):
                outer.calls.append((opts, spec))
                return object()

        return _Call()


def _store_with_jobs(tmp_path: Path, n: int, **settings) -> Store:
    store = Store(tmp_path / "db.sqlite")
    for k, v in settings.items():
        store.set_setting(k, v)
    for i in range(n):
        sid = store.join(f"student{i}", None)[0]["id"]
        store.add_job(sid, "tiny", str(tmp_path / f"photos{i}"), tmp_path / "jobs")
    return store


@pytest.mark.parametrize(("gpus", "per_gpu", "want"), [(1.0, 1, 1), (1.0, 3, 3), (2.0, 2, 4), (4.0, 1, 4)])
def test_capacity_on_a_gpu_cluster(tmp_path, monkeypatch, gpus, per_gpu, want):
    _fake_cluster(monkeypatch, {"CPU": 16.0, "GPU": gpus}, nodes=int(gpus))
    d = Dispatcher(_store_with_jobs(tmp_path, 0, jobs_per_gpu=per_gpu))
    cap, opts = d.capacity()
    assert cap == want and opts == {"num_gpus": 1.0 / per_gpu, "num_cpus": 1}
    assert d.cluster == {"cpus": 16.0, "gpus": gpus, "nodes": int(gpus)}


def test_capacity_without_gpus_counts_cpus(tmp_path, monkeypatch):
    _fake_cluster(monkeypatch, {"CPU": 7.0})
    d = Dispatcher(_store_with_jobs(tmp_path, 0, cpus_per_job=2))
    assert d.capacity() == (3, {"num_cpus": 2})
    # a fraction of a GPU (e.g. a cluster whose only GPU is shared out) is no GPU slot
    d._capacity_t = 0.0
    _fake_cluster(monkeypatch, {"CPU": 4.0, "GPU": 0.5})
    assert d.capacity() == (2, {"num_cpus": 2})


def test_submit_asks_ray_for_a_gpu_share_per_job(tmp_path, monkeypatch):
    _fake_cluster(monkeypatch, {"CPU": 16.0, "GPU": 1.0})
    store = _store_with_jobs(tmp_path, 5, jobs_per_gpu=2)
    d = Dispatcher(store)
    d._remote = _FakeRemote()
    d.submit()
    assert len(d.inflight) == 2 and len(d._remote.calls) == 2  # 1 GPU x 2 jobs per GPU
    for opts, spec in d._remote.calls:
        assert opts == {"num_gpus": 0.5, "num_cpus": 1} and spec["attempt"] == 1
    assert len(store.jobs(states=("running",))) == 2 and len(store.jobs(states=("queued",))) == 3


# -- on a GPU machine -------------------------------------------------------------------------


def gpu_job(spec: dict, stop_flag) -> str:
    """Runs inside the Ray task: what Ray gave the task, then a few gsplat training steps."""
    import torch

    out = Path(spec["out_dir"])
    info = {"cuda": torch.cuda.is_available(), "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if info["cuda"]:
        sys.path.insert(0, str(HERE))
        from test_train import make_scene, small_cfg

        from splatkit.render import select_renderer
        from splatkit.train import train

        scene, _ = make_scene(out / "scene", n=80, ncam=6)
        res = train(scene, small_cfg(steps=20), out / "train", select_renderer("auto"))
        info.update(steps=res.steps_done, splats=len(res.splats))
    (out / "gpu_job.json").write_text(json.dumps(info))
    return "done"


@pytest.mark.gpu
def test_jobs_run_on_the_gpu_through_ray(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    store = _store_with_jobs(tmp_path, 2, jobs_per_gpu=2)
    d = Dispatcher(store, ray_cpus=4, job_fn="test_serve_gpu:gpu_job")
    d.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(store.jobs(states=("done", "failed"))) < 2:
            time.sleep(0.5)
            assert d.error is None, d.error
        assert d.cluster["gpus"] >= 1, d.cluster
        jobs = store.jobs()
        assert [j["state"] for j in jobs] == ["done", "done"], [(j["state"], j["error"]) for j in jobs]
        for j in jobs:
            info = json.loads((Path(j["out_dir"]) / "gpu_job.json").read_text())
            assert info["cuda"] and info["ray_gpu_ids"] and info["visible"], info
            assert info["steps"] == 20 and info["splats"] > 0
    finally:
        d.shutdown()
