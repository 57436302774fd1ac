"""Shared pytest setup (others may append fixtures below).

- ``--device cpu|cuda`` (like kornia's): the device the ``device`` fixture hands to tests.
- ``@pytest.mark.gpu`` tests are skipped, with a reason, where PyTorch sees no CUDA GPU.
- ``shared_datasets``: ``<repo>/../shared/datasets`` (or ``$SPLATKIT_SHARED_DATASETS``);
  tests that use it are skipped where it is absent (e.g. CI, the GPU machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        choices=("cpu", "cuda"),
        help="device for tests that take the `device` fixture (default: cpu)",
    )


def pytest_collection_modifyitems(config, items):
    gpu_items = [it for it in items if "gpu" in it.keywords]
    if not gpu_items or _cuda_available():
        return
    skip = pytest.mark.skip(
        reason="needs an NVIDIA GPU with CUDA; torch.cuda.is_available() is False"
    )
    for it in gpu_items:
        it.add_marker(skip)


@pytest.fixture(scope="session")
def device(request):
    import torch

    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but torch.cuda.is_available() is False")
    return torch.device(name)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    path = Path(os.environ.get("SPLATKIT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    if not path.is_dir():
        pytest.skip(
            f"shared datasets folder not found at {path} "
            "(set SPLATKIT_SHARED_DATASETS to point at it)"
        )
    return path


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A tiny COLMAP project (8 photos, 160x120) that `splatkit train` runs in seconds
    (tests/tiny_project.py). Tests copy it before changing it."""
    from tiny_project import make_project

    return make_project(tmp_path_factory.mktemp("tiny") / "proj")


@pytest.fixture(scope="session")
def stub_server(tmp_path_factory):
    """One ``splatkit serve`` on loopback for the classroom server's tests whose jobs are not the
    point: jobs run the stub of ``splatkit.serve.testing`` (8 steps of 0.25 s), 2 Ray CPUs,
    uploads up to 2 MB. Tests that change settings put them back."""
    from serve_util import STUB_ENV, Server, need_serve_deps

    need_serve_deps()
    env = {**STUB_ENV, "SPLATKIT_STUB_STEP_S": "0.25", "SPLATKIT_STUB_STEPS": "8"}
    srv = Server(tmp_path_factory.mktemp("serve-stub") / "data", env=env,
                 args=["--ray-cpus", "2", "--max-upload-mb", "2"]).start()
    yield srv
    srv.stop()


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: torch's and numba's thread pools fight on small CPUs
    (measured 7x slower with 2 threads on a loaded 2-core machine), and small images gain
    nothing from torch threads. Modules that train use it for every test (``autouse`` there:
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
