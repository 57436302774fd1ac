"""Cleanup after training: what no training view needs goes, what one view needs stays, and the
held-out cost stays within the budget."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from splatkit import cleanup as CL
from splatkit.config import CleanupConfig
from splatkit.metrics import CleanupSummary
from splatkit.render import RenderSettings
from splatkit.render.cpu import render
from splatkit.rundir import RunDir
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats

W, H, F = 48, 32, 40.0


def _splats(means, scale, opacity_logit, colour) -> Splats:
    n = len(means)
    rgb = torch.as_tensor(colour, dtype=torch.float32).expand(n, 3)
    sh0 = ((rgb - 0.5) / 0.28209479177387814)[:, None, :]
    return Splats(
        means=torch.as_tensor(means, dtype=torch.float32),
        log_scales=torch.full((n, 3), float(np.log(scale)), dtype=torch.float32),
        quats=torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4).clone(),
        opacity_logits=torch.full((n,), float(opacity_logit)),
        sh0=sh0.contiguous(),
        shN=torch.zeros(n, 0, 3),
    )


def _cat(*parts: Splats) -> Splats:
    d = {k: torch.cat([p.as_dict()[k] for p in parts]) for k in parts[0].as_dict()}
    return Splats(**d)


def _wall(seed=0) -> Splats:
    """An opaque wall of coloured splats at z = 4 (three layers: nothing shows through),
    wider than every view."""
    g = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.linspace(-4, 4, 41), np.linspace(-2.5, 2.5, 26))
    means = np.concatenate([np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)
                            for z in (4.0, 4.1, 4.2)])  # fmt: skip
    s = _splats(means, 0.12, 4.0, (0.5, 0.5, 0.5))
    s.sh0[:] = torch.from_numpy(g.uniform(-1.2, 1.2, (len(means), 1, 3))).float()
    return s


def _scene(tmp_path, truth: Splats, n_cams=9) -> Scene:
    """Cameras in a row (x from -1 to 1) looking down +z; photos rendered from ``truth``; every
    3rd camera held out."""
    xs = torch.linspace(-1, 1, n_cams)
    w2c = torch.eye(4).repeat(n_cams, 1, 1)
    w2c[:, 0, 3] = -xs
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]]).repeat(n_cams, 1, 1)
    names = [f"{i:02d}.png" for i in range(n_cams)]
    cams = Cameras(names, K, w2c, torch.full((n_cams,), W), torch.full((n_cams,), H))
    (tmp_path / "images").mkdir()
    from splatkit.views import WorldNorm, make_view

    for i, name in enumerate(names):
        img = render(truth, make_view(cams, i, WorldNorm.identity()), RenderSettings(sh_degree=0)).image
        arr = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        Image.fromarray(arr).save(tmp_path / "images" / name)
    test = list(range(1, n_cams, 3))
    train = [i for i in range(n_cams) if i not in test]
    pts = truth.means[::7].clone()
    return Scene(cams, tmp_path / "images", pts, torch.zeros_like(pts), train_idx=train, test_idx=test)


def _scene_with_extras(tmp_path):
    wall = _wall()
    # One splat only the leftmost camera (x = -1) sees, close in front of it, in its photo too.
    needed = _splats([[-1.2, 0.0, 0.6]], 0.03, 4.0, (1.0, 0.0, 0.0))
    scene = _scene(tmp_path, _cat(wall, needed))
    g = np.random.default_rng(1)
    behind = _splats(np.c_[g.uniform(-2, 2, (15, 2)), g.uniform(-3, -1, 15)], 0.1, 2.0, (0, 1, 0))
    hidden = _splats(np.c_[g.uniform(-1, 1, (15, 2)), g.uniform(7, 9, 15)], 0.1, 2.0, (0, 0, 1))
    trained = _cat(wall, needed, behind, hidden)
    n_wall = len(wall)
    return scene, trained, n_wall, n_wall, list(range(n_wall + 1, len(trained)))


def test_invisible_splats_go_and_the_one_a_view_needs_stays(tmp_path):
    scene, trained, n_wall, needed_i, invisible = _scene_with_extras(tmp_path)
    res = CL.clean(trained, scene, resolution=W, cfg=CleanupConfig())
    assert not res.keep[invisible].any()  # behind every camera, or hidden behind the wall
    assert res.keep[needed_i]  # the splat the leftmost photo shows
    assert res.removed["unseen"] >= len(invisible)
    assert res.trials[0]["level"] == 0.0 and res.trials[0]["removed"] >= len(invisible)
    assert sum(res.removed.values()) == res.num_removed
    assert res.held_out_views == 3
    assert res.psnr_before - res.psnr_after <= 0.05 + 1e-9
    # The weights say why: the needed splat makes most of a pixel in camera 0 only.
    _, views = CL.training_views(scene, W)
    w_max, _ = CL.significance(trained, views)
    assert float(w_max[needed_i]) > 0.5 and float(w_max[invisible].max()) < 1 / 255


def test_held_out_cost_within_budget_when_levels_would_cost_more(tmp_path):
    """Aggressive levels that would remove the wall itself are refused by the held-out check,
    and the PSNR measured afresh on the kept splats is within 0.05 dB of the trained scene's."""
    scene, trained, *_ = _scene_with_extras(tmp_path)
    cfg = CleanupConfig(weight_levels=[0.05, 0.3, 0.9, 1.0], isolation_levels=[8.0, 2.0, 0.5])
    res = CL.clean(trained, scene, resolution=W, cfg=cfg)
    refused = [t for t in res.trials if t.get("accepted") is False]
    assert refused and all(res.psnr_before - t["psnr"] > 0.05 for t in refused)
    assert res.keep.sum() > 41 * 26  # the front layer and more (the rest reach no pixel)
    held = CL.HeldOut(trained, scene, W, 0)
    assert held.psnr() - held.psnr(res.keep) <= 0.05 + 1e-9


def test_select_keeps_the_most_aggressive_level_within_budget():
    n = 10
    floor = torch.zeros(n, dtype=torch.bool)
    floor[0] = True
    sets = {"unseen": [(0.1, torch.arange(n) < 3), (0.2, torch.arange(n) < 5), (0.3, torch.arange(n) < 8)],
            "isolated": [(8.0, torch.arange(n) == 9)],
            "clearance": [(0.5, torch.arange(n) == 9)]}  # fmt: skip

    def score(keep):  # each removed splat costs 0.015 dB, except splat 9 (free)
        return 30.0 - 0.015 * int((~keep[:9]).sum())

    res = CL.select(floor, sets, score, 30.0, 0.05)
    assert res.levels["unseen"] == 0.1 and res.removed == {"unseen": 3, "isolated": 1, "clearance": 0}
    assert res.levels["clearance"] == 0.5  # nothing new at that level: accepted, counted under isolated
    assert res.psnr_after == 30.0 - 0.045
    assert [t["accepted"] for t in res.trials] == [True, True, False, True]


def test_run_cleanup_writes_beside_scene_ply_and_previews(tmp_path):
    scene, trained, *_ = _scene_with_extras(tmp_path)
    rd = RunDir(tmp_path / "out")
    rd.root.mkdir()
    from splatkit.export.ply import read_ply, write_ply

    write_ply(trained, rd.scene_ply)
    before = rd.scene_ply.read_bytes()
    assert CL.scene_path(rd) == rd.scene_ply  # nothing cleaned yet
    res = CL.run_cleanup(rd, trained, scene, W, CleanupConfig())
    assert rd.scene_ply.read_bytes() == before  # scene.ply stays as trained
    assert len(read_ply(rd.scene_clean_ply)) == int(res.keep.sum()) < len(trained)
    assert CL.scene_path(rd) == rd.scene_clean_ply and CL.scene_path(rd, "none") == rd.scene_ply
    for which in ("before", "after"):
        img = np.asarray(Image.open(rd.cleanup_preview(which)))
        assert img.shape == (320, 480, 3) and img.max() > 0
    rec = res.record()  # metrics.json material: written and read back the same
    assert CleanupSummary.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    assert rec.removed_total + rec.kept == len(trained)


def test_overview_is_above_and_behind_the_cameras(tmp_path):
    scene, trained, *_ = _scene_with_extras(tmp_path)
    v = CL.overview_view(scene, 60, 40)
    w2c = v.world_to_cam.double()
    eye = -w2c[:3, :3].T @ w2c[:3, 3]
    assert eye[2] < 0  # behind the cameras (they look down +z from z = 0)
    assert eye[1] < 0  # above them (camera y points down: up is -y)
    # it looks at the scene: the wall's centre projects inside the image
    p = w2c[:3, :3] @ torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64) + w2c[:3, 3]
    u = v.K[0, 0] * p[0] / p[2] + v.K[0, 2]
    assert p[2] > 0 and 0 < u < 60
