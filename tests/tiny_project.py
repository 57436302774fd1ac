"""A tiny COLMAP project (``images/`` + ``sparse/0``) for whole-command tests in seconds.

Eight ring cameras (160 x 120, PINHOLE) looking at coloured blobs, the photos rendered by splatkit's
own renderer (tests/fake_run.py), the blobs' centres as the sparse points. ``splatkit train
PROJECT`` reads the cameras as they are (SfM skipped), so the whole job (run folder, resume,
training, evaluation, scene.ply, report) runs in seconds with the ``tiny`` preset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from fake_run import N_CAMS, blob_splats, intrinsics, render_view, ring_cameras, write_colmap
from PIL import Image


def make_project(root: Path) -> Path:
    """Write the project into ``root`` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    K, w2cs, splats = intrinsics(), ring_cameras(), blob_splats()
    (root / "images").mkdir(exist_ok=True)
    for i, w2c in enumerate(w2cs):
        Image.fromarray(render_view(splats, w2c, K)).save(root / "images" / f"{i + 1:04d}.jpg", quality=95)
    pts = splats.means.numpy().astype(np.float64)
    cols = (np.clip(0.5 + 0.28209479 * splats.sh0[:, 0].numpy(), 0, 1) * 255).astype(np.uint8)
    write_colmap(root / "sparse" / "0", w2cs, K, pts, cols)
    assert len(list((root / "images").iterdir())) == N_CAMS
    return root


def hashes(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below ``folder`` (to show nothing was touched)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }
