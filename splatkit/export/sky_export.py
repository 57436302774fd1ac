"""The sky's part of an Unreal export: the learned sky (:mod:`splatkit.sky`) as an
equirectangular image in Unreal's axes, and its manifest entry.

The image follows :mod:`splatkit.panorama` with Unreal's axes (+X forward, +Y right,
+Z up): a texel's direction ``d_ue`` is taken back to the upright frame (Y negated), then to the
SfM world (``R^T`` of the export's similarity: a direction ignores origin and scale), where the
training sky is sampled. The splats go through the same similarity, so the sky has the splats'
up and yaw; when the export's upright frame is the training sky's own frame, each texel is read
at a texel centre of the training map and the image is the training map itself.

8-bit sRGB PNG: the sky is learned from 8-bit photos, so it holds no values above white to keep
in an HDR file. ``unreal_export/import_splat.py`` shows it on a sky sphere with an unlit
material that looks the texture up by view direction with this same formula (docs/unreal.md).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from splatkit import frames as F
from splatkit import panorama as P
from splatkit.sky import SEEN_MIN, SkyMap, to_u8

#: The formula ``import_splat.py``'s material evaluates (HLSL), written in the manifest.
MAPPING = ("u = 0.5 + atan2(d.y, d.x) / (2 pi), v = 0.5 - asin(d.z) / pi; "
           "d = view direction in Unreal world axes")


def ue_panorama(sky: SkyMap, to_upright: F.Similarity, width: int | None = None) -> Tensor:
    """The sky ``[H, W, 3]`` in [0, 1] as an equirectangular image in Unreal's axes, unseen
    texels filled (:meth:`SkyMap.filled`); ``width`` defaults to the training map's."""
    w = int(width or sky.width)
    d_ue = P.texel_directions(w, max(w // 2, 1), y_right=True)
    d_world = F.upright_to_ue_directions(d_ue) @ to_upright.R.double()  # R^T d, row vectors
    filled = SkyMap(sky.filled(), sky.seen, sky.rotation, sky.share)
    return filled.background(d_world).float().clamp(0.0, 1.0)


def write_sky(sky: SkyMap, to_upright: F.Similarity, out_dir: Path, name: str,
              radius_cm: float) -> tuple[dict, Path]:  # fmt: skip
    """Write ``<name>_sky.png``; returns its manifest entry and the path."""
    from PIL import Image

    from splatkit.fileio import atomic_path

    img = ue_panorama(sky, to_upright)
    path = Path(out_dir) / f"{name}_sky.png"
    with atomic_path(path) as tmp:
        Image.fromarray(to_u8(img)).save(tmp, format="PNG")
    seen = float((sky.seen >= SEEN_MIN).float().mean())
    entry = {
        "path": path.name,
        "format": "png",
        "color_space": "sRGB",
        "projection": "equirectangular",
        "width": int(img.shape[1]),
        "height": int(img.shape[0]),
        "mapping": MAPPING,
        "seen_fraction": round(seen, 4),
        "share": None if sky.share != sky.share else round(float(sky.share), 4),
        "radius_cm": round(float(radius_cm), 1),
        "location_cm": [0.0, 0.0, 0.0],
        "rotation_deg": [0.0, 0.0, 0.0],
    }
    return entry, path


def sky_radius_cm(means_upright: Tensor) -> float:
    """A sky sphere around everything: 4x the farthest splat from the origin, at least 1 km."""
    far = float(means_upright.double().norm(dim=-1).max()) if len(means_upright) else 0.0
    return max(100_000.0, 4.0 * 100.0 * far)
