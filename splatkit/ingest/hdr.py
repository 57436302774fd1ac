"""HDR video frames (HLG or PQ, BT.2020) to SDR BT.709 pictures, by the published curves.

Phones film HDR by default (an iPhone: 10-bit HEVC, HLG, BT.2020). Decoded as if it were SDR,
such a frame comes out flat and grey, and so would the trained colours. Each frame's tags
(PyAV's ``color_trc``, ``color_primaries``) say what it is (:func:`frame_colour`); HDR frames are
decoded at full precision (16-bit RGB from the 10-bit samples, the BT.2020 YCbCr matrix) and
converted (:func:`hdr_to_sdr`):

1. to display light in cd/m2: PQ by its EOTF (SMPTE ST 2084 / ITU-R BT.2100); HLG by its
   inverse OETF and the HLG OOTF of BT.2100 for a 1000 cd/m2 display (system gamma 1.2);
2. BT.2020 primaries to BT.709 (the 3x3 matrix of the two sets of primaries, D65; colours
   outside BT.709 are clipped, as ITU-R BT.2408 suggests for a simple conversion);
3. tone mapping as ITU-R BT.2408 (Annex 5, the EETF: a Hermite knee in the PQ domain) from the
   source's peak (1000 cd/m2: HLG's reference display, and what PQ is assumed to be mastered
   at) to the HDR reference white, 203 cd/m2, which becomes SDR 100% (the inverse of BT.2408's
   display-light mapping of SDR into HDR, so that SDR material carried as HDR comes back);
   applied to max(R, G, B), with the three scaled alike, so that hues are kept;
4. BT.1886's inverse EOTF (gamma 2.4) to the SDR signal, 8 bits.

:func:`sdr_to_hlg` is BT.2408's display-light mapping of SDR into HLG (SDR 100% -> 203 cd/m2, HLG
75%): what a camera or editor does to carry SDR material in HLG; the tests and the benchmark
make HLG clips with it. 8-bit SDR video is decoded as before, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# ITU-R BT.2100 HLG
HLG_A = 0.17883277
HLG_B = 1 - 4 * HLG_A
HLG_C = 0.5 - HLG_A * np.log(4 * HLG_A)
# SMPTE ST 2084 / BT.2100 PQ
PQ_M1, PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
PQ_C1, PQ_C2, PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
PQ_PEAK = 10000.0
#: BT.2408 HDR reference white (cd/m2): SDR 100% maps to it, and back
REF_WHITE = 203.0
#: the nominal peak of HLG's reference display, and the peak PQ is assumed mastered at (cd/m2)
HDR_PEAK = 1000.0
#: BT.2020 luminance coefficients (BT.2100 Table 6)
Y2020 = np.array([0.2627, 0.6780, 0.0593])
#: BT.1886 EOTF exponent (SDR display)
SDR_GAMMA = 2.4

_PRIMARIES = {"bt709": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
              "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))}
_D65 = (0.3127, 0.3290)


def rgb_to_xyz(primaries: str) -> np.ndarray:
    """The RGB -> XYZ matrix of a set of primaries (``"bt709"``, ``"bt2020"``) with D65 white."""
    xy = np.array(_PRIMARIES[primaries])
    p = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    wx, wy = _D65
    s = np.linalg.solve(p, np.array([wx / wy, 1.0, (1 - wx - wy) / wy]))
    return p * s


#: linear BT.2020 RGB -> linear BT.709 RGB (and back)
BT2020_TO_BT709 = np.linalg.solve(rgb_to_xyz("bt709"), rgb_to_xyz("bt2020"))
BT709_TO_BT2020 = np.linalg.inv(BT2020_TO_BT709)


def hlg_inverse_oetf(ep: np.ndarray) -> np.ndarray:
    """HLG signal E' in [0, 1] -> scene light E in [0, 1] (BT.2100)."""
    ep = np.clip(ep, 0.0, 1.0)
    return np.where(ep <= 0.5, ep * ep / 3.0, (np.exp((ep - HLG_C) / HLG_A) + HLG_B) / 12.0)


def hlg_oetf(e: np.ndarray) -> np.ndarray:
    """Scene light E in [0, 1] -> HLG signal E' (BT.2100)."""
    e = np.clip(e, 0.0, 1.0)
    return np.where(e <= 1 / 12, np.sqrt(3.0 * e),
                    HLG_A * np.log(np.maximum(12.0 * e - HLG_B, 1e-12)) + HLG_C)


def hlg_gamma(peak: float = HDR_PEAK) -> float:
    """The HLG system gamma for a display of ``peak`` cd/m2 (BT.2100: 1.2 at 1000)."""
    return 1.2 + 0.42 * np.log10(peak / 1000.0)


def hlg_ootf(e: np.ndarray, peak: float = HDR_PEAK) -> np.ndarray:
    """Scene light RGB (BT.2020, [..., 3]) -> display light in cd/m2 (BT.2100 HLG OOTF)."""
    ys = e @ Y2020.astype(e.dtype)
    return peak * np.power(np.maximum(ys, 1e-12), e.dtype.type(hlg_gamma(peak) - 1.0))[..., None] * e


def hlg_inverse_ootf(fd: np.ndarray, peak: float = HDR_PEAK) -> np.ndarray:
    """Display light in cd/m2 (BT.2020 RGB) -> scene light RGB in [0, 1]."""
    g = hlg_gamma(peak)
    yd = np.maximum(fd @ Y2020, 1e-12)
    ys = np.power(yd / peak, 1.0 / g)
    return fd / (peak * np.power(ys, g - 1.0))[..., None]


def pq_eotf(ep: np.ndarray) -> np.ndarray:
    """PQ signal E' in [0, 1] -> display light in cd/m2 (ST 2084)."""
    p = np.power(np.clip(ep, 0.0, 1.0), 1.0 / PQ_M2)
    return PQ_PEAK * np.power(np.maximum(p - PQ_C1, 0.0) / (PQ_C2 - PQ_C3 * p), 1.0 / PQ_M1)


def pq_inverse_eotf(fd: np.ndarray) -> np.ndarray:
    """Display light in cd/m2 -> PQ signal E' in [0, 1]."""
    y = np.power(np.clip(np.asarray(fd, np.float64) / PQ_PEAK, 0.0, 1.0), PQ_M1)
    return np.power((PQ_C1 + PQ_C2 * y) / (1.0 + PQ_C3 * y), PQ_M2)


def bt2408_eetf(lum: np.ndarray, source_peak: float, target_peak: float) -> np.ndarray:
    """Luminance in cd/m2 from a ``source_peak`` range into ``target_peak`` (BT.2408 Annex 5:
    identity in the PQ domain up to the knee ``1.5 * maxLum - 0.5``, a Hermite spline above;
    source and target black at 0)."""
    src = pq_inverse_eotf(source_peak)
    e1 = np.clip(pq_inverse_eotf(lum) / src, 0.0, 1.0)
    max_lum = pq_inverse_eotf(target_peak) / src
    ks = 1.5 * max_lum - 0.5
    t = (e1 - ks) / (1.0 - ks)
    t2, t3 = t * t, t * t * t
    p = (2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1 - ks) + (-2 * t3 + 3 * t2) * max_lum
    return pq_eotf(np.where(e1 < ks, e1, p) * src)


def hdr_to_sdr(signal: np.ndarray, transfer: str, peak: float = HDR_PEAK) -> np.ndarray:
    """BT.2020 R'G'B' (``[..., 3]`` in [0, 1]) of HLG or PQ video -> SDR BT.709 R'G'B' in [0, 1]
    (see the module doc). Computed in the input's precision (float32 or float64)."""
    signal = np.asarray(signal)
    if signal.dtype != np.float32:
        signal = signal.astype(np.float64)
    return display_to_sdr(to_display(signal, transfer, peak), transfer, peak)


def to_display(signal: np.ndarray, transfer: str, peak: float = HDR_PEAK) -> np.ndarray:
    """HLG or PQ signal -> display light (cd/m2), in the input's precision."""
    if transfer == "hlg":
        return hlg_ootf(hlg_inverse_oetf(signal), peak).astype(signal.dtype, copy=False)
    if transfer == "pq":
        return pq_eotf(signal).astype(signal.dtype, copy=False)
    raise ValueError(f"not an HDR transfer function: {transfer!r}")


def display_to_sdr(display: np.ndarray, transfer: str, peak: float = HDR_PEAK) -> np.ndarray:
    """Display light (cd/m2, BT.2020 RGB) -> SDR BT.709 R'G'B': primaries, BT.2408 tone mapping
    of max(R, G, B), BT.1886's inverse EOTF."""
    rgb = display @ BT2020_TO_BT709.T.astype(display.dtype)
    np.maximum(rgb, 0.0, out=rgb)
    top = rgb.max(axis=-1)
    mapped = bt2408_eetf(top, peak, REF_WHITE).astype(display.dtype)
    rgb *= (mapped / np.maximum(top, 1e-9))[..., None] / display.dtype.type(REF_WHITE)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return np.power(rgb, display.dtype.type(1.0 / SDR_GAMMA))


def sdr_to_hlg(sdr: np.ndarray, peak: float = HDR_PEAK) -> np.ndarray:
    """SDR BT.709 R'G'B' in [0, 1] -> HLG BT.2020 R'G'B' (BT.2408 display-light mapping: SDR
    100% is shown at the HDR reference white, 203 cd/m2, HLG 75%)."""
    display = np.power(np.clip(np.asarray(sdr, np.float64), 0.0, 1.0), SDR_GAMMA) * REF_WHITE
    return hlg_oetf(hlg_inverse_ootf(display @ BT709_TO_BT2020.T, peak))


def sdr_to_pq(sdr: np.ndarray) -> np.ndarray:
    """SDR BT.709 R'G'B' in [0, 1] -> PQ BT.2020 R'G'B' (SDR 100% at 203 cd/m2, BT.2408)."""
    display = np.power(np.clip(np.asarray(sdr, np.float64), 0.0, 1.0), SDR_GAMMA) * REF_WHITE
    return pq_inverse_eotf(np.maximum(display @ BT709_TO_BT2020.T, 0.0))


@dataclass(frozen=True)
class FrameColour:
    """How a video's frames are turned into SDR pictures, with the words for the log."""

    transfer: str  # "sdr" (decoded as before), "hlg", "pq", "bt2020" (SDR in BT.2020 primaries)
    description: str


# FFmpeg's codes (AVColorTransferCharacteristic, AVColorPrimaries)
_TRC_PQ, _TRC_HLG, _TRC_BT2020 = 16, 18, (14, 15)
_PRI_BT2020 = 9


def frame_colour(frame) -> FrameColour:
    """What a decoded PyAV frame is, from its ``color_trc`` and ``color_primaries`` tags."""
    trc, pri = int(frame.color_trc or 2), int(frame.color_primaries or 2)
    bits = _bits(frame)
    if trc == _TRC_HLG:
        return FrameColour("hlg", f"HDR video (HLG, {_pri(pri)}, {bits}-bit): converted to SDR "
                           "BT.709 by the BT.2100 HLG curves and BT.2408 tone mapping "
                           "(reference white 203 cd/m2 = SDR 100%)")
    if trc == _TRC_PQ:
        return FrameColour("pq", f"HDR video (PQ, {_pri(pri)}, {bits}-bit): converted to SDR "
                           "BT.709 by the PQ EOTF and BT.2408 tone mapping from 1000 cd/m2 "
                           "(reference white 203 cd/m2 = SDR 100%)")
    if pri == _PRI_BT2020:
        return FrameColour("bt2020", f"wide-gamut SDR video (BT.2020, {bits}-bit): colours "
                           "converted to BT.709")
    return FrameColour("sdr", f"SDR video ({bits}-bit): decoded as it is")


def _pri(pri: int) -> str:
    return "BT.2020" if pri == _PRI_BT2020 else "BT.709" if pri in (1, 2) else f"primaries {pri}"


def _bits(frame) -> int:
    comps = getattr(frame.format, "components", None)
    try:
        return int(comps[0].bits) if comps else 8
    except (AttributeError, IndexError, TypeError):
        return 8


def frame_to_image(frame, colour: FrameColour, max_size: int) -> Image.Image:
    """A decoded frame as an 8-bit picture: HDR and BT.2020 frames converted (longer side at
    most ``max_size``), SDR frames as PyAV decodes them (full size)."""
    if colour.transfer == "sdr":
        return frame.to_image()
    w, h = frame.width, frame.height
    s = min(1.0, max_size / max(w, h))
    tw, th = max(2, round(w * s)), max(2, round(h * s))
    from av.video.reformatter import ColorRange, Colorspace, Interpolation

    full = int(frame.color_range or 1) == int(ColorRange.JPEG)
    rgb = frame.reformat(width=tw, height=th, format="rgb48le", src_colorspace=Colorspace.BT2020,
                         src_color_range=ColorRange.JPEG if full else ColorRange.MPEG,
                         dst_color_range=ColorRange.JPEG, interpolation=Interpolation.AREA)
    codes = rgb.to_ndarray()  # uint16 R'G'B'
    if colour.transfer == "bt2020":  # SDR in BT.2020 primaries: only the colours change
        linear = _lut("bt1886")[codes] @ BT2020_TO_BT709.T.astype(np.float32)
        sdr = np.power(np.clip(linear, 0.0, 1.0), np.float32(1.0 / SDR_GAMMA))
    elif colour.transfer == "hlg":  # per-channel curve by a table of the 65536 codes, then OOTF
        scene = _lut("hlg")[codes]
        sdr = display_to_sdr(hlg_ootf(scene), "hlg")
    else:
        sdr = display_to_sdr(_lut("pq")[codes], "pq")
    return Image.fromarray(np.round(sdr * 255.0).astype(np.uint8), "RGB")


_LUTS: dict[str, np.ndarray] = {}


def _lut(name: str) -> np.ndarray:
    """float32 table of a per-channel curve over the 65536 16-bit codes: ``"hlg"`` (inverse
    OETF: scene light), ``"pq"`` (EOTF: cd/m2), ``"bt1886"`` (gamma 2.4: linear)."""
    if name not in _LUTS:
        x = np.arange(65536, dtype=np.float64) / 65535.0
        f = {"hlg": hlg_inverse_oetf, "pq": pq_eotf, "bt1886": lambda v: v**SDR_GAMMA}[name]
        _LUTS[name] = f(x).astype(np.float32)
    return _LUTS[name]


def write_hdr_clip(path, frames, fps: int, transfer: str = "hlg", crf: int = 12) -> None:
    """Write SDR frames (``uint8`` ``[H, W, 3]``, even sizes) as a 10-bit HEVC clip in HLG or PQ,
    BT.2020, tagged as a phone tags it (BT.2408 display-light mapping, :func:`sdr_to_hlg`).
    For tests and benchmarks; needs PyAV with libx265."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    to_hdr = sdr_to_hlg if transfer == "hlg" else sdr_to_pq
    trc = _TRC_HLG if transfer == "hlg" else _TRC_PQ
    name = "arib-std-b67" if transfer == "hlg" else "smpte2084"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p10le"
        cc = s.codec_context
        cc.color_trc, cc.color_primaries, cc.colorspace, cc.color_range = trc, _PRI_BT2020, 9, 1
        s.options = {"crf": str(crf), "preset": "fast", "x265-params": "log-level=error:colorprim="
                     f"bt2020:transfer={name}:colormatrix=bt2020nc:range=limited"}
        for a in frames:
            hdr = np.round(to_hdr(np.asarray(a, np.float64) / 255.0) * 65535.0).astype(np.uint16)
            f = av.VideoFrame.from_ndarray(hdr, format="rgb48le").reformat(
                format="yuv420p10le", dst_colorspace=Colorspace.BT2020, dst_color_range=ColorRange.MPEG)
            f.color_trc, f.color_primaries, f.colorspace, f.color_range = trc, _PRI_BT2020, 9, 1
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


__all__ = ["FrameColour", "frame_colour", "frame_to_image", "hdr_to_sdr", "sdr_to_hlg", "sdr_to_pq",
           "hlg_oetf", "hlg_inverse_oetf", "hlg_ootf", "hlg_inverse_ootf", "pq_eotf",
           "pq_inverse_eotf", "bt2408_eetf", "rgb_to_xyz", "BT2020_TO_BT709", "REF_WHITE", "write_hdr_clip"]
