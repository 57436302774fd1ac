"""Export for Unreal Engine: upright, to scale, cropped, budgeted, per plugin, plus a manifest.

The pipeline (:func:`export_unreal`):

1. clean: drop NaN/Inf splats, near-transparent ones (opacity < 1/255), and those far outside the
   region of the cameras (``crop``);
2. orient: a similarity from the SfM world to splatkit's ``upright`` frame (+Z up, +X the main
   viewing direction, metres, origin on the floor below the scene centre), see
   :func:`estimate_upright`; then the rotation into the plugin's PLY frame
   (:func:`splatkit.export.frames.upright_to_ply`), SH rotated too;
3. budget: keep the ``max_splats`` most important splats (opacity x volume^(2/3));
4. write the plugin's formats and ``<name>.unreal.json``, the manifest the editor script
   ``unreal_export/import_splat.py`` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from splatkit.errors import UserError
from splatkit.export import frames as F
from splatkit.fileio import write_text_atomic
from splatkit.scene import Scene
from splatkit.splats import Splats

#: Plugin presets: data, not code paths. ``max_splats`` None = no practical cap known.
PLUGINS: dict[str, dict] = {
    "nanogs": dict(
        title="NanoGS (TimChen1383/NanoGaussianSplatting)",
        formats=["ply"],
        sh_degree=3,
        max_splats=None,
        factory_import=True,
        note="Nanite-style LOD, handles millions; prune near-transparent splats (TSR ghosting).",
    ),
    "italink": dict(
        title="Italink GaussianSplattingForUnrealEngine",
        formats=["ply"],
        sh_degree=0,
        max_splats=10 * 1024 * 1024,
        factory_import=True,
        note="Strict PLY header; uses only the DC colour; hard cap 10,485,760 splats.",
    ),
    "picosplat": dict(
        title="PICOSplat (Pico-Developer/splat_unreal)",
        formats=["ply"],
        sh_degree=0,
        max_splats=1_000_000,
        factory_import=True,
        note="DC colour only; shapes distort above about 1M splats (issue #1).",
    ),
    "xv3dgs": dict(
        title="XVERSE XV3DGS / XScene",
        formats=["ply"],
        sh_degree=3,
        max_splats=2_000_000,
        factory_import=True,
        note="Niagara; shows at most 2M splats; Win64 only.",
    ),
    "luma": dict(
        title="Luma AI",
        formats=["ply"],
        sh_degree=3,
        max_splats=2_000_000,
        factory_import=False,
        note="Closed source; drag the .ply into the editor.",
    ),
    "uefn": dict(
        title="UEFN / Unreal native Gaussian splats",
        formats=["ply", "spz"],
        sh_degree=3,
        max_splats=None,
        factory_import=True,
        note="Imports binary PLY and SPZ.",
    ),
    "generic": dict(
        title="Any INRIA-PLY reader",
        formats=["ply"],
        sh_degree=3,
        max_splats=None,
        factory_import=True,
        note="INRIA 3DGS PLY, COLMAP 'RDF' axes (-Y up, +Z forward).",
    ),
}

UP_CHOICES = ("auto", "keep", "+x", "-x", "+y", "-y", "+z", "-z")
FORMATS = ("ply", "spz", "splat", "compressed-ply")
#: Eye height assumed by the ``scale=eye`` heuristic, metres.
EYE_HEIGHT_M = 1.6


def _help(default, text: str, **kw):
    return field(default=default, metadata={"help": text, **kw})


@dataclass
class UnrealExportOptions:
    """Options of the Unreal export (the CLI builds its flags from the ``help`` metadata)."""

    plugin: str = _help(
        "nanogs", "Unreal plugin to export for: " + ", ".join(PLUGINS) + ".", choices=tuple(PLUGINS)
    )
    up: str = _help(
        "auto",
        "Which way is up: auto (from the cameras), keep (leave the frame as it is), or the input "
        "axis that points up (+x, -x, +y, -y, +z, -z; COLMAP scenes are often -y).",
        choices=UP_CHOICES,
    )
    scale: str = _help(
        "auto",
        "Metres per scene unit: a number, 'eye' (assume the photos were taken 1.6 m above the "
        "floor), or auto ('eye' when there are camera poses, else 1). Ignored when known_distance "
        "is given.",
    )
    known_distance: str | None = _help(
        None,
        "'PHOTO_A,PHOTO_B,METRES': the real distance between the two cameras that took these "
        "photos; sets the scale.",
    )
    crop: float = _help(
        4.0,
        "Drop splats farther from the cameras' centre than this many camera-region radii "
        "(0: keep all). NaN, infinite and near-invisible splats are always dropped.",
    )
    max_splats: int | None = _help(
        None, "Keep at most this many splats, the most visible ones (default: the plugin's limit)."
    )
    sh_degree: int | None = _help(
        None, "Spherical-harmonics degree to write, 0-3 (default: what the plugin uses)."
    )
    format: str = _help(
        "auto",
        "Comma-separated formats to write: ply, spz, splat, compressed-ply, or auto "
        "(the plugin's own).",
    )
    name: str = _help("scene", "Base name of the files and of the Unreal asset (ASCII).")


# --------------------------------------------------------------------------------------------
# Clean / crop / budget


def finite_mask(s: Splats) -> Tensor:
    """Rows with no NaN/Inf in any attribute."""
    m = torch.isfinite(s.means).all(1) & torch.isfinite(s.log_scales).all(1)
    m &= torch.isfinite(s.quats).all(1) & (s.quats.norm(dim=1) > 0)
    m &= torch.isfinite(s.opacity_logits) & torch.isfinite(s.sh0).all((1, 2))
    return m & torch.isfinite(s.shN).flatten(1).all(1)


def crop_mask(s: Splats, cam_centers: Tensor | None, factor: float) -> Tensor:
    """Finite, visible (opacity >= 1/255) and, with cameras and ``factor`` > 0, inside the
    sphere of ``factor`` x the cameras' radius (at least their mean distance to the splats'
    median) around the cameras' centre."""
    m = finite_mask(s)
    m &= s.opacity_logits >= math.log(1 / 254)  # sigmoid >= 1/255
    if cam_centers is not None and len(cam_centers) > 0 and factor > 0:
        c = cam_centers.double().mean(0)
        r = (cam_centers.double() - c).norm(dim=1).max()
        ok = torch.where(m)[0]
        if len(ok):
            med = s.means[ok].double().median(0).values
            r = torch.maximum(r, (med - c).norm())
        r = float(r.clamp(min=1e-6))
        m &= ((s.means.double() - c).norm(dim=1) <= factor * r).nan_to_num(False)
    return m


def importance(s: Splats) -> Tensor:
    """opacity x volume^(2/3) (an area-like measure of how much a splat shows)."""
    return s.opacities * torch.exp(s.log_scales.sum(1) * (2.0 / 3.0))


def budget(s: Splats, max_splats: int | None) -> Splats:
    """The ``max_splats`` most important splats (all of them if None or already fewer)."""
    if max_splats is None or len(s) <= max_splats:
        return s
    idx = importance(s).topk(int(max_splats)).indices.sort().values
    return s.index(idx)


# --------------------------------------------------------------------------------------------
# Up, forward, origin, scale


def camera_axes(w2c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World directions of the cameras' x (right), -y (up) and z (forward) axes, ``[C, 3]`` each."""
    R = w2c[:, :3, :3].double()
    return R[:, 0, :], -R[:, 1, :], R[:, 2, :]


def estimate_up(w2c: Tensor, centers: Tensor | None = None) -> tuple[Tensor, str]:
    """Estimate world up from camera poses; returns (unit vector, method).

    Evidence, in order:
    - the cameras' up vectors (-y axis), averaged: resolves the sign and is the fallback;
    - people hold cameras level (little roll), so up is perpendicular to every camera's x axis:
      the least eigenvector of sum x x^T, used when the x axes span a plane (cameras turned);
    - otherwise, for >= 3 cameras spread in a plane (e.g. walked around at eye height), the
      plane's normal, if within 30 degrees of the averaged up; their mean otherwise stays the
      averaged up.
    """
    right, upv, _ = camera_axes(w2c)
    mean_up = upv.mean(0)
    mean_up = mean_up / mean_up.norm().clamp(min=1e-12)
    if len(right) >= 2:
        evals, evecs = torch.linalg.eigh(right.T @ right / len(right))
        if evals[1] > 0.02 * evals[2] and evals[0] < 0.2 * evals[1]:
            up = evecs[:, 0]
            return (up if up @ mean_up >= 0 else -up), "level-cameras"
    if centers is not None and len(centers) >= 3:
        c = centers.double() - centers.double().mean(0)
        _, S, Vh = torch.linalg.svd(c, full_matrices=False)
        if S[1] > 1e-9 and S[2] < 0.3 * S[1]:
            n = Vh[2]
            n = n if n @ mean_up >= 0 else -n
            if n @ mean_up > math.cos(math.radians(30)):
                up = n + mean_up
                return up / up.norm(), "camera-plane"
    return mean_up, "camera-up-average"


def estimate_forward(w2c: Tensor, up: Tensor) -> Tensor:
    """The main viewing direction, horizontal: the cameras' mean forward, or when those cancel
    out (captures all around an object), the first camera's forward."""
    _, _, fwd = camera_axes(w2c)
    up = up.double()
    flat = fwd - (fwd @ up)[:, None] * up
    f = flat.mean(0)
    if f.norm() < 0.3:
        f = flat[0]
    if f.norm() < 1e-6:  # looking straight down/up: use the camera's up as forward
        f = camera_axes(w2c)[1][0] - (camera_axes(w2c)[1][0] @ up) * up
    return f / f.norm()


def basis_from_up_forward(up: Tensor, forward: Tensor) -> Tensor:
    """Rotation R with R @ up = +Z and R @ forward = +X (rows: new axes in old coordinates)."""
    z = up / up.norm()
    x = forward - (forward @ z) * z
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z]).double()


def _axis(spec: str) -> Tensor:
    v = torch.zeros(3, dtype=torch.float64)
    v["xyz".index(spec[1])] = 1.0 if spec[0] == "+" else -1.0
    return v


def _parse_known_distance(spec: str, scene: Scene | None) -> tuple[str, str, float]:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 3:
        raise UserError(f"known_distance {spec!r} is not 'PHOTO_A,PHOTO_B,METRES'.",
                        "Example: --known-distance IMG_001.jpg,IMG_040.jpg,3.5")  # fmt: skip
    try:
        metres = float(parts[2])
    except ValueError:
        metres = -1.0
    if not metres > 0:
        raise UserError(f"known_distance: {parts[2]!r} is not a positive distance in metres.",
                        "Give the distance as a number, e.g. 3.5.")  # fmt: skip
    if scene is None:
        raise UserError("known_distance needs the camera poses.", "Export from a training folder.")
    for p in parts[:2]:
        if p not in scene.cameras.names:
            raise UserError(f"known_distance: no photo named {p!r} among the cameras.",
                            f"Use names like {scene.cameras.names[0]!r}.")  # fmt: skip
    return parts[0], parts[1], metres


def estimate_upright(
    scene: Scene | None, options: UnrealExportOptions, splats: Splats | None = None
) -> tuple[F.Similarity, dict]:
    """The similarity from the SfM world to the upright frame, and what decided it (for the
    manifest)."""
    info: dict = {}
    cams = scene.cameras if scene is not None and len(scene.cameras) else None
    if options.up not in UP_CHOICES:
        raise UserError(f"Unknown up {options.up!r}.", f"Use one of {', '.join(UP_CHOICES)}.")
    if options.up == "keep":
        R, info["up"] = torch.eye(3, dtype=torch.float64), "keep"
    else:
        if options.up == "auto":
            if cams is None:
                raise UserError("Cannot find 'up' without camera poses.",
                                "Give --up (e.g. -y for COLMAP scenes).")  # fmt: skip
            up, info["up"] = estimate_up(cams.world_to_cam, cams.centers)
        else:
            up, info["up"] = _axis(options.up), options.up
        if cams is not None:
            fwd = estimate_forward(cams.world_to_cam, up)
        else:
            helper = _axis("+z") if abs(float(up[2])) < 0.9 else _axis("+x")
            fwd = helper - (helper @ up) * up
        R = basis_from_up_forward(up, fwd)
    info["up_vector"] = (R[2]).tolist()
    # Origin: below the scene centre, on the floor (2nd percentile of heights).
    pts = None
    if scene is not None and scene.points.shape[0] >= 10:
        pts = scene.points.double()
    elif splats is not None and len(splats):
        pts = splats.means.double()[finite_mask(splats)]
    if pts is not None and len(pts):
        up_pts = pts @ R.T
        centre = up_pts.median(0).values
        floor = torch.quantile(up_pts[:, 2][:200_000], 0.02)
        origin_up = torch.stack([centre[0], centre[1], floor])
        origin, info["origin"] = R.T @ origin_up, "floor-below-points-median"
    elif cams is not None:
        origin, info["origin"] = cams.centers.double().mean(0), "cameras-centre"
    else:
        origin, info["origin"] = torch.zeros(3, dtype=torch.float64), "none"
    # Scale.
    if options.known_distance:
        a, b, metres = _parse_known_distance(options.known_distance, scene)
        c = scene.cameras.centers.double()
        d = float((c[scene.cameras.names.index(a)] - c[scene.cameras.names.index(b)]).norm())
        if d < 1e-9:
            raise UserError(f"Cameras {a} and {b} are at the same place.", "Pick two others.")
        s, info["scale"] = metres / d, f"known-distance {a}-{b} = {metres} m"
    elif options.scale.strip().lower() == "auto" and (
        cams is None or float(((cams.centers.double() - origin) @ R[2]).median()) <= 1e-9
    ):
        s, info["scale"] = 1.0, "factor 1.0 (auto: no camera height to go by)"
    elif options.scale.strip().lower() in ("eye", "auto"):
        if cams is None:
            raise UserError("scale=eye needs camera poses.", "Give a number instead.")
        h = float(((cams.centers.double() - origin) @ R[2]).median())
        if h <= 1e-9:
            raise UserError("scale=eye: cameras are not above the floor.", "Give a number.")
        s, info["scale"] = EYE_HEIGHT_M / h, f"eye-height {EYE_HEIGHT_M} m"
    else:
        try:
            s = float(options.scale)
        except ValueError:
            s = -1.0
        if not (s > 0 and math.isfinite(s)):
            raise UserError(f"scale {options.scale!r} is not a positive number or 'eye'.",
                            "Example: --scale 0.5")  # fmt: skip
        info["scale"] = f"factor {s}"
    info["metres_per_unit"] = s
    return F.Similarity(R, origin, s), info


# --------------------------------------------------------------------------------------------
# Export


def ascii_name(name: str) -> str:
    """An ASCII-only file/asset name (some importers fail on other paths)."""
    n = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    n = re.sub(r"[^A-Za-z0-9_]+", "_", n).strip("_")
    return n or "scene"


def resolve_formats(options: UnrealExportOptions) -> list[str]:
    preset = PLUGINS[options.plugin]
    if options.format.strip() == "auto":
        return list(preset["formats"])
    out = [f.strip() for f in options.format.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise UserError(f"Unknown format {', '.join(bad) or options.format!r}.",
                        f"Use {', '.join(FORMATS)} or auto.")  # fmt: skip
    return out


def export_transform(
    scene: Scene | None, options: UnrealExportOptions, splats: Splats | None = None
) -> tuple[F.Similarity, dict]:
    """SfM world -> the plugin's PLY frame (upright similarity, then the plugin rotation)."""
    to_up, info = estimate_upright(scene, options, splats)
    R_p = F.upright_to_ply(options.plugin)
    return to_up.then(F.Similarity(R_p, torch.zeros(3, dtype=torch.float64), 1.0)), info


def export_unreal(
    splats: Splats, scene: Scene | None, out_dir: Path, options: UnrealExportOptions
) -> list[Path]:
    """Write ``splats`` for ``options.plugin`` into ``out_dir``; returns the files written
    (the manifest ``<name>.unreal.json`` last).

    Raises:
        UserError: unknown plugin/format, bad scale or up options, nothing left after cropping.
    """
    from splatkit.export.formats import write_format

    if options.plugin not in PLUGINS:
        raise UserError(f"Unknown plugin {options.plugin!r}.", f"Use one of {', '.join(PLUGINS)}.")
    preset = PLUGINS[options.plugin]
    formats = resolve_formats(options)
    sh_degree = preset["sh_degree"] if options.sh_degree is None else int(options.sh_degree)
    if not 0 <= sh_degree <= 3:
        raise UserError(f"SH degree {sh_degree} is not supported.", "Use 0 to 3.")
    max_splats = options.max_splats if options.max_splats is not None else preset["max_splats"]
    if options.plugin == "italink":  # a hard limit of its reader, not a recommendation
        max_splats = min(max_splats, preset["max_splats"])
    splats = splats.detach().to("cpu", torch.float32)
    n_in = len(splats)
    cams = scene.cameras.centers if scene is not None and len(scene.cameras) else None
    splats = splats.index(torch.where(crop_mask(splats, cams, options.crop))[0])
    n_crop = len(splats)
    if n_crop == 0:
        raise UserError("No splats left after dropping invalid, invisible and far-away ones.",
                        "Try --crop 0, or check the training output.")  # fmt: skip
    T, info = export_transform(scene, options, splats)
    if sh_degree < splats.sh_degree:
        splats = Splats(**{**splats.as_dict(), "shN": splats.shN[:, : (sh_degree + 1) ** 2 - 1]})
    out = F.transform_splats(splats, T)
    out = budget(out, max_splats)
    name = ascii_name(options.name)
    out_dir = Path(out_dir)
    written = []
    files = []
    for fmt in formats:
        p = write_format(out, out_dir, name, fmt, sh_degree=sh_degree)
        written.append(p)
        files.append({"path": p.name, "format": fmt, "bytes": p.stat().st_size})
    manifest = {
        "splatkit_manifest": 1,
        "name": name,
        "plugin": options.plugin,
        "plugin_title": preset["title"],
        "files": files,
        "destination_path": f"/Game/Splats/{name}",
        "factory_import": preset["factory_import"],
        # The PLY is pre-rotated, so the actor needs no rotation: identity transform.
        "actor": {
            "location_cm": [0.0, 0.0, 0.0],
            "rotation_deg": [0.0, 0.0, 0.0],
            "scale": [1.0, 1.0, 1.0],
        },  # fmt: skip
        "num_splats": {"input": n_in, "after_crop": n_crop, "written": len(out)},
        "sh_degree": sh_degree,
        "frame": {
            "sfm_to_ply_4x4": T.matrix().tolist(),
            "ply_to_ue": F.PLY_TO_UE[options.plugin],
            "ply_units": "metres (the plugin multiplies by 100)",
            **info,
        },
        "options": dataclasses.asdict(options),
        "note": preset["note"],
    }
    mpath = out_dir / f"{name}.unreal.json"
    write_text_atomic(mpath, json.dumps(manifest, indent=2))
    written.append(mpath)
    return written


# --------------------------------------------------------------------------------------------
# CLI glue (splatkit/cli.py calls these)


def add_cli_options(p: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`UnrealExportOptions` field, from its help metadata."""
    types = {"crop": float, "max_splats": int, "sh_degree": int}
    for f in dataclasses.fields(UnrealExportOptions):
        kw = {"help": f.metadata["help"], "default": None, "dest": f"unreal_{f.name}"}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        kw["type"] = types.get(f.name, str)
        p.add_argument("--" + f.name.replace("_", "-"), **kw)


def options_from_args(args: argparse.Namespace) -> UnrealExportOptions:
    vals = {}
    for f in dataclasses.fields(UnrealExportOptions):
        v = getattr(args, f"unreal_{f.name}", None)
        if v is not None:
            vals[f.name] = v
    return UnrealExportOptions(**vals)


def run_export_cli(out_dir: Path, args: argparse.Namespace) -> list[Path]:
    """``splatkit export OUT --for unreal``: read OUT/scene.ply and OUT/sparse/0, write
    OUT/unreal/."""
    from splatkit.export.ply import read_ply

    out_dir = Path(out_dir)
    splats = read_ply(out_dir / "scene.ply")
    scene = None
    if (out_dir / "sparse" / "0").exists():
        from splatkit.sfm.loaders import load_scene

        scene = load_scene(out_dir)
    paths = export_unreal(splats, scene, out_dir / "unreal", options_from_args(args))
    print("Unreal export:\n" + "\n".join(f"  {p}" for p in paths))
    manifest = next((p for p in paths if p.name.endswith(".unreal.json")), None)
    if manifest is not None:
        frame = json.loads(manifest.read_text()).get("frame", {})
        q = shlex.quote(str(out_dir))
        print(f"  up: {frame.get('up')} (to override: splatkit export {q} --up -y, or +z, ...)")
        print(f"  scale: {frame.get('scale')}, {frame.get('metres_per_unit', 1.0):.4g} m per unit "
              f"(to override: splatkit export {q} --scale 0.5, or --known-distance A.jpg,B.jpg,METRES)")
    return paths
