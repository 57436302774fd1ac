"""An independent reader: PlayCanvas's splat-transform reads every format splatkit writes.

splat-transform (npm ``@playcanvas/splat-transform``, pinned in scripts/install_node_tools.sh)
has its own PLY, compressed-PLY and .splat parsers and reads .spz through Adobe's WebAssembly
build of Niantic's reference library (converting SPZ's RUB back to the PLY frame, RDF). It
writes what it read as CSV (raw values: log-scales, logit opacity, f_dc SH coefficients,
channel-major f_rest, positions in the PLY frame), which is compared with the splats written.

Tolerances (position mean, DC-coefficient mean; per value, so also for the means):

- ply: float32 written and printed as is: 1e-6.
- splat: positions float32: 1e-6; colour 8-bit of 0.5 + C0*dc by truncation, clipped to [0, 1]:
  against the clipped colour, 1/255 / C0 (0.0139).
- spz: positions 12 fractional bits: 0.5/4096; DC 8-bit with scale 0.15: 0.5/38.25 (0.0131),
  against DC clipped to +-127.5/38.25; SH rounded to buckets of 8 (degree 1) / 16 (2-3) of
  1/128: 8.5/128 per value (checked per splat, which also checks the RUB sign flips).
- compressed-ply: per 256-splat chunk, 11/10-bit positions and 8-bit colour over the chunk's
  range: range/2046 and range_rgb/510/C0, bounded by the whole scene's range; and the reader's
  values equal our own decoder's (:func:`formats.read_compressed_ply`) to 1e-5.

Run ``bash scripts/install_node_tools.sh`` once; without node or the tool these tests skip.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from splatkit.export import formats as FM
from splatkit.splats import SH_C0, Splats

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / ".node_tools" / "node_modules" / ".bin" / "splat-transform"
N = 2000


def _tool() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (splat-transform needs Node.js >= 18)")
    if not TOOL.exists():
        pytest.skip(f"splat-transform is not installed in {TOOL.parent.parent.parent}: "
                    "run `bash scripts/install_node_tools.sh`")  # fmt: skip
    return TOOL


def read_with_splat_transform(path: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"{path.name}.csv"
    r = subprocess.run([str(_tool()), "-q", "-w", str(path), str(out)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, f"splat-transform failed on {path.name}:\n{r.stdout}\n{r.stderr}"
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    cols = np.array(rows[1:], dtype=np.float64).reshape(len(rows) - 1, len(rows[0]))
    return {name: cols[:, i] for i, name in enumerate(rows[0])}


def scene(degree: int, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(
        means=torch.randn(N, 3, generator=g) * torch.tensor([2.0, 1.0, 0.5]) + 0.3,
        log_scales=torch.randn(N, 3, generator=g) - 3,
        quats=torch.randn(N, 4, generator=g),
        opacity_logits=torch.randn(N, generator=g).clamp(-4, 4),  # none below 1/255
        sh0=torch.randn(N, 1, 3, generator=g),
        shN=torch.randn(N, (degree + 1) ** 2 - 1, 3, generator=g) * 0.2,
    )


def _cols(d: dict[str, np.ndarray], *names: str) -> np.ndarray:
    return np.stack([d[nm] for nm in names], 1)


@pytest.mark.parametrize("degree", [0, 3])
@pytest.mark.parametrize("fmt", ["ply", "compressed-ply", "splat", "spz"])
def test_splat_transform_reads_ours(tmp_path, fmt, degree):
    _tool()
    s = scene(degree, seed=degree)
    path = FM.write_format(s, tmp_path, "a", fmt, sh_degree=degree)
    d = read_with_splat_transform(path, tmp_path)
    pos = _cols(d, "x", "y", "z")
    dc = _cols(d, "f_dc_0", "f_dc_1", "f_dc_2")
    assert len(pos) == len(s) == N  # count

    means, sh0 = s.means.double().numpy(), s.sh0[:, 0].double().numpy()
    if fmt == "ply":
        pos_tol, dc_tol, dc_ref = 1e-6, 1e-6, sh0
    elif fmt == "splat":
        rgb = np.clip(0.5 + SH_C0 * sh0, 0, 1)
        pos_tol, dc_tol, dc_ref = 1e-6, 1 / 255 / SH_C0 + 1e-6, (rgb - 0.5) / SH_C0
    elif fmt == "spz":
        lim = 127.5 / 38.25
        pos_tol, dc_tol, dc_ref = 0.5 / 4096 + 1e-6, 0.5 / 38.25 + 1e-6, np.clip(sh0, -lim, lim)
    else:
        rgb = 0.5 + SH_C0 * sh0
        pos_tol = float((means.max(0) - means.min(0)).max()) / 2046 + 1e-6
        dc_tol = float((rgb.max(0) - rgb.min(0)).max()) / 510 / SH_C0 + 1e-6
        dc_ref = sh0
        ours = FM.read_compressed_ply(path.read_bytes())
        assert np.allclose(pos.mean(0), ours["means"].mean(0), atol=1e-5)
        assert np.allclose(dc.mean(0), ((ours["rgb"] - 0.5) / SH_C0).mean(0), atol=1e-5)
    assert np.abs(pos.mean(0) - means.mean(0)).max() <= pos_tol, fmt
    assert np.abs(dc.mean(0) - dc_ref.mean(0)).max() <= dc_tol, fmt

    if fmt in ("ply", "spz"):  # same row order: per splat, SH included
        assert np.abs(pos - means).max() <= pos_tol
        assert np.abs(dc - dc_ref).max() <= dc_tol
        k = s.shN.shape[1]
        if degree:
            rest = _cols(d, *[f"f_rest_{i}" for i in range(3 * k)]).reshape(N, 3, k)
            ref = s.shN.double().numpy().transpose(0, 2, 1)
            if fmt == "spz":
                assert np.abs(rest - np.clip(ref, -1, 127 / 128)).max() <= 8.5 / 128 + 1e-6
            else:
                assert np.abs(rest - ref).max() <= 1e-6
