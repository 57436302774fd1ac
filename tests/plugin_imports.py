"""What each open-source plugin stores when it imports a PLY, transcribed from its source.

Test oracles for ``splatkit/export/limits.py``: bit-level re-implementations of the plugins'
import and storage (the limits module only models step sizes and ranges analytically).

- PICOSplat (Pico-Developer/splat_unreal b57633d): ``splat_ply_conversion.h`` ``convert_splat``,
  ``SplatAsset.cpp`` ``SetPositionsMetersInternal`` (11/11/10-bit unorm over the box),
  ``SetCovariancesQuatScaleMeters`` + ``PackedTypes.h`` ``FPackedCovMat`` / ``ToFloat`` and the
  shader's ``unpack_cov_mat`` (``unpacking.hlsl``);
- NanoGS (TimChen1383/NanoGaussianSplatting 314b719): ``PLYFileReader.cpp`` mapping,
  ``GaussianDataTypes.h`` ``PackSplatToUint4`` (float16 cm positions, 8-bit log scales) and
  ``GaussianSplatting.ush`` ``UnpackSplat``;
- Italink (2efdeb4): ``GaussianSplattingPointCloud.cpp`` mapping and ``Compression/Spz.cpp``
  ``packGaussians`` (24-bit fixed point, 12 fractional bits, of metres).

Each returns UE-space positions in centimetres as the plugin would render them.
"""

from __future__ import annotations

import numpy as np
from plyfile import PlyData


def _vertex(path):
    v = PlyData.read(str(path))["vertex"]
    return {n: np.asarray(v[n], dtype=np.float32) for n in v.data.dtype.names}


def _unorm(f: np.ndarray, bits: int) -> np.ndarray:
    mx = (1 << bits) - 1
    return np.where(f == 0, 0, np.where(f > 1, mx, np.round(f * mx))).astype(np.uint32)


def picosplat_positions_cm(path) -> np.ndarray:
    v = _vertex(path)
    pos = np.stack([v["z"], v["x"], -v["y"]], 1).astype(np.float32)  # metres, UE axes
    mn, mx = pos.min(0), pos.max(0)
    norm = ((pos - mn) / (mx - mn)).astype(np.float32)
    packed = np.stack([_unorm(norm[:, 0], 11), _unorm(norm[:, 1], 11), _unorm(norm[:, 2], 10)], 1)
    MAX = np.array([2047, 2047, 1023], np.float32)
    return packed * (np.float32(100) * (mx - mn) / MAX) + np.float32(100) * mn


def _quat_matrix(x, y, z, w):
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _to_float(f: np.ndarray, signed: bool, e_bits: int, m_bits: int) -> np.ndarray:
    """PackedTypes.h ToFloat<Signed, ExpBits, SigBits>: exponent clamped, mantissa truncated."""
    raw = f.astype(np.float32).view(np.uint32).astype(np.int64)
    bias = (1 << (e_bits - 1)) - 1
    exp = ((raw >> 23) & 0xFF) - 127
    exp = np.clip(exp, -bias + 1, bias) + bias
    out = ((exp << m_bits) & (((1 << e_bits) - 1) << m_bits)) | ((raw & 0x7FFFFF) >> (23 - m_bits))
    if signed:
        out |= ((raw >> 31) & 1) << (e_bits + m_bits)
    return np.where(f == 0, 0, out)


def _unpack_f16(bits: np.ndarray, s: int, e: int, m: int) -> np.ndarray:
    """unpacking.hlsl unpack_f16: the field shifted into a half's bit layout."""
    return (bits.astype(np.uint16) << (15 - e - m)).astype(np.uint16).view(np.float16).astype(np.float32)


def picosplat_covariances_cm2(path) -> np.ndarray:
    v = _vertex(path)
    qx, qy, qz, qw = -v["rot_3"], -v["rot_1"], v["rot_2"], v["rot_0"]
    n = np.sqrt(qx**2 + qy**2 + qz**2 + qw**2)
    R = _quat_matrix(qx / n, qy / n, qz / n, qw / n)
    s = 100.0 * np.exp(np.stack([v["scale_2"], v["scale_0"], v["scale_1"]], 1))
    cov = (R * s[:, None, :] ** 2) @ np.swapaxes(R, 1, 2)  # R diag(s^2) R^T
    spec = {
        (0, 0): (0, 5, 5),
        (0, 1): (1, 5, 5),
        (0, 2): (1, 5, 5),
        (1, 1): (0, 5, 5),
        (1, 2): (1, 5, 5),
        (2, 2): (0, 5, 6),
    }
    out = np.zeros_like(cov, dtype=np.float32)
    for (i, j), (sg, e, m) in spec.items():
        dec = _unpack_f16(_to_float(cov[:, i, j], bool(sg), e, m), sg, e, m)
        out[:, i, j] = out[:, j, i] = dec
    return out


def nanogs_positions_cm(path) -> np.ndarray:
    v = _vertex(path)
    pos = np.stack([v["z"], v["x"], -v["y"]], 1).astype(np.float32) * np.float32(100)
    return np.clip(pos, -65504, 65504).astype(np.float16).astype(np.float32)  # FFloat16


def nanogs_scales_cm(path) -> np.ndarray:
    v = _vertex(path)
    s = 100.0 * np.exp(np.stack([v["scale_2"], v["scale_0"], v["scale_1"]], 1).astype(np.float32))
    code = np.clip(np.round((np.log(s) + 8.0) * 254.0 / 22.0) + 1, 1, 255)
    code = np.where(s < 1e-10, 0, code)
    return np.where(code == 0, 0.0, np.exp(-8.0 + (code - 1) * 22.0 / 254.0))


def italink_positions_cm(path) -> np.ndarray:
    v = _vertex(path)
    pos = np.float32(100) * np.stack([v["x"], -v["z"], -v["y"]], 1).astype(np.float32)
    fixed = np.round(pos / np.float32(100) * np.float32(4096)).astype(np.int64)
    fixed = ((fixed & 0xFFFFFF) ^ 0x800000) - 0x800000  # 24 bits, sign-extended on load
    return fixed.astype(np.float32) / np.float32(4096) * np.float32(100)
