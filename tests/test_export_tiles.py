"""Tiles (splatkit/export/tiles.py): a tiled export reassembled equals the untiled one splat for
splat, and the manifest places every tile."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splatkit import frames as F
from splatkit.export import tiles as T
from splatkit.export.plugins import PLUGINS
from splatkit.export.ply import read_ply
from splatkit.export.unreal import UnrealExportOptions, export_unreal
from tests.unreal_util import random_rotation, random_splats, synthetic_scene


def test_grid_puts_every_splat_in_one_tile():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 3, generator=g, dtype=torch.float64) * 10
    tiles = T.grid(means, 4.0)
    idx = torch.cat([t.index for t in tiles]).sort().values
    assert torch.equal(idx, torch.arange(1000))
    for t in tiles:
        local = means[t.index, :2] - t.origin[:2]
        assert float(local.abs().max()) <= 2.0 + 1e-9  # within half a tile of its origin
    with pytest.raises(ValueError):
        T.grid(means, 0.0)


@pytest.mark.parametrize("plugin", ["nanogs", "italink"])
def test_tiled_export_reassembles_to_the_untiled_one(tmp_path, plugin):
    scene, _ = synthetic_scene(random_rotation(3), seed=3)
    s = random_splats(500, 3, seed=4).to(torch.float32)
    s.means[:] = scene.points[:500] * 3
    base = dict(plugin=plugin, format="ply", crop="none", name="env")
    one = json.loads(
        export_unreal(s, scene, tmp_path / "one", UnrealExportOptions(**base, tiles="none"))[-1].read_text()
    )
    paths = export_unreal(s, scene, tmp_path / "tiled", UnrealExportOptions(**base, tiles="1.5"))
    m = json.loads(paths[-1].read_text())
    assert len(m["tiles"]) > 4
    assert [f["path"] for t in m["tiles"] for f in t["files"]] == [f["path"] for f in m["files"]]
    parts = []
    M = F.ply_to_ue_matrix(PLUGINS[plugin].ply_axes)
    for t in m["tiles"]:
        sp = read_ply(tmp_path / "tiled" / t["files"][0]["path"])
        assert len(sp) == t["num_splats"] and t["rotation_deg"] == [0.0, 0.0, 0.0]
        offset_ply = M.T @ torch.tensor(t["location_cm"], dtype=torch.float64) / 100.0  # M^-1 = M^T
        parts.append((sp, offset_ply))
    tiled = T.reassemble(parts)
    whole = read_ply(tmp_path / "one" / one["files"][0]["path"])
    assert len(tiled) == len(whole) == one["num_splats"]["written"] == m["num_splats"]["written"]
    key = lambda sp: np.lexsort(sp.opacity_logits.numpy()[None])  # noqa: E731 (opacities are distinct)
    a, b = whole.index(torch.tensor(key(whole))), tiled.index(torch.tensor(key(tiled)))
    assert torch.allclose(a.means, b.means, atol=2e-6, rtol=0)
    for k in ("log_scales", "quats", "opacity_logits", "sh0", "shN"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
