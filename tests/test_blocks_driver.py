"""Block training: a 2-block run against the 1-block run, a killed block resumed, Ray == sequential."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import look_at, small_cfg

from splatkit.blocks.driver import (
    block_scene,
    merge_blocks,
    split_scene,
    train_blocks_sequential,
    train_in_blocks,
)
from splatkit.config import BlocksConfig, RunConfig
from splatkit.evaluate import evaluate
from splatkit.render import RenderSettings, View, get_renderer, make_renderer
from splatkit.rundir import RunDir
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats, rgb_to_sh0

W, H = 64, 48
UP = np.array([0.0, 0.0, 1.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def street_scene(tmp: Path, n=300, ncam=24, seed=0) -> Scene:
    """Gaussians along a 12-unit wall (x axis), cameras walking beside it looking at it."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    means = torch.rand(n, 3, generator=g, dtype=f64) * torch.tensor([12.0, 0.4, 2.0]) - torch.tensor(
        [6.0, 0.2, 0.0])
    scales = 0.12 * (0.6 + 0.8 * torch.rand(n, 3, generator=g, dtype=f64))
    rgb = torch.rand(n, 3, generator=g, dtype=f64)
    truth = Splats(means, torch.log(scales), torch.randn(n, 4, generator=g, dtype=f64),
                   torch.logit(torch.full((n,), 0.85, dtype=f64)), rgb_to_sh0(rgb)[:, None, :],
                   torch.zeros(n, 0, 3, dtype=f64))
    K = torch.tensor([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1]], dtype=f64)
    render = get_renderer("reference")
    img_dir = tmp / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    names, w2cs = [], []
    for i in range(ncam):
        x = -5.5 + 11.0 * i / (ncam - 1)
        C = torch.tensor([x, -3.0, 1.0 + 0.2 * math.sin(i)])
        M = look_at(C, (x + 0.4 * math.sin(2 * i), 0.0, 1.0))
        out = render(truth, View(M, K, W, H), RenderSettings(sh_degree=0))
        names.append(f"img_{i:03d}.png")
        arr = (out.image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(arr).save(img_dir / names[-1])
        w2cs.append(M)
    cams = Cameras(names, K[None].repeat(ncam, 1, 1).float(), torch.stack(w2cs).float(),
                   torch.full((ncam,), W), torch.full((ncam,), H))
    keep = torch.randperm(n, generator=g)[: int(0.7 * n)]
    pts = means[keep] + 0.04 * torch.randn(len(keep), 3, generator=g, dtype=f64)
    return Scene(cams, img_dir, pts.float(), (0.5 * rgb[keep] + 0.25).float())


def run_cfg(steps=120) -> RunConfig:
    base = RunConfig()
    train = small_cfg(steps=steps, refine_start=30, refine_stop=90, refine_every=30,
                      reset_every=100_000, checkpoint_every=40)
    return dataclasses.replace(base, preset="custom", train=train)


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> Scene:
    return street_scene(tmp_path_factory.mktemp("street"))


def _blocks(scene: Scene, out: Path, n: int, stop_flag=None):
    part = split_scene(scene, n, BlocksConfig(overlap=0.25), UP)
    folders = [out / f"block_{b.index:03d}" for b in part.blocks]
    res = train_blocks_sequential(scene, part, run_cfg(), folders, make_renderer("cpu"), stop_flag=stop_flag)
    return part, folders, res


def test_block_scenes_hold_no_held_out_photo(street):
    part = split_scene(street, 2, BlocksConfig(overlap=0.25), UP)
    held = {street.cameras.names[i] for i in street.test_idx}
    for b in part.blocks:
        sub = block_scene(street, b)
        assert held.isdisjoint(sub.cameras.names) and sub.test_idx == [] and len(sub.train_idx) >= 4


def test_two_blocks_are_within_a_stated_psnr_of_one_block(street, tmp_path):
    scores = {}
    for n in (1, 2):
        part, folders, res = _blocks(street, tmp_path / f"b{n}", n)
        assert len(res) == n and not any(r.interrupted for r in res)
        merged, owners = merge_blocks(part, folders)
        assert set(owners.tolist()) == set(range(n))
        scores[n] = evaluate(merged, street, W, "cpu").psnr
    print(f"held-out PSNR: 1 block {scores[1]:.2f} dB, 2 blocks {scores[2]:.2f} dB")
    # Measured on this scene: see the print; 1.0 dB leaves room for float differences between
    # machines, while a merge that drops or doubles a block's region loses several dB.
    assert scores[2] >= scores[1] - 1.0, scores


def test_a_block_stopped_midway_resumes_from_its_checkpoint(street, tmp_path):
    part, folders, full = _blocks(street, tmp_path / "full", 2)
    whole, _ = merge_blocks(part, folders)
    calls = {"n": 0}

    def stop_in_first_block() -> bool:
        calls["n"] += 1
        return calls["n"] == 50

    _, folders2, res = _blocks(street, tmp_path / "cut", 2, stop_flag=stop_in_first_block)
    assert len(res) == 1 and res[0].interrupted
    _, _, res2 = _blocks(street, tmp_path / "cut", 2)
    assert [r.interrupted for r in res2] == [False, False]
    again, _ = merge_blocks(part, folders2)
    for k in ("means", "sh0", "opacity_logits"):
        assert torch.equal(getattr(again, k), getattr(whole, k)), k


@pytest.mark.slow
def test_blocks_through_a_local_ray_equal_sequential_blocks(street, tmp_path):
    pytest.importorskip("ray")
    from splatkit.blocks.ray_dispatch import ray_dispatcher

    part, folders, _ = _blocks(street, tmp_path / "seq", 2)
    seq, _ = merge_blocks(part, folders)
    rfolders = [tmp_path / "ray" / f.name for f in folders]
    dispatch = ray_dispatcher(BlocksConfig(ray_address="local", ray_workers=2), "cpu")
    res = dispatch(street, part, run_cfg(), rfolders)
    assert [r.index for r in res] == [b.index for b in part.blocks]
    par, _ = merge_blocks(part, rfolders)
    assert len(par) == len(seq)
    assert torch.allclose(par.means, seq.means, atol=1e-5)


def test_the_blocks_go_to_the_dispatch_handed_in(street, tmp_path):
    """The pipeline hands in the Ray dispatch; the driver itself knows no Ray (import contract)."""
    seen = {}

    class Handed(Exception):
        pass

    def dispatch(scene, part, cfg, folders):
        seen.update(scene=scene, blocks=len(part.blocks), folders=folders)
        raise Handed

    rd = RunDir(tmp_path / "out")
    with pytest.raises(Handed):
        train_in_blocks(street, run_cfg(), rd, make_renderer("cpu"), 2, dispatch=dispatch)
    assert seen["scene"] is street and seen["blocks"] == 2
    assert seen["folders"] == [rd.blocks / "block_000", rd.blocks / "block_001"]


def test_splatkit_train_blocks_2_on_a_project_writes_one_merged_scene(tiny_project, tmp_path, capsys):
    from tiny_project import cli

    from splatkit.export.ply import read_ply

    rc, out = cli(capsys, "train", str(tiny_project), "-o", str(tmp_path / "out"), "--preset", "tiny",
                  "--blocks", "2", "--quiet")
    assert rc == 0, out
    rd = RunDir(tmp_path / "out")
    summary = json.loads((rd.blocks / "blocks.json").read_text())
    rows = summary["blocks"]
    assert [r["block"] for r in rows] == [0, 1] and all(r["finished"] for r in rows)
    assert all(len(b) >= 2 for b in summary["border_views"].values())
    assert "Blocks" in rd.report.read_text()
    splats = read_ply(rd.scene_ply)
    kept = sum(1 for _ in splats.means)
    assert 0 < kept <= sum(r["splats"] for r in rows)  # each block keeps its core only
    assert json.loads(rd.config.read_text())["blocks"]["blocks"] == 2
    metrics = json.loads(rd.metrics.read_text())
    assert metrics["num_splats"] == kept and metrics["psnr"] > 15
