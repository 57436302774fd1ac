"""Scratch arrays reused from one training step to the next.

A CPU training step needs tens of MB of short-lived arrays (per-intersection tables, gradient
rows, the forward's pair records, SSIM's windowed sums). Fresh arrays that size come from new
pages, and on the 2-core VM a page fault costs about 9 us: measured 6,200 faults per step at
269x479 before this pool. A :class:`BufferPool` hands out views of kept buffers instead; what a
forward pass takes is given back by its backward (or dropped with the autograd graph when no
backward runs, which only costs a fresh allocation next time).
"""

from __future__ import annotations

import math

import numpy as np


class BufferPool:
    """``take(shape, dtype)`` a C-contiguous array (contents undefined), ``give(*arrays)`` back."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._free: list[np.ndarray] = []  # flat uint8 buffers

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        fits = [i for i, b in enumerate(self._free) if b.nbytes >= nbytes]
        if fits:
            buf = self._free.pop(min(fits, key=lambda i: self._free[i].nbytes))
        else:
            buf = np.empty(max(int(nbytes * 1.25), 4096), np.uint8)
        return buf[:nbytes].view(dtype).reshape(shape)

    def give(self, *arrays: np.ndarray) -> None:
        """Return arrays made by :meth:`take` (their buffer is numpy's ``base``); the caller
        must not use them afterwards."""
        for arr in arrays:
            buf = arr.base
            if (isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.base is None
                    and len(self._free) < self.keep and all(b is not buf for b in self._free)):  # fmt: skip
                self._free.append(buf)


#: The pool the CPU renderer and the CPU loss share.
POOL = BufferPool()
