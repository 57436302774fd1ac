"""Tiles: a scene cut into squares of the ground plane, each its own file and actor.

NanoGS recommends slicing large scenes into tiles (its ``TileSlicer/tile_slicer.py`` cuts a PLY
into a grid in the ground plane); tiles also keep each file within a plugin's storage limits
(:mod:`splatkit.export.limits`): a tile's splats are stored relative to its own origin (the
tile's centre, at mid-height), and the manifest places each tile's actor at that origin.

Reassembling the tiles (local positions + origin) gives back the untiled export splat for
splat (``tests/test_export_tiles.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from splatkit.splats import Splats


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
