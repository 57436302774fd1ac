"""Splat formats besides the INRIA PLY: .splat, SuperSplat compressed PLY, Niantic .spz.

- ``ply``: :func:`splatkit.export.ply.write_ply` (SH zero-padded to degree 3 unless degree 0).
- ``compressed-ply``: the SuperSplat/PlayCanvas layout gsplat's
  ``export_splats(format="ply_compressed")`` writes (Morton order, chunks of 256 with min/max
  bounds, 11/10/11-bit positions and log-scales, 8-bit colour+opacity, 2-10-10-10 smallest-three
  rotations, 8-bit SH), written here vectorised: gsplat's writer loops over the chunks in
  Python (24 s per million splats); its output is the test oracle (byte for byte, except at
  SH degree 0, where gsplat's empty ``element sh`` is left out: splat-transform rejects it). Rows
  with NaN/Inf are dropped first (gsplat's own filter drops *every* row when one opacity is NaN).
- ``splat``: antimatter15's 32-byte records, written here (vectorised; gsplat's writer loops over
  splats in Python: about 45 s per million on this machine) and sorted by importance as
  antimatter15's ``convert.py`` does.
- ``spz``: Niantic SPZ **version 3** (gzip of header + attribute streams), written here
  (vectorised in blocks; gzip's deflate with the run-length strategy, in parallel pieces:
  :func:`gzip_rle`):
  the ``spz`` package on PyPI (0.0.1) is an sdist of Rust code that does not build without a
  Rust toolchain and network access to crates.io, and version 4 needs zstd (not a dependency).
  Readers of the reference library load versions 1-3. Coordinates are converted from the
  PLY frame (RDF: x right, y down, z forward) to SPZ's RUB by a 180-degree turn about x,
  applied as a rotation (SH rotated too: for this half turn every SH coefficient only changes
  sign, :data:`splatkit.frames.RUB_SH_SIGNS`).

The writers work in float32 on blocks of :data:`BLOCK` splats (temporaries stay in cache;
full-size float64 copies of 1M splats cost more than the arithmetic on them).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from splatkit import frames as F
from splatkit.errors import UserError
from splatkit.export.ply import write_ply
from splatkit.fileio import write_bytes_atomic
from splatkit.splats import SH_C0, Splats

EXTENSIONS = {"ply": ".ply", "compressed-ply": ".compressed.ply", "splat": ".splat", "spz": ".spz"}
SPZ_MAGIC = 0x5053474E  # "NGSP"
SPZ_COLOR_SCALE = 0.15
SQRT1_2 = math.sqrt(0.5)


#: Splats per block in the vectorised writers.
BLOCK = 1 << 15


def _f32(t: torch.Tensor, w: int | None = None) -> np.ndarray:
    """A float32 numpy view (no copy for CPU float32 tensors), reshaped to ``[N, w]``."""
    a = t.detach().to("cpu", torch.float32).numpy()
    return a.reshape(a.shape[0], w) if w else a


def _finite(s: Splats) -> Splats:
    """Rows with no NaN/Inf and a non-zero quaternion (as :func:`crop.finite_mask`, in numpy:
    torch's isfinite took 1.5 s per million splats); no copy when every row is valid."""
    n = len(s)
    ok = np.abs(_f32(s.quats)).max(1) > 0
    for t in s.as_dict().values():
        ok &= np.isfinite(t.detach().cpu().reshape(n, -1).numpy()).all(1)
    return s if ok.all() else s.index(torch.from_numpy(np.flatnonzero(ok)))


def _workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    return max(1, min(os.cpu_count() or 1, 8))


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
    """32 bytes per splat: f32 xyz, f32 linear scales, u8 RGBA, u8 quaternion (w,x,y,z)*128+128,
    most important first (volume x opacity, float32, stable sort)."""
    n = len(s)
    key = (torch.exp(s.log_scales.detach().float().sum(1)) * s.opacities.detach().float()).numpy()
    order = np.argsort(-key, kind="stable")
    rec = np.empty(n, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                             ("rot", "u1", 4)])  # fmt: skip
    means, ls, sh0 = _f32(s.means), _f32(s.log_scales), _f32(s.sh0, 3)
    op, q = _f32(s.opacity_logits), _f32(s.quats)
    for i in range(0, n, BLOCK):
        o = order[i : i + BLOCK]
        r = rec[i : i + BLOCK]
        r["pos"] = means[o]
        r["scale"] = np.exp(ls[o])
        rgba = np.empty((len(o), 4), np.float32)
        rgba[:, :3] = sh0[o] * np.float32(SH_C0) + np.float32(0.5)
        rgba[:, 3] = 1 / (1 + np.exp(-op[o]))
        r["rgba"] = np.clip(rgba * 255, 0, 255)  # truncation, as antimatter15's convert.py
        qo = q[o]
        r["rot"] = np.clip(qo / np.linalg.norm(qo, axis=1, keepdims=True) * 128 + 128, 0, 255)
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
# SuperSplat compressed PLY (gsplat's layout, vectorised)

_CPLY_CHUNK_PROPS = [f"{w}_{c}" for w in ("min", "max") for c in "xyz"] + [
    f"{w}_scale_{c}" for w in ("min", "max") for c in "xyz"] + [
    f"{w}_{c}" for w in ("min", "max") for c in "rgb"]  # fmt: skip
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def _part1by2(x: np.ndarray) -> np.ndarray:
    x = x & 0x3FF
    x = (x ^ (x << 16)) & 0xFF0000FF
    x = (x ^ (x << 8)) & 0x0300F00F
    x = (x ^ (x << 4)) & 0x030C30C3
    return (x ^ (x << 2)) & 0x09249249


def morton_order(means: np.ndarray) -> np.ndarray:
    """gsplat's ``sort_centers``: 10-bit grid over the bounding box (the max coordinate wraps to
    0, as there), Morton code, stable sort."""
    lo = means.min(0)
    ext = means.max(0) - lo
    ext[ext == 0] = 1
    g = np.floor((means - lo) / ext * 1024).astype(np.int64)
    code = (_part1by2(g[:, 2]) << 2) + (_part1by2(g[:, 1]) << 1) + _part1by2(g[:, 0])
    return np.argsort(code, kind="stable")


def _unorm(v: np.ndarray, bits: int) -> np.ndarray:
    """gsplat's ``pack_unorm`` in float32; NaN (a chunk with max == min) -> 0 as there."""
    t = (1 << bits) - 1
    return np.fmin(np.fmax(np.floor(v * t + np.float32(0.5)), 0), t).astype(np.uint32)


def _pack111011(v: np.ndarray) -> np.ndarray:
    return (_unorm(v[:, 0], 11) << 21) | (_unorm(v[:, 1], 10) << 11) | _unorm(v[:, 2], 11)


def _pack_rotation(q: np.ndarray) -> np.ndarray:
    """gsplat's ``pack_rotation``: (w, x, y, z) -> 2-bit index of the largest |component|, then
    the other three (sign flipped so the largest is positive) as 10-bit unorm of v/sqrt(2)+0.5."""
    q = q / torch.linalg.norm(torch.from_numpy(q), dim=-1, keepdim=True).numpy()
    il = np.abs(q).argmax(1)
    rows = np.arange(len(q))
    q[q[rows, il] < 0] *= -1
    three = np.take_along_axis(q, _OTHERS[il], 1) * np.float32(math.sqrt(2) * 0.5) + 0.5
    p = [_unorm(three[:, j], 10) for j in range(3)]
    return (il.astype(np.uint32) << 30) | (p[0] << 20) | (p[1] << 10) | p[2]


def compressed_ply_bytes(s: Splats) -> bytes:
    """The compressed PLY of ``s`` (finite values), dropping opacity <= 1/255 as gsplat does."""
    keep = (torch.sigmoid(s.opacity_logits.detach().float()) > 1 / 255).numpy()
    if not keep.any():
        raise UserError("Every splat is near-transparent.", "Check the training output.")
    if not keep.all():
        s = s.index(torch.from_numpy(np.flatnonzero(keep)))
    n = len(s)
    k3 = 3 * s.shN.shape[1]
    means = _f32(s.means)
    order = morton_order(means)
    nc = -(-n // 256)
    starts = np.arange(0, n, 256)
    cid = np.arange(n) // 256
    m = means[order]
    ls = _f32(s.log_scales)[order]
    rgb = _f32(s.sh0, 3)[order] * np.float32(SH_C0) + np.float32(0.5)
    bounds = np.empty((nc, 18), "<f4")
    with np.errstate(invalid="ignore", divide="ignore"):
        packed = np.empty((n, 4), "<u4")
        for j, (v, clamp) in enumerate([(m, False), (ls, True), (rgb, False)]):
            lo, hi = np.minimum.reduceat(v, starts, 0), np.maximum.reduceat(v, starts, 0)
            if clamp:
                lo, hi = np.clip(lo, -20, 20), np.clip(hi, -20, 20)
            bounds[:, 6 * j : 6 * j + 3], bounds[:, 6 * j + 3 : 6 * j + 6] = lo, hi
            norm = (v - lo[cid]) / (hi - lo)[cid]
            if j < 2:
                packed[:, 0 if j == 0 else 2] = _pack111011(norm)
        op = torch.from_numpy(_f32(s.opacity_logits)[order])
        a = (1 / (1 + torch.exp(-op))).numpy()
        packed[:, 3] = ((_unorm(norm[:, 0], 8) << 24) | (_unorm(norm[:, 1], 8) << 16)
                        | (_unorm(norm[:, 2], 8) << 8) | _unorm(a, 8))  # fmt: skip
        packed[:, 1] = _pack_rotation(_f32(s.quats)[order])
    head = ["ply", "format binary_little_endian 1.0", f"element chunk {nc}"]
    head += [f"property float {p}" for p in _CPLY_CHUNK_PROPS] + [f"element vertex {n}"]
    head += [f"property uint packed_{p}" for p in ("position", "rotation", "scale", "color")]
    if k3:  # gsplat writes "element sh N" with no properties at degree 0: readers reject it
        head += [f"element sh {n}"] + [f"property uchar f_rest_{j}" for j in range(k3)]
    head = ("\n".join(head + ["end_header"]) + "\n").encode("ascii")
    out = np.empty(len(head) + bounds.nbytes + packed.nbytes + n * k3, np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    o = len(head)
    out[o : o + bounds.nbytes] = bounds.reshape(-1).view(np.uint8)
    o += bounds.nbytes
    out[o : o + packed.nbytes] = packed.reshape(-1).view(np.uint8)
    o += packed.nbytes
    if k3:
        sh = out[o:].reshape(n, k3)
        shN = _f32(s.shN)  # [N, K-1, 3] -> channel-major rows
        for i in range(0, n, BLOCK):
            blk = shN[order[i : i + BLOCK]].transpose(0, 2, 1).reshape(-1, k3)
            sh[i : i + BLOCK] = np.clip(np.trunc((blk / 8 + np.float32(0.5)) * 256), 0, 255)
    return out.tobytes()


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

def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def gzip_rle(data, level: int = 6, piece: int = 1 << 22, workers: int | None = None) -> bytes:
    """One gzip member of ``data`` (any buffer), deflated with zlib's ``Z_RLE`` strategy
    (Huffman codes + runs, no string search) in ``piece``-byte pieces on ``workers`` threads
    (zlib releases the GIL), joined as pigz does: each piece but the last ends with a sync flush.

    Runs only look one byte back, so the pieces lose nothing by not sharing a window. On SPZ
    streams this is both faster and smaller than the default strategy (1M splats, one thread:
    random 2.3 s / 35.5 MB vs level 6 24 s / 38.2 MB and level 1 4.1 s / 39.2 MB; realistic
    1.05 s / 18.8 MB vs level 6 4.3 s / 19.4 MB, level 1 2.1 s / 20.0 MB).
    """
    mv = memoryview(data).cast("B")
    cuts = list(range(0, len(mv), piece)) or [0]

    def deflate(i: int) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
        last = i == len(cuts) - 1
        return c.compress(mv[cuts[i] : cuts[i] + piece]) + c.flush(
            zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
        )

    workers = workers or _workers()
    if workers > 1 and len(cuts) > 1:
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(deflate, range(len(cuts))))
    else:
        parts = [deflate(i) for i in range(len(cuts))]
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown
    tail = struct.pack("<II", zlib.crc32(mv), len(mv) & 0xFFFFFFFF)
    return b"".join([head, *parts, tail])


def _quantize_sh(x: np.ndarray) -> np.ndarray:
    """nianticlabs/spz ``quantizeSH``: round(x*128)+128 to buckets of 8 (degree 1: 5 bits) or 16
    (degrees 2-3: 4 bits), clamped; ``x [B, K-1, 3]`` float32."""
    k = x.shape[1]
    bucket = np.where(np.arange(k) < 3, 8, 16).astype(np.float32)[None, :, None]
    q = np.rint(x * np.float32(128)) + (128 + bucket / 2)
    return np.clip(np.floor(q / bucket) * bucket, 0, 255).astype(np.uint8)


#: SPZ's own choice of fractional bits (nianticlabs/spz ``packGaussians``: ~0.25 mm steps); a
#: scene too large for it at 24 bits gets fewer (:func:`spz_fractional_bits`).
SPZ_MAX_FRACTIONAL_BITS = 12
_SPZ_MAX_INT = (1 << 23) - 1


def spz_fractional_bits(max_abs: float) -> int:
    """The most fractional bits (at most :data:`SPZ_MAX_FRACTIONAL_BITS`) whose 24-bit signed
    fixed point holds ``max_abs``: readers scale by ``1 / (1 << fractionalBits)`` from the
    header (nianticlabs/spz ``unpackGaussians``), so a scene of any size fits, with steps of
    ``2^-bits``. 12 bits hold +-2048 m (0.24 mm steps), 10 bits +-8192 m (0.98 mm)."""
    for bits in range(SPZ_MAX_FRACTIONAL_BITS, -1, -1):
        if round(max_abs * (1 << bits)) <= _SPZ_MAX_INT:
            return bits
    raise UserError(f"The scene spans {max_abs:.3g} m, beyond what SPZ positions can hold "
                    f"({_SPZ_MAX_INT:,} m).",
                    "Crop it (--crop, --drop-background) or write PLY.")  # fmt: skip


def spz_bytes(s: Splats, fractional_bits: int | None = None) -> bytes:
    """SPZ v3 (gzip): header, positions (24-bit fixed), alphas, colours, scales, rotations
    (smallest three), SH (colour-inner, 5 bits for degree 1, 4 bits above); RUB frame.
    ``fractional_bits`` None: chosen from the extent (:func:`spz_fractional_bits`)."""
    if s.sh_degree > 3:
        raise UserError("SPZ export supports SH up to degree 3.", "Use --sh-degree 3 or lower.")
    n, k = len(s), s.shN.shape[1]
    means = _f32(s.means)
    max_abs = float(np.abs(means).max()) if n else 0.0
    if fractional_bits is None:
        fractional_bits = spz_fractional_bits(max_abs)
    scale = np.float32(1 << fractional_bits)
    if n and np.round(max_abs * scale) > _SPZ_MAX_INT:
        raise UserError(f"The scene is too large for SPZ's 24-bit positions at {fractional_bits} "
                        "fractional bits.",
                        "Leave the bits to splatkit, crop it (--crop) or write PLY.")  # fmt: skip
    sizes = [9, 1, 3, 3, 4, 3 * k]
    raw = np.empty(16 + n * sum(sizes), np.uint8)
    raw[:16] = np.frombuffer(
        struct.pack("<IIIBBBB", SPZ_MAGIC, 3, n, s.sh_degree, fractional_bits, 0, 0), np.uint8
    )
    offs = 16 + n * np.cumsum([0] + sizes)
    pos, alpha, col, sc, rot, sh = (raw[offs[i] : offs[i + 1]].reshape(n, -1) for i in range(6))
    ls, sh0, op = _f32(s.log_scales), _f32(s.sh0, 3), _f32(s.opacity_logits)
    quats, shN = _f32(s.quats), _f32(s.shN)
    flip = np.diag(F.RDF_TO_RUB.numpy()).astype(np.float32) * scale  # RDF -> RUB, then fixed point
    signs = F.RUB_SH_SIGNS[:k, None]

    def block(i: int) -> None:  # disjoint rows of raw; numpy releases the GIL: threads
        j = slice(i, i + BLOCK)
        p = np.rint(means[j] * flip).astype("<i4")
        pos[j] = p.view(np.uint8).reshape(-1, 3, 4)[:, :, :3].reshape(-1, 9)
        alpha[j, 0] = _u8(255 / (1 + np.exp(-op[j])))
        col[j] = _u8(sh0[j] * np.float32(SPZ_COLOR_SCALE * 255) + np.float32(0.5 * 255))
        sc[j] = _u8((ls[j] + np.float32(10)) * np.float32(16))
        w, x, y, z = quats[j].T  # q' = (0,1,0,0) * q = (-x, w, -z, y); SPZ order x, y, z, w
        rot[j] = pack_smallest_three(np.stack([w, -z, y, -x], 1)).reshape(-1, 4)
        if k:
            sh[j] = _quantize_sh(shN[j] * signs).reshape(-1, 3 * k)

    with ThreadPoolExecutor(_workers()) as ex:
        list(ex.map(block, range(0, n, BLOCK)))
    return gzip_rle(raw)


def pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """Quaternions ``[N, 4]`` (x, y, z, w) -> ``[N*4]`` bytes as nianticlabs/spz
    ``packQuaternionSmallestThree``: 2-bit index of the largest component, then for each other
    component (in order) a sign bit and a 9-bit magnitude of |v| / sqrt(1/2)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    il = np.abs(q).argmax(1)
    negate = q[np.arange(len(q)), il] < 0
    comp = il.astype(np.uint32)
    for jj in range(3):
        v = np.take_along_axis(q, _OTHERS[il, jj : jj + 1], 1)[:, 0]
        neg = ((v < 0) ^ negate).astype(np.uint32)
        mag = np.minimum(np.floor(np.abs(v) * np.float32(511 / SQRT1_2) + 0.5), 511)
        comp = (comp << 10) | (neg << 9) | mag.astype(np.uint32)
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
