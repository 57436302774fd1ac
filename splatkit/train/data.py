"""Training data: the order in which training visits its views.

The photos at the training resolution, the normalised world and the views are shared with
evaluation: :mod:`splatkit.views`.
"""

from __future__ import annotations

import torch


class ViewOrder:
    """Random order of training views: a fresh permutation per epoch from a seeded generator."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm: list[int] = []
        self.pos = 0

    def next(self) -> int:
        if self.pos >= len(self.perm):
            self.perm = torch.randperm(self.n, generator=self.gen).tolist()
            self.pos = 0
        self.pos += 1
        return self.perm[self.pos - 1]

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": list(self.perm), "pos": self.pos, "n": self.n}

    def load_state_dict(self, d: dict) -> None:
        self.gen.set_state(d["gen"])
        self.perm, self.pos, self.n = list(d["perm"]), int(d["pos"]), int(d["n"])
