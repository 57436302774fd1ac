"""Time whole CPU training steps (render forward, loss, backward, Adam) beside OpenSplat's CPU anchor.

The scene is the fox set (``.device/data/fox_800`` packed by ``scripts/bench_gpu.py pack``, or an
SfM folder) at the anchor's resolutions (longest side 239 -> 134x239, 479 -> 269x479). The SfM
points (9.3k) are grown to ``--splats`` (default: the anchor's splat count at each resolution) by
adding jittered copies, then initialised as a training run does (``Splats.from_points``: kNN
scales, opacity 0.1). ``--warmup`` steps of real training first move the splats off their
initial state, then ``--steps`` steps are timed one by one (SH degree 3 throughout, the most
expensive setting; no densification, which OpenSplat also ran only between steps 500 and 1000).

A step is exactly the training loop's: ``render`` -> ``photometric_loss`` (L1 + 0.2 D-SSIM) ->
``backward`` -> ``optimizer_step`` (one Adam step per parameter group, sparse on the CPU) ->
``zero_grad``.

``--compare REV`` loads the step's code as it is at git revision REV (``splatkit/render``, and
``splatkit/train``'s loss and optimizers) and interleaves its steps with the working tree's (same
views, same initial parameters), so that both see the same machine load.

Usage: python scripts/bench_train_step.py [--data .device/data/fox_800] [--steps 30]
       [--resolutions 239 479] [--compare HEAD~1]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import torch

#: OpenSplat CPU backend on the fox set, this kind of machine (docs in shared/notes/cpu-anchor.md):
#: longest side -> (resolution, s/step, splats at end).
ANCHOR = {239: ("134x239", 0.101, 23_096), 479: ("269x479", 0.357, 25_864)}


def load_scene(path: Path):
    if (path / "scene.pt").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_gpu import load_packed

        return load_packed(path)
    from splatkit.sfm import load_scene as load_sfm

    return load_sfm(path)


def grown_points(points: torch.Tensor, colors: torch.Tensor, n: int, seed: int = 0):
    """``points`` plus jittered copies (Gaussian, 0.5 x the kNN distance) up to ``n`` points."""
    from splatkit.splats import knn_mean_distance

    g = torch.Generator().manual_seed(seed)
    m = points.shape[0]
    if n <= m:
        idx = torch.randperm(m, generator=g)[:n]
        return points[idx], colors[idx]
    d = knn_mean_distance(points.float(), k=3)
    src = torch.randint(0, m, (n - m,), generator=g)
    jitter = torch.randn(n - m, 3, generator=g) * 0.5 * d[src, None]
    pts = torch.cat([points.float(), points.float()[src] + jitter])
    return pts, torch.cat([colors, colors[src]])


def _load_package(rev: str, folder: str, name: str, files: list[str] | None = None):
    """Package ``splatkit.<name>`` made of ``splatkit/<folder>/*.py`` as they are at git revision
    ``rev`` (only ``files``, under an empty ``__init__``, if given)."""
    listed = subprocess.check_output(["git", "ls-tree", "--name-only", f"{rev}:splatkit/{folder}"],
                                     text=True).split()  # fmt: skip
    d = Path(tempfile.mkdtemp(prefix=f"bench_{name}_")) / name
    d.mkdir()
    (d / "__init__.py").write_text("")
    for f in listed:
        if f.endswith(".py") and (files is None or f in files):
            src = subprocess.check_output(["git", "show", f"{rev}:splatkit/{folder}/{f}"], text=True)
            (d / f).write_text(src)
    full = f"splatkit.{name}"
    spec = importlib.util.spec_from_file_location(full, d / "__init__.py",
                                                  submodule_search_locations=[str(d)])  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    spec.loader.exec_module(mod)
    return full


def load_revision(rev: str) -> dict:
    """The CPU training step's pieces at git revision ``rev``: the CPU renderer (all of
    ``splatkit/render``), the loss and the optimizers (``splatkit/train``'s losses, optim and
    the modules they import), so that ``--compare`` times that revision's whole step."""
    render = _load_package(rev, "render", "render_cmp")
    train = _load_package(rev, "train", "train_cmp", ["losses.py", "optim.py", "adam.py", "ssim.py"])
    optim = importlib.import_module(train + ".optim")
    return {
        "render": importlib.import_module(render + ".cpu").render,
        "loss": importlib.import_module(train + ".losses").photometric_loss,
        "make_optimizers": optim.make_optimizers,
        "optimizer_step": getattr(optim, "optimizer_step", _plain_step),
    }


def _plain_step(optimizers, radii) -> None:
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)


def current() -> dict:
    from splatkit.render.cpu import render
    from splatkit.train.losses import photometric_loss
    from splatkit.train.optim import make_optimizers, optimizer_step

    return {"render": render, "loss": photometric_loss, "make_optimizers": make_optimizers,
            "optimizer_step": optimizer_step}  # fmt: skip


class Trainer:
    """The training loop's step (of one revision), on its own parameters and optimizers."""

    def __init__(self, parts: dict, init, norm, scene_scale):
        from splatkit.config import TrainConfig
        from splatkit.train.optim import splats_to_params

        self.parts = parts
        self.cfg = TrainConfig()
        self.params = splats_to_params(norm.splats_to_norm(init))
        self.opts = parts["make_optimizers"](self.params, self.cfg, scene_scale)

    def step(self, view, gt) -> float:
        from splatkit.render import RenderSettings
        from splatkit.train.optim import params_to_splats

        t0 = time.perf_counter()
        out = self.parts["render"](params_to_splats(self.params), view, RenderSettings(sh_degree=3))
        out.means2d.retain_grad()
        loss = self.parts["loss"](out.image, gt, self.cfg.ssim_lambda)
        loss.backward()
        self.parts["optimizer_step"](self.opts, out.radii)
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".device/data/fox_800"))
    ap.add_argument("--resolutions", type=int, nargs="+", default=[239, 479])
    ap.add_argument("--splats", type=int, default=0, help="0: the anchor's count per resolution")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch and numba threads (0: default)")
    ap.add_argument("--compare", help="git revision of splatkit/render to interleave with")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
        numba.set_num_threads(a.threads)
    from splatkit.splats import Splats
    from splatkit.views import WorldNorm, load_images, make_view, scaled_cameras

    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"machine: {platform.platform()}, {os.cpu_count()} logical CPUs | "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numba "
          f"{numba.__version__} ({numba.get_num_threads()} threads, {numba.threading_layer()})"
          f" | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    scene = load_scene(a.data)
    norm = WorldNorm.from_scene(scene)
    scene_scale = scene.extent * norm.scale
    variants = {"current": current()}
    if a.compare:
        variants = {a.compare: load_revision(a.compare), "current": current()}
    print(f"{'resolution':>10} {'splats':>7} {'variant':>8} | {'s/step med':>10} {'min':>7} "
          f"{'OpenSplat':>9} {'ratio':>6} | load avg")  # fmt: skip
    for res in a.resolutions:
        label, anchor_s, anchor_n = ANCHOR.get(res, (f"long {res}", float("nan"), 23_000))
        n = a.splats or anchor_n
        pts, cols = grown_points(scene.points, scene.point_colors, n)
        init = Splats.from_points(pts, cols, 3, 0.1, 1.0)
        cams = scaled_cameras(scene.cameras, res)
        idx = scene.train_idx
        images = load_images(scene, idx, cams)
        views = [make_view(cams, i, norm) for i in idx]
        label = f"{int(cams.width[idx[0]])}x{int(cams.height[idx[0]])}"
        trainers = {k: Trainer(r, init, norm, scene_scale) for k, r in variants.items()}
        times: dict[str, list[float]] = {k: [] for k in variants}
        g = torch.Generator().manual_seed(0)
        order = torch.randint(0, len(views), (a.warmup + a.steps,), generator=g).tolist()
        for s, v in enumerate(order):
            for k, tr in trainers.items():
                dt = tr.step(views[v], images[v])
                if s >= a.warmup:
                    times[k].append(dt)
        load = os.getloadavg()
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{label:>10} {n:>7} {k:>8} | {med:>9.4f}s {min(ts):>6.4f}s {anchor_s:>8.3f}s "
                  f"{anchor_s / med:>5.2f}x | {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print("ratio = OpenSplat s/step / splatkit s/step (> 1: splatkit faster). OpenSplat: C++ CPU")
    print("backend, fox, same machine type, s/step averaged over a whole 2000-step run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
