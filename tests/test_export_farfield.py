"""The far field (splatkit/export/farfield.py): what counts as sky and far background, and the
default export of every plugin on a scene with a few far outliers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from splatkit.export import farfield as FF
from splatkit.export import tiles as T
from splatkit.export.plugins import PLUGINS
from splatkit.export.run_folder import made_line
from splatkit.export.unreal import UnrealExportOptions, export_unreal
from splatkit.splats import Splats
from tests.unreal_util import synthetic_scene


def test_camera_extent_is_the_cameras_diameter_with_a_floor():
    c = torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0], [1.0, 1.0, 0]])
    assert FF.camera_extent(c) == pytest.approx(5.0)
    one_spot = torch.zeros(4, 3)
    pts = torch.tensor([[0.0, 0, 2.0], [0.0, 0, 4.0], [0.0, 0, 6.0]])
    assert FF.camera_extent(one_spot, pts) == pytest.approx(4.0)  # the scene's depth
    assert FF.camera_extent(one_spot) == 1.0


def test_far_field_mask_larger_or_farther():
    centers = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]])  # extent 2
    s = Splats.random(5, 0, 0)
    s.means[:] = torch.tensor([[1.0, 0, 5], [1.0, 0, 5], [1.0, 0, 25], [2.0, 0, 19.9], [0.0, 0, 1]])
    s.log_scales[:] = math.log(0.1)
    s.log_scales[1, 2] = math.log(0.34)  # 6 sigma = 2.04 > 2: larger than the extent
    s.log_scales[4, 0] = math.log(0.33)  # 1.98: not
    ff = FF.classify(s, centers)
    assert ff.extent == pytest.approx(2.0)
    assert ff.larger.tolist() == [False, True, False, False, False]
    assert ff.farther.tolist() == [False, False, True, False, False]  # 25 > 20; 19.9 from (2,0,0)
    assert torch.equal(FF.far_field_mask(s, centers), ff.mask) and ff.count == 2
    # A similarity of the frame (metres, rotated, moved) classifies the same.
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))[0]
    s2 = Splats(**{**s.as_dict(), "means": (s.means @ R.T) * 7 + 3, "log_scales": s.log_scales + math.log(7)})
    assert torch.equal(FF.far_field_mask(s2, (centers @ R.T) * 7 + 3), ff.mask)
    line = FF.message(ff)
    assert "2 far splats dropped" in line and "1 larger" in line and "1 farther" in line
    assert "went to the sky" in FF.message(ff, sky=True)


def _scene_with_outliers(seed=0):
    """A small scene (cameras on a 4 m arc around it, 8 m across) of 3000 small splats, plus 12
    splats 100-1500 m away and 3 blobs 30 m wide (the sky a short training leaves)."""
    scene, _ = synthetic_scene(torch.eye(3, dtype=torch.float64), seed=seed)
    g = torch.Generator().manual_seed(seed)
    near = Splats.random(3000, 1, seed).to(torch.float32)
    near.means[:] = (torch.rand(3000, 3, generator=g) - 0.5) * torch.tensor([6.0, 6.0, 2.0]) + torch.tensor(
        [0, 0, 1.0])
    near.log_scales[:] = math.log(0.01)
    near.opacity_logits[:] = 2.0
    far = Splats.random(15, 1, seed + 1).to(torch.float32)
    dirs = torch.nn.functional.normalize(torch.randn(15, 3, generator=g) * torch.tensor([1, 1, 0.2]), dim=1)
    dist = torch.logspace(math.log10(100), math.log10(2500), 15)
    far.means[:] = dirs * dist[:, None] + torch.tensor([0, 0, 2.0])
    far.log_scales[:] = math.log(0.5)
    far.log_scales[12:] = math.log(5.0)  # 30 m wide
    far.means[12:] = torch.tensor([[3.0, 3.0, 8.0], [-3.0, 3.0, 8.0], [0.0, -4.0, 8.0]])  # near, but huge
    far.opacity_logits[:] = 2.0
    s = Splats(**{k: torch.cat([a, b]) for (k, a), b in zip(near.as_dict().items(), far.as_dict().values(),
                                                              strict=True)})  # fmt: skip
    return scene, s


@pytest.mark.parametrize("plugin", list(PLUGINS))
def test_default_export_of_every_plugin_has_no_stray_tile(tmp_path, plugin):
    scene, s = _scene_with_outliers()
    opts = UnrealExportOptions(plugin=plugin, scale="1", crop="none")
    paths = export_unreal(s, scene, tmp_path, opts)
    m = json.loads(paths[-1].read_text())
    assert m["far_field"]["far_field"] == 15 and m["crop"]["far_field"] == 15
    assert m["far_field"]["larger_than_extent"] == 3
    assert m["num_splats"]["written"] == 3000
    sizes = [t["num_splats"] for t in m["tiles"]]
    assert min(sizes) >= T.min_tile_splats(3000, len(sizes))
    line = made_line(m)
    assert f"made {len(m['files'])} files for {plugin}: 3,000 splats" in line
    assert "15 far splats dropped" in line
    # Kept on request: the outliers are written.
    opts = UnrealExportOptions(plugin=plugin, scale="1", crop="none", far_field="keep", tiles="none")
    m = json.loads(export_unreal(s, scene, tmp_path / "keep", opts)[-1].read_text())
    assert m["far_field"] is None and "far field kept" in made_line(m)
    out_of_range = sum(t["limits"].get("out_of_range", 0) for t in m["tiles"])
    assert m["num_splats"]["written"] + out_of_range == 3015


def test_precision_tiles_exist_and_none_is_under_the_share(tmp_path):
    """PICOSplat's box quantisation makes the auto export tile this scene; no tile is stray."""
    scene, s = _scene_with_outliers(seed=2)
    opts = UnrealExportOptions(plugin="picosplat", scale="1", crop="none")
    m = json.loads(export_unreal(s, scene, tmp_path, opts)[-1].read_text())
    sizes = [t["num_splats"] for t in m["tiles"]]
    assert len(sizes) > 1 and sum(sizes) == 3000
    assert min(sizes) >= T.min_tile_splats(3000, len(sizes))


def test_stray_splats_out_on_their_own_are_not_a_tile_of_their_own(tmp_path):
    """Five small splats inside the near field (not far field) but cells away from the rest,
    where PICOSplat's precision tiles cannot merge them into a neighbour (seen on South Building:
    a tile of 4 splats): they are left out and said, never written as an actor of their own."""
    scene, s = _scene_with_outliers(seed=2)
    stray = Splats.random(5, 1, 7).to(torch.float32)
    stray.means[:] = torch.tensor([24.0, 24.0, 1.0]) + 0.05 * torch.randn(5, 3)
    stray.log_scales[:] = math.log(0.02)
    stray.opacity_logits[:] = 2.0
    s = Splats(**{k: torch.cat([a, b]) for (k, a), b in zip(s.as_dict().items(), stray.as_dict().values(),
                                                              strict=True)})  # fmt: skip
    opts = UnrealExportOptions(plugin="picosplat", scale="1", crop="none")
    m = json.loads(export_unreal(s, scene, tmp_path, opts)[-1].read_text())
    sizes = [t["num_splats"] for t in m["tiles"]]
    assert m["crop"]["far_field"] == 15 and m["num_splats"]["written"] == 3000  # the 5 left out
    assert min(sizes) >= T.min_tile_splats(3000, len(sizes))
    assert any("5 stray splats left out" in line for line in m["messages"]), m["messages"]
