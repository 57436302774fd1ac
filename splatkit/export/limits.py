"""What each verified plugin can store, applied before writing, and what it would cost.

Read in each plugin's source (docs/unreal.md cites the files; the numbers are the presets'
:class:`~splatkit.export.plugins.Storage`):

- **PICOSplat** (``SplatAsset.cpp``, ``PackedTypes.h``, ``unpacking.hlsl``): positions are
  packed as 11/11/10-bit unsigned normalised integers over the asset's bounding box (UE X, Y, Z),
  so the step is the box size / 2047 (1023 for Z). Covariances (cm^2) are packed as 10/11-bit
  floats with a 5-bit exponent clamped to [-14, 15]: the largest variance is
  2^15 x (1 + 31/32) = 64512 cm^2, a sigma of 2.54 m; larger values wrap to wrong sizes.
- **NanoGS** (``GaussianDataTypes.h`` ``PackSplatToUint4``, ``GaussianSplatting.ush``): the GPU
  copy holds positions as float16 centimetres (|x| <= 65504 cm, 655 m; 11 significant bits) and
  scales as 8-bit logarithms of centimetres over [-8, 14].
- **Italink** (``GaussianSplattingPointCloud.cpp``, ``Compression/Spz.cpp``): saved assets are
  SPZ-packed: positions 24-bit fixed point with 12 fractional bits (metres: +-2048 m, 0.24 mm
  steps), scales ``(ln s + 10) x 16`` in a byte; at most 10,485,760 splats per file.

:func:`check` measures the rounding a file would get against the typical splat size and says
when it costs quality (then tiles or a crop help: :func:`max_tile_size`); :func:`apply` clamps
what cannot be stored (sizes), opens a PICOSplat box that is flat along an axis (it divides by
the box size) and drops what cannot be placed (positions out of range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from splatkit import frames as F
from splatkit.export.plugins import PLUGINS, Storage
from splatkit.splats import Splats

#: Rounding of positions costs quality when the largest error exceeds this fraction of the
#: typical splat's size (median of the geometric mean of its three scales).
QUALITY_FRACTION = 0.1


@dataclass
class LimitCheck:
    """How a file of splats fares in ``plugin``'s storage."""

    plugin: str
    position_error_m: float  # largest rounding of a coordinate
    typical_size_m: float
    out_of_range: int = 0
    oversized: int = 0
    costs_quality: bool = False
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "plugin": self.plugin,
            "position_error_m": self.position_error_m,
            "typical_size_m": self.typical_size_m,
            "out_of_range": self.out_of_range,
            "oversized": self.oversized,
            "costs_quality": self.costs_quality,
        }


def storage(plugin: str) -> Storage | None:
    """How ``plugin`` stores splats (None: an unknown plugin or no known limits)."""
    p = PLUGINS.get(plugin)
    return p.storage if p is not None else None


def typical_size(s: Splats) -> float:
    """Median of the geometric mean of the splats' scales (same units as their means)."""
    if len(s) == 0:
        return 0.0
    return float(s.log_scales.double().mean(1).median().exp())


def _ue_metres(s: Splats, plugin: str) -> Tensor:
    return F.ply_to_ue(s.means, PLUGINS[plugin].ply_axes) / 100.0


def _axis_errors(s: Splats, plugin: str) -> Tensor:
    """Largest rounding (metres) along each UE axis (X, Y horizontal; Z up) in ``plugin``."""
    st = PLUGINS[plugin].storage
    ue = _ue_metres(s, plugin)
    if st.position == "unorm-box":
        extent = (ue.max(0).values - ue.min(0).values).clamp(min=0)
        steps = torch.tensor([2.0**b - 1 for b in st.bits], dtype=torch.float64)
        return extent / steps / 2
    if st.position == "float16-cm":
        m = (ue.abs().max(0).values * 100.0).clamp(min=2.0**-14)
        return 2.0 ** (torch.floor(torch.log2(m)) - 10) / 2 / 100.0
    return torch.full((3,), st.step_m / 2, dtype=torch.float64)


def position_error(s: Splats, plugin: str) -> float:
    """Largest rounding (metres) of a coordinate of these PLY-frame splats in ``plugin``."""
    if storage(plugin) is None or len(s) == 0:
        return 0.0
    return float(_axis_errors(s, plugin).max())


def ground_error(s: Splats, plugin: str) -> float:
    """The rounding along the ground (UE X, Y): what tiles of the ground reduce."""
    if storage(plugin) is None or len(s) == 0:
        return 0.0
    return float(_axis_errors(s, plugin)[:2].max())


def height_error(s: Splats, plugin: str) -> float:
    """The rounding that comes from the heights alone (tiles of the ground cannot reduce it)."""
    if storage(plugin) is None or len(s) == 0:
        return 0.0
    return float(_axis_errors(s, plugin)[2])


def max_tile_size(plugin: str, typical_m: float) -> float | None:
    """The largest tile (metres, square in the ground plane, origin at its centre) whose
    rounding stays within :data:`QUALITY_FRACTION` of ``typical_m``; None: no limit."""
    st = storage(plugin)
    if st is None or typical_m <= 0:
        return None
    allowed = QUALITY_FRACTION * typical_m  # largest error allowed
    if st.position == "unorm-box":
        return 2.0 * allowed * (2.0 ** min(st.bits[:2]) - 1)
    if st.position == "float16-cm":
        # error = 2^(floor(log2 x) - 11) cm <= allowed: x < 2^(floor(log2(allowed cm)) + 12) cm
        half_cm = 2.0 ** (math.floor(math.log2(allowed * 100.0)) + 12)
        return min(2 * half_cm / 100.0 / math.sqrt(2), 2 * st.max_abs_m / math.sqrt(2))
    return 2 * st.max_abs_m / math.sqrt(2)


def check(s: Splats, plugin: str, where: str = "") -> LimitCheck:
    """Rounding, range and size limits of ``plugin`` for PLY-frame splats ``s``."""
    st = storage(plugin) or Storage("none")
    err, typ = position_error(s, plugin), typical_size(s)
    out = LimitCheck(plugin, err, typ)
    if st.max_abs_m is not None and len(s):
        out.out_of_range = int((_ue_metres(s, plugin).abs() > st.max_abs_m).any(1).sum())
    if st.max_sigma_m is not None:
        out.oversized = int((s.log_scales.max(1).values > math.log(st.max_sigma_m)).sum())
    out.costs_quality = err > QUALITY_FRACTION * typ or out.out_of_range > 0
    tag = f"{where}: " if where else ""
    if err > QUALITY_FRACTION * typ:
        what = (f"{tag}{plugin} rounds positions by up to {100 * err:.2g} cm; the typical splat is "
                f"{100 * typ:.2g} cm: expect blur.")  # fmt: skip
        if ground_error(s, plugin) > QUALITY_FRACTION * typ:
            tile = max_tile_size(plugin, typ)
            what += f" Use --tiles auto (tiles of at most {tile:.0f} m) or --drop-background."
        if height_error(s, plugin) > QUALITY_FRACTION * typ:
            what += " The scene's height alone costs this (tiles cannot reduce it): --drop-background."
        out.lines.append(what)
    if out.out_of_range:
        out.lines.append(
            f"{tag}{out.out_of_range:,} splats lie beyond {plugin}'s +-{st.max_abs_m:.0f} m "
            "range and are dropped; use --tiles auto to keep them."
        )
    if out.oversized:
        out.lines.append(
            f"{tag}{out.oversized:,} splats are larger than {plugin}'s "
            f"{st.max_sigma_m:.2f} m limit and are shrunk to it."
        )
    return out


def apply(s: Splats, plugin: str) -> Splats:
    """``s`` as ``plugin`` can hold it: sizes clamped to its range, out-of-range splats dropped."""
    st = storage(plugin)
    if st is None or len(s) == 0:
        return s
    log_s = s.log_scales
    if st.max_sigma_m is not None:
        log_s = log_s.clamp(max=math.log(st.max_sigma_m))
    if st.log_scale_cm is not None:
        lo, hi = st.log_scale_cm
        log_s = log_s.clamp(lo - math.log(100.0), hi - math.log(100.0))
    if st.log_scale_m is not None:
        log_s = log_s.clamp(*st.log_scale_m)
    out = Splats(**{**s.as_dict(), "log_scales": log_s})
    if st.position == "unorm-box":
        out = _open_flat_box(out, plugin)
    if st.max_abs_m is not None:
        keep = (_ue_metres(s, plugin).abs() <= st.max_abs_m).all(1)
        if not bool(keep.all()):
            out = out.index(torch.where(keep)[0])
    return out


#: PICOSplat divides by the box size per axis: a file flat along an axis (one splat, or all at
#: one height) would get NaN positions; one splat is moved by this much (metres) to open it.
FLAT_BOX_NUDGE_M = 1e-4


def _open_flat_box(s: Splats, plugin: str) -> Splats:
    ue = _ue_metres(s, plugin)
    flat = (ue.max(0).values - ue.min(0).values) <= 0
    if not bool(flat.any()):
        return s
    means = s.means.clone()
    M = F.ply_to_ue_matrix(PLUGINS[plugin].ply_axes)
    nudge = M.T @ (flat.double() * FLAT_BOX_NUDGE_M)  # UE axes -> PLY (M^-1 = M^T)
    means[0] += nudge.to(means.dtype)
    return Splats(**{**s.as_dict(), "means": means})
