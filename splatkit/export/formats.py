"""Splat formats besides the INRIA PLY: .splat, SuperSplat compressed PLY, Niantic .spz.

- ``ply``: :func:`splatkit.export.ply.write_ply` (SH zero-padded to degree 3 unless degree 0).
- ``compressed-ply``: gsplat's ``export_splats(format="ply_compressed")`` (PlayCanvas layout:
  chunks of 256, 11/10/11-bit positions and log-scales, 8-bit colour+opacity, smallest-three
  rotations, 8-bit SH). Checked by decoding (:func:`read_compressed_ply`, tests). Invalid rows
  are dropped here first: gsplat's own NaN filter drops *every* row when one opacity is NaN (it
  reduces the opacity check to one scalar), and its writer fails on zero rows.
- ``splat``: antimatter15's 32-byte records, written here (vectorised; gsplat's writer loops over
  splats in Python: about 45 s per million on this machine) and sorted by importance as
  antimatter15's ``convert.py`` does.
- ``spz``: Niantic SPZ **version 3** (gzip of header + attribute streams), written here:
  the ``spz`` package on PyPI (0.0.1) is an sdist of Rust code that does not build without a
  Rust toolchain and network access to crates.io, and version 4 needs zstd (not a dependency).
  Readers of the reference library load versions 1-3. Coordinates are converted from the
  PLY frame (RDF: x right, y down, z forward) to SPZ's RUB by a 180-degree turn about x,
  applied as a rotation (SH rotated too).
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from splatkit.errors import UserError
from splatkit.export import frames as F
from splatkit.export.ply import write_ply
from splatkit.fileio import write_bytes_atomic
from splatkit.splats import SH_C0, Splats

EXTENSIONS = {"ply": ".ply", "compressed-ply": ".compressed.ply", "splat": ".splat", "spz": ".spz"}
SPZ_MAGIC = 0x5053474E  # "NGSP"
SPZ_COLOR_SCALE = 0.15
SQRT1_2 = math.sqrt(0.5)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _finite(s: Splats) -> Splats:
    from splatkit.export.unreal import finite_mask

    return s.index(torch.where(finite_mask(s))[0])


def write_format(splats: Splats, out_dir: Path, name: str, fmt: str, sh_degree: int = 3) -> Path:
    """Write ``splats`` (already in the target frame) as ``out_dir/<name><ext>``."""
    path = Path(out_dir) / f"{name}{EXTENSIONS[fmt]}"
    s = _finite(splats)
    if len(s) == 0:
        raise UserError("There are no valid splats to write.", "Check the training output.")
    if fmt == "ply":
        return write_ply(s, path, sh_degree=sh_degree, pad_sh_to=3 if sh_degree > 0 else None)
    if sh_degree < s.sh_degree:
        s = Splats(**{**s.as_dict(), "shN": s.shN[:, : (sh_degree + 1) ** 2 - 1]})
    if fmt == "splat":
        data = splat_bytes(s)
    elif fmt == "compressed-ply":
        data = compressed_ply_bytes(s)
    elif fmt == "spz":
        data = spz_bytes(s)
    else:
        raise UserError(f"Unknown format {fmt!r}.", f"Use one of {', '.join(EXTENSIONS)}.")
    write_bytes_atomic(path, data)
    return path


# --------------------------------------------------------------------------------------------
# .splat (antimatter15)


def splat_bytes(s: Splats) -> bytes:
    """32 bytes per splat: f32 xyz, f32 linear scales, u8 RGBA, u8 quaternion (w,x,y,z)*128+128."""
    n = len(s)
    order = np.argsort(-_np(torch.exp(s.log_scales.double().sum(1)) * s.opacities.double()),
                       kind="stable")  # fmt: skip
    rec = np.zeros(n, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                             ("rot", "u1", 4)])  # fmt: skip
    rec["pos"] = _np(s.means)[order]
    rec["scale"] = np.exp(_np(s.log_scales))[order]
    rgb = 0.5 + SH_C0 * _np(s.sh0[:, 0])
    a = 1 / (1 + np.exp(-_np(s.opacity_logits)))
    rec["rgba"] = np.clip(np.concatenate([rgb, a[:, None]], 1) * 255, 0, 255)[order]
    q = _np(s.quats)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    rec["rot"] = np.clip(q * 128 + 128, 0, 255)[order]
    return rec.tobytes()


def read_splat(data: bytes) -> dict[str, np.ndarray]:
    """Decode a .splat file (for checks): positions, scales, rgba [0,1], quats (w,x,y,z)."""
    if len(data) % 32:
        raise UserError("Not a .splat file (size is not a multiple of 32).", "Re-export it.")
    rec = np.frombuffer(data, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                                     ("rot", "u1", 4)])  # fmt: skip
    return {"means": rec["pos"].astype(np.float64), "scales": rec["scale"].astype(np.float64),
            "rgba": rec["rgba"] / 255.0, "quats": (rec["rot"] - 128.0) / 128.0}  # fmt: skip


# --------------------------------------------------------------------------------------------
# SuperSplat compressed PLY (through gsplat)


def compressed_ply_bytes(s: Splats) -> bytes:
    from gsplat.exporter import export_splats

    keep = s.opacities > 1 / 255  # gsplat drops these too; keep none-left an error of ours
    if not keep.any():
        raise UserError("Every splat is near-transparent.", "Check the training output.")
    s = s.index(torch.where(keep)[0]).to(torch.float32)
    return export_splats(s.means, s.log_scales, s.quats, s.opacity_logits, s.sh0, s.shN,
                         format="ply_compressed")  # fmt: skip


def read_compressed_ply(data: bytes) -> dict[str, np.ndarray]:
    """Decode a compressed PLY (for checks): means, log_scales, rgb, opacity, quats (w,x,y,z),
    in file (Morton) order."""
    end = data.find(b"end_header\n") + len(b"end_header\n")
    head = data[:end].decode("ascii").split("\n")
    counts = {ln.split()[1]: int(ln.split()[2]) for ln in head if ln.startswith("element")}
    nc, n = counts["chunk"], counts["vertex"]
    n_sh = sum(1 for ln in head if ln.startswith("property uchar f_rest_"))
    off = end
    ch = np.frombuffer(data, "<f4", nc * 18, off).reshape(nc, 18).astype(np.float64)
    off += nc * 18 * 4
    v = np.frombuffer(data, "<u4", n * 4, off).reshape(n, 4).astype(np.int64)
    off += n * 16
    sh = np.frombuffer(data, "u1", n * n_sh, off).reshape(n, n_sh) if n_sh else None
    c = ch[np.arange(n) // 256]

    def unpack111011(p, lo, hi):
        f = np.stack([(p >> 21) & 2047, (p >> 11) & 1023, p & 2047], 1) / [2047.0, 1023.0, 2047.0]
        return lo + f * (hi - lo)

    means = unpack111011(v[:, 0], c[:, 0:3], c[:, 3:6])
    log_scales = unpack111011(v[:, 2], c[:, 6:9], c[:, 9:12])
    col = np.stack([(v[:, 3] >> s) & 255 for s in (24, 16, 8, 0)], 1) / 255.0
    rgb = c[:, 12:15] + col[:, :3] * (c[:, 15:18] - c[:, 12:15])
    r = v[:, 1]
    largest = (r >> 30) & 3
    three = np.stack([(r >> 20) & 1023, (r >> 10) & 1023, r & 1023], 1) / 1023.0
    three = (three - 0.5) / (SQRT1_2)
    q = np.zeros((n, 4))
    for i in range(4):
        m = largest == i
        others = [j for j in range(4) if j != i]
        q[np.ix_(m, others)] = three[m]
        q[m, i] = np.sqrt(np.clip(1 - (three[m] ** 2).sum(1), 0, None))
    out = {"means": means, "log_scales": log_scales, "rgb": rgb, "opacity": col[:, 3], "quats": q}
    if sh is not None:
        out["f_rest"] = (sh / 256.0 - 0.5) * 8
    return out


# --------------------------------------------------------------------------------------------
# Niantic .spz, version 3

#: PLY frame (RDF) -> SPZ's RUB: a half turn about x.
RDF_TO_RUB = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def spz_bytes(s: Splats, fractional_bits: int = 12) -> bytes:
    """SPZ v3 (gzip): header, positions (24-bit fixed), alphas, colours, scales, rotations
    (smallest three), SH (colour-inner, 5 bits for degree 1, 4 bits above)."""
    if s.sh_degree > 3:
        raise UserError("SPZ export supports SH up to degree 3.", "Use --sh-degree 3 or lower.")
    s = F.transform_splats(s, F.Similarity(RDF_TO_RUB, torch.zeros(3, dtype=torch.float64)))
    n = len(s)
    pos = np.round(_np(s.means) * (1 << fractional_bits)).astype(np.int64)
    lim = (1 << 23) - 1
    if np.abs(pos).max(initial=0) > lim:
        raise UserError("The scene is too large for SPZ's 24-bit positions.",
                        "Crop it (--crop) or write PLY.")  # fmt: skip
    pos = (pos & 0xFFFFFF).astype("<u4").view("u1").reshape(n, 3, 4)[:, :, :3].reshape(-1)
    alphas = _u8(255 / (1 + np.exp(-_np(s.opacity_logits))))
    colors = _u8(_np(s.sh0[:, 0]) * (SPZ_COLOR_SCALE * 255) + 0.5 * 255).reshape(-1)
    scales = _u8((_np(s.log_scales) + 10.0) * 16.0).reshape(-1)
    rots = pack_smallest_three(_np(s.quats)[:, [1, 2, 3, 0]])  # spz order x, y, z, w
    sh = np.zeros(0, np.uint8)
    if s.sh_degree > 0:
        q = np.round(_np(s.shN) * 128.0) + 128.0  # [N, K-1, 3], coefficient-major, colour inner
        bucket = np.full(q.shape[1], 16.0)
        bucket[:3] = 8.0  # 5 bits for degree 1, 4 bits for the others
        q = (
            np.floor((q + bucket[None, :, None] / 2) / bucket[None, :, None])
            * bucket[None, :, None]
        )
        sh = np.clip(q, 0, 255).astype(np.uint8).reshape(-1)
    header = struct.pack("<IIIBBBB", SPZ_MAGIC, 3, n, s.sh_degree, fractional_bits, 0, 0)
    payload = b"".join(x.tobytes() for x in (pos, alphas, colors, scales, rots, sh))
    return gzip.compress(header + payload, compresslevel=6, mtime=0)


def pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """Quaternions ``[N, 4]`` (x, y, z, w) -> ``[N*4]`` bytes as nianticlabs/spz
    ``packQuaternionSmallestThree``: 2-bit index of the largest component, then for each other
    component (in order) a sign bit and a 9-bit magnitude of |v| / sqrt(1/2)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    n = q.shape[0]
    il = np.abs(q).argmax(1)
    negate = q[np.arange(n), il] < 0
    comp = il.astype(np.uint32)
    for i in range(4):
        neg = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = np.minimum(np.floor(511 * np.abs(q[:, i]) / SQRT1_2 + 0.5), 511).astype(np.uint32)
        comp = np.where(il != i, (comp << 10) | (neg << 9) | mag, comp).astype(np.uint32)
    return comp.astype("<u4").view("u1")


def read_spz(data: bytes) -> dict[str, np.ndarray]:
    """Decode SPZ v2/v3 (for checks); values in SPZ's RUB frame, raw (log scales, logits)."""
    raw = gzip.decompress(data)
    magic, version, n, deg, fb, _flags, _ = struct.unpack_from("<IIIBBBB", raw)
    if magic != SPZ_MAGIC or version not in (2, 3):
        raise UserError("Not an SPZ v2/v3 file.", "Re-export it.")
    off = 16
    p = np.frombuffer(raw, "u1", n * 9, off).reshape(n, 3, 3).astype(np.int64)
    off += n * 9
    v = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    v = np.where(v & 0x800000, v - (1 << 24), v)
    a = np.frombuffer(raw, "u1", n, off) / 255.0
    off += n
    col = np.frombuffer(raw, "u1", n * 3, off).reshape(n, 3)
    off += n * 3
    sc = np.frombuffer(raw, "u1", n * 3, off).reshape(n, 3)
    off += n * 3
    r = np.frombuffer(raw, "<u4", n, off).astype(np.int64)
    off += n * 4
    q = np.zeros((n, 4))
    il = r >> 30
    work = r.copy()
    ssum = np.zeros(n)
    for i in range(3, -1, -1):
        act = il != i
        val = SQRT1_2 * (work & 511) / 511.0
        val = np.where((work >> 9) & 1, -val, val)
        q[act, i] = val[act]
        ssum = np.where(act, ssum + val * val, ssum)
        work = np.where(act, work >> 10, work)
    q[np.arange(n), il] = np.sqrt(np.clip(1 - ssum, 0, None))
    k = (deg + 1) ** 2 - 1
    sh = np.frombuffer(raw, "u1", n * k * 3, off).reshape(n, k, 3)
    return {
        "means": v / float(1 << fb),
        "opacity": a,
        "sh0": (col / 255.0 - 0.5) / SPZ_COLOR_SCALE,
        "log_scales": sc / 16.0 - 10.0,
        "quats": q[:, [3, 0, 1, 2]],
        "shN": (sh - 128.0) / 128.0,
        "sh_degree": deg,
    }
