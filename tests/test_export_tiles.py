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
def test_tiled_export_reassembles_to_the_untiled_one(tmp_path, plugin, monkeypatch):
    monkeypatch.setattr(T, "MIN_SPLATS_PER_TILE", 10)  # small tiles of a small scene, on purpose
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


def _tiles_of(counts: dict[tuple[int, int], int], size: float = 1.0) -> tuple[list[T.Tile], torch.Tensor]:
    means, tiles, start = [], [], 0
    for (ix, iy), n in counts.items():
        means.append(torch.tensor([[ix * size, iy * size, 0.0]]).repeat(n, 1))
        tiles.append(T.Tile(ix, iy, torch.tensor([ix * size, iy * size, 0.0], dtype=torch.float64),
                            torch.arange(start, start + n)))  # fmt: skip
        start += n
    return tiles, torch.cat(means).double()


def test_small_tiles_merge_into_their_nearest_neighbour():
    tiles, means = _tiles_of({(0, 0): 500, (1, 0): 480, (2, 0): 3, (9, 9): 2, (0, 1): 15})
    out = T.merge_small(tiles, means)
    floor = T.min_tile_splats(1000, 5)
    assert floor == 10 and all(len(t.index) >= floor for t in out)
    assert sorted(len(t.index) for t in out) == [15, 485, 500]  # (2,0)->(1,0), (9,9)->(1,0)
    idx = torch.cat([t.index for t in out]).sort().values
    assert torch.equal(idx, torch.arange(1000))  # nothing lost
    # Cut for precision: only adjacent tiles take a small one; a far stray keeps its own.
    out = T.merge_small(tiles, means, max_cells=1)
    assert sorted((t.ix, t.iy, len(t.index)) for t in out) == [(0, 0, 500), (0, 1, 15), (1, 0, 483),
                                                               (9, 9, 2)]  # fmt: skip


def test_min_share_follows_the_even_share():
    assert T.min_tile_splats(100_000, 4) == 1000  # 1 %
    assert T.min_tile_splats(100_000, 100) == 250  # a quarter of an even share
    assert T.min_tile_splats(10, 3) == 1


def test_tiles_asked_for_have_a_lower_bound(tmp_path):
    """--tiles 0.001 on 206 splats: one file set, and a message saying the size was raised."""
    scene, _ = synthetic_scene(random_rotation(3), seed=3)
    s = random_splats(206, 0, seed=4).to(torch.float32)
    s.means[:] = scene.points[:206] * 3
    opts = UnrealExportOptions(plugin="nanogs", format="ply", crop="none", tiles="0.001", scale="1")
    m = json.loads(export_unreal(s, scene, tmp_path, opts)[-1].read_text())
    assert len(m["tiles"]) == 1 and len(m["files"]) == 1
    assert sum("--tiles 0.001 m raised to" in x for x in m["messages"]) == 1
    g = torch.Generator().manual_seed(0)
    big = torch.rand(200_000, 3, generator=g, dtype=torch.float64) * 100
    size = T.min_tile_size(big)
    assert 100 / T.MAX_TILES_PER_SIDE <= size
    assert (100 / size) ** 2 <= 200_000 / T.MIN_SPLATS_PER_TILE * 1.01  # ~20 tiles of 10,000
