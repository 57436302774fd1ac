"""Tiles: a scene cut into squares of the ground plane, each its own file and actor.

NanoGS recommends slicing large scenes into tiles (its ``TileSlicer/tile_slicer.py`` cuts a PLY
into a grid in the ground plane); tiles also keep each file within a plugin's storage limits
(:mod:`splatkit.export.limits`): a tile's splats are stored relative to its own origin (the
tile's centre, at mid-height), and the manifest places each tile's actor at that origin.

Reassembling the tiles (local positions + origin) gives back the untiled export splat for
splat (``tests/test_export_tiles.py``).

No tile is made for a few stray splats: a tile holding less than :func:`min_tile_splats` of the
scene merges into its nearest neighbour (:func:`merge_small`), and a size asked for is raised
to :func:`min_tile_size` so that tiles hold :data:`MIN_SPLATS_PER_TILE` splats on average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from splatkit.splats import Splats

#: A tile holding less than this share of the splats merges into its nearest neighbour ...
MIN_TILE_SHARE = 0.01
#: ... or less than this fraction of an even share, whichever is smaller (a scene cut into many
#: even tiles keeps them).
MIN_EVEN_FRACTION = 0.25
#: Tiles of a size asked for hold at least this many splats on average (the size is raised).
MIN_SPLATS_PER_TILE = 10_000
#: And the ground is cut into at most this many tiles along its longer side.
MAX_TILES_PER_SIDE = 64


@dataclass
class Tile:
    """One tile: grid cell ``(ix, iy)``, ``origin`` in the upright frame (metres), and the
    indices of its splats in the untiled set."""

    ix: int
    iy: int
    origin: Tensor
    index: Tensor

    @property
    def suffix(self) -> str:
        return f"_x{self.ix}_y{self.iy}"


def grid(means_upright: Tensor, size: float) -> list[Tile]:
    """Squares of side ``size`` (metres) on the upright XY plane, aligned so that the origin of
    the frame is a cell centre; empty cells are left out. Every splat is in exactly one tile.
    A tile's origin is its cell centre at the middle of its heights (to the centimetre), which
    halves the heights its file stores."""
    if not size > 0 or not math.isfinite(size):
        raise ValueError(f"tile size must be positive, not {size}")
    cell = torch.floor(means_upright[:, :2].double() / size + 0.5).long()
    keys, inverse = torch.unique(cell, dim=0, return_inverse=True)
    tiles = []
    for k in range(len(keys)):
        ix, iy = int(keys[k, 0]), int(keys[k, 1])
        idx = torch.where(inverse == k)[0]
        z = means_upright[idx, 2].double()
        mid = round(float(z.min() + z.max()) / 2, 2)
        origin = torch.tensor([ix * size, iy * size, mid], dtype=torch.float64)
        tiles.append(Tile(ix, iy, origin, idx))
    return tiles


def single(n: int) -> list[Tile]:
    """The untiled export as one tile at the origin."""
    return [Tile(0, 0, torch.zeros(3, dtype=torch.float64), torch.arange(n))]


def local_splats(ply_splats: Splats, tile: Tile, R_ply: Tensor) -> Splats:
    """The tile's splats relative to its origin, in the PLY frame (``R_ply``: upright -> PLY)."""
    s = ply_splats.index(tile.index)
    offset = (R_ply.double() @ tile.origin).to(s.means.dtype)
    return Splats(**{**s.as_dict(), "means": s.means - offset})


def reassemble(parts: list[tuple[Splats, Tensor]]) -> Splats:
    """Concatenate tiles given as (local splats, PLY-frame offset): the inverse of tiling."""
    fields = {k: [] for k in ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")}
    for s, offset in parts:
        d = s.as_dict()
        d["means"] = (s.means.double() + offset.double()).to(s.means.dtype)
        for k in fields:
            fields[k].append(d[k])
    return Splats(**{k: torch.cat(v) for k, v in fields.items()})


def min_tile_splats(n_splats: int, n_tiles: int) -> int:
    """The fewest splats a tile may hold: :data:`MIN_TILE_SHARE` of the scene, or
    :data:`MIN_EVEN_FRACTION` of an even share when that is smaller (at least 1)."""
    share = min(MIN_TILE_SHARE, MIN_EVEN_FRACTION / max(n_tiles, 1))
    return max(1, math.ceil(share * n_splats))


def _mid_origin(tile: Tile, means_upright: Tensor) -> Tensor:
    z = means_upright[tile.index, 2].double()
    return torch.tensor([float(tile.origin[0]), float(tile.origin[1]),
                         round(float(z.min() + z.max()) / 2, 2)], dtype=torch.float64)  # fmt: skip


def merge_small(tiles: list[Tile], means_upright: Tensor, max_cells: float = math.inf) -> list[Tile]:
    """Merge every tile below :func:`min_tile_splats` (of the scene and the tiles before any
    merge) into the nearest other tile (by cell; ties: the larger), smallest first, until none
    is left below it or one tile remains. ``max_cells``: merge only into a tile at most this
    many cells away along each axis (tiles cut for a plugin's precision or range: a far one
    would spoil it); a small tile with no such neighbour stays. The receiving tile keeps its
    cell and origin in the ground plane; its origin's height is re-centred on its splats."""
    tiles = list(tiles)
    n = sum(len(t.index) for t in tiles)
    floor = min_tile_splats(n, len(tiles))
    stuck: set[tuple[int, int]] = set()
    while len(tiles) > 1:
        small_ones = [i for i in range(len(tiles))
                      if len(tiles[i].index) < floor and (tiles[i].ix, tiles[i].iy) not in stuck]  # fmt: skip
        if not small_ones:
            break
        small = min(small_ones, key=lambda i: (len(tiles[i].index), tiles[i].ix, tiles[i].iy))
        t = tiles[small]
        others = [i for i in range(len(tiles)) if i != small
                  and max(abs(tiles[i].ix - t.ix), abs(tiles[i].iy - t.iy)) <= max_cells]  # fmt: skip
        if not others:
            stuck.add((t.ix, t.iy))
            continue
        near = min(others, key=lambda i: ((tiles[i].ix - t.ix) ** 2 + (tiles[i].iy - t.iy) ** 2,
                                          -len(tiles[i].index)))  # fmt: skip
        r = tiles[near]
        merged = Tile(r.ix, r.iy, r.origin, torch.sort(torch.cat([r.index, t.index])).values)
        merged.origin = _mid_origin(merged, means_upright)
        tiles[near] = merged
        del tiles[small]
    return tiles


def ground_extent(means_upright: Tensor) -> tuple[float, float]:
    """The splats' extent on the ground (upright X, Y), metres."""
    if len(means_upright) == 0:
        return 0.0, 0.0
    ext = means_upright[:, :2].double().max(0).values - means_upright[:, :2].double().min(0).values
    return float(ext[0]), float(ext[1])


def min_tile_size(means_upright: Tensor) -> float:
    """The smallest tile size (metres) for these splats: tiles hold :data:`MIN_SPLATS_PER_TILE`
    splats on average over the ground's bounding box, and there are at most
    :data:`MAX_TILES_PER_SIDE` along its longer side."""
    ex, ey = ground_extent(means_upright)
    n = len(means_upright)
    by_count = math.sqrt(max(ex * ey, 0.0) * MIN_SPLATS_PER_TILE / max(n, 1))
    return max(by_count, max(ex, ey) / MAX_TILES_PER_SIDE, 1e-3)
