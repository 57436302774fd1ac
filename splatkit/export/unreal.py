"""Export for Unreal Engine: upright, to scale, cropped, within the plugin's limits, tiled.

The pipeline (:func:`export_unreal`):

1. clean: drop NaN/Inf and near-transparent splats (:mod:`splatkit.export.crop`);
2. orient and scale: a similarity from the SfM world to splatkit's ``upright`` frame (+Z up from
   :mod:`splatkit.up`, +X the main viewing direction, metres from
   :mod:`splatkit.export.scale`, origin on the ground below the scene centre);
3. crop: keep what the training cameras see; the far field (splats larger than the cameras'
   extent or farther than 10x it, :mod:`splatkit.export.farfield`) is left out with a message;
   optionally drop the background beyond a distance;
4. budget: the ``max_splats`` most important splats;
5. tiles (:mod:`splatkit.export.tiles`) when the plugin's storage would cost quality or range
   (:mod:`splatkit.export.limits`); a tile below the minimum share of the splats merges into
   its neighbour, a size asked for has a lower bound from the scene; each tile rotated into
   the plugin's PLY frame
   (:func:`splatkit.frames.upright_to_ply`, SH rotated too) relative to its own origin;
6. write the files (plugin formats, optional glTF, optional collision mesh) and the manifest
   ``<name>.unreal.json`` (:mod:`splatkit.export.manifest`) that
   ``unreal_export/import_splat.py`` reads.

The plugins themselves are data: :mod:`splatkit.export.plugins`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from splatkit import frames as F
from splatkit import up as U
from splatkit.errors import UserError
from splatkit.export import crop as C
from splatkit.export import farfield as FF
from splatkit.export import limits as L
from splatkit.export import plugins as P
from splatkit.export import scale as S
from splatkit.export import tiles as T
from splatkit.scene import Cameras, Scene
from splatkit.splats import Splats

UP_CHOICES = ("auto", "keep", "+x", "-x", "+y", "-y", "+z", "-z")
FORMATS = ("ply", "spz", "splat", "compressed-ply", "glb")
COLLISION_CHOICES = ("none", "glb", "obj")


def _help(default, text: str, **kw):
    return field(default=default, metadata={"help": text, **kw})


@dataclass
class UnrealExportOptions:
    """Options of the Unreal export (the CLI builds its flags from the ``help`` metadata)."""

    plugin: str = _help(
        "nanogs",
        "Unreal plugin to export for: nanogs, italink, picosplat (verified from their "
        "source); xv3dgs, luma, uefn (assumed: binary-only importers); generic.",
        choices=tuple(P.PLUGINS),
    )
    up: str = _help(
        "auto",
        "Which way is up: auto (from the cameras, or the ground plane of the SfM points where the "
        "cameras cannot tell), keep (leave the frame as it is), or the input axis that points up "
        "(+x ... -z).",
        choices=UP_CHOICES,
    )
    scale: str = _help(
        "auto",
        "Metres per scene unit: auto (the photos' GPS, else the eye-height heuristic, "
        "whichever is surer), gps, eye, or a number.",
    )
    known_distance: str | None = _help(
        None,
        "'PHOTO_A,PHOTO_B,METRES[,TOLERANCE]': the measured distance between where two "
        "photos were taken; sets the scale.",
    )
    known_size: str | None = _help(
        None,
        "'PHOTO,X1,Y1,X2,Y2,METRES': the two ends of an object of known length, in pixels "
        "of OUT/images/PHOTO; sets the scale.",
    )
    crop: str = _help(
        "visible",
        "visible: keep the splats some training camera sees; none: keep all. NaN, "
        "infinite and near-invisible splats are always dropped.",
        choices=("visible", "none"),
    )
    drop_background: float = _help(
        0.0,
        "Drop splats farther than this many metres from every training camera (sky, far "
        "background); 0 keeps them. The export says how many it dropped.",
        min=0.0, max=1e7,
    )
    far_field: str = _help(
        "drop",
        "drop: leave out the far field, splats larger than the cameras' extent or farther than "
        "10x it (sky and far background blobs; the export says how many); keep: write them.",
        choices=("drop", "keep"),
    )
    tiles: str = _help(
        "auto",
        "Cut the scene into square tiles of the ground, one file and actor each: auto "
        "(when the plugin's storage would cost quality or range), none, or a size in metres "
        "(raised, with a message, so that tiles hold about 10,000 splats or more). A tile "
        "holding under 1% of the splats merges into its neighbour.",
    )
    max_splats: int | None = _help(
        None, "Keep at most this many splats, the most visible ones (default: the plugin's limit).",
        min=1, max=100_000_000,
    )
    sh_degree: int | None = _help(
        None, "Spherical-harmonics degree to write, 0-3 (default: what the plugin uses).", min=0, max=3
    )
    format: str = _help(
        "auto",
        "Comma-separated formats: ply, spz, splat, compressed-ply, glb (glTF with "
        "KHR_gaussian_splatting), or auto (the plugin's own).",
    )
    collision: str = _help(
        "none",
        "Also write a collision mesh built from the splats: glb or obj (none: no mesh).",
        choices=COLLISION_CHOICES,
    )
    name: str = _help("scene", "Base name of the files and of the Unreal asset (ASCII).")
    lod: int = _help(
        1,
        "Levels of detail per tile: 1 (none) or more, each coarser one with at most a quarter of "
        "the splats (neighbours merged), shown from the distance the manifest gives (large scenes).",
        min=1, max=6,
    )
    cleanup: str = _help(
        "auto",
        "auto: export the cleaned scene (scene_clean.ply) when training wrote one; none: "
        "scene.ply as trained.",
        choices=("auto", "none"),
    )


# --------------------------------------------------------------------------------------------
# Up, forward, origin, scale


def _axis(spec: str) -> Tensor:
    v = torch.zeros(3, dtype=torch.float64)
    v["xyz".index(spec[1])] = 1.0 if spec[0] == "+" else -1.0
    return v


def _cams(scene: Scene | None) -> Cameras | None:
    return scene.cameras if scene is not None and len(scene.cameras) else None


def estimate_up_from(scene: Scene | None, options: UnrealExportOptions) -> U.UpEstimate:
    """The up the options ask for (auto: from evidence)."""
    if options.up not in UP_CHOICES:
        raise UserError(f"Unknown up {options.up!r}.", f"Use one of {', '.join(UP_CHOICES)}.")
    if options.up == "keep":
        return U.UpEstimate(torch.tensor([0, 0, 1.0], dtype=torch.float64), "keep", 0.0)
    if options.up != "auto":
        return U.UpEstimate(_axis(options.up), f"given {options.up}", 0.0)
    cams = _cams(scene)
    if cams is None:
        raise UserError("Cannot find 'up' without camera poses.", "Give --up (e.g. -y for COLMAP scenes).")
    pts = scene.points if scene.points.shape[0] >= 30 else None
    return U.estimate_up(cams.world_to_cam, cams.centers, pts)


def _floor_plane(pts: Tensor, up: Tensor) -> U.Plane:
    """A ground plane along ``up`` at the 2nd percentile of the points' heights (fallback)."""
    h = pts.double() @ up
    return U.Plane(up.double(), float(torch.quantile(h[:200_000], 0.02)))


def estimate_upright(
    scene: Scene | None,
    options: UnrealExportOptions,
    splats: Splats | None = None,
    gps: dict | None = None,
) -> tuple[F.Similarity, dict]:
    """The similarity from the SfM world to the upright frame, and what decided it (manifest)."""
    est = estimate_up_from(scene, options)
    cams = _cams(scene)
    R = torch.eye(3, dtype=torch.float64)
    if options.up != "keep":
        up = est.vector
        fwd = (
            U.estimate_forward(cams.world_to_cam, up)
            if cams is not None
            else U.estimate_forward(torch.eye(4, dtype=torch.float64)[None], up)
        )
        R = U.basis_from_up_forward(up, fwd)
    pts = None
    if scene is not None and scene.points.shape[0] >= 10:
        pts = scene.points.double()
    elif splats is not None and len(splats):
        pts = splats.means.double()[C.finite_mask(splats)]
    ground = est.ground if est.ground is not None and options.up == "auto" else None
    if ground is None and pts is not None and len(pts):
        ground = _floor_plane(pts, R[2])
    info = {
        "up": est.method,
        "up_vector": R[2].tolist(),
        "up_uncertainty_deg": est.uncertainty_deg,
        "up_candidates": est.candidates,
    }
    if pts is not None and len(pts):
        centre = (pts @ R.T).median(0).values
        origin = R.T @ torch.stack([centre[0], centre[1], torch.tensor(ground.offset, dtype=torch.float64)])
        info["origin"] = (
            "ground-below-points-median" if est.ground is not None else "floor-below-points-median"
        )
    elif cams is not None:
        origin, info["origin"] = cams.centers.double().mean(0), "cameras-centre"
    else:
        origin, info["origin"] = torch.zeros(3, dtype=torch.float64), "none"
    ground_for_scale = U.Plane(R[2], float(R[2] @ origin)) if ground is not None else None
    scale, cands = S.choose_scale(
        options.scale, scene, ground_for_scale, R[2], gps, options.known_distance, options.known_size
    )
    info.update(
        scale=scale.describe(),
        scale_source=scale.source,
        metres_per_unit=scale.metres_per_unit,
        scale_uncertainty=scale.uncertainty,
        scale_candidates=[c.as_dict() for c in cands],
    )
    return F.Similarity(R, origin, scale.metres_per_unit), info


def export_transform(
    scene: Scene | None, options: UnrealExportOptions, splats: Splats | None = None
) -> tuple[F.Similarity, dict]:
    """SfM world -> the plugin's PLY frame (upright similarity, then the plugin rotation)."""
    to_up, info = estimate_upright(scene, options, splats)
    R_p = F.upright_to_ply(P.PLUGINS[options.plugin].ply_axes)
    return to_up.then(F.Similarity(R_p, torch.zeros(3, dtype=torch.float64), 1.0)), info


# --------------------------------------------------------------------------------------------
# Export


def ascii_name(name: str) -> str:
    """An ASCII-only file/asset name (some importers fail on other paths)."""
    n = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    n = re.sub(r"[^A-Za-z0-9_]+", "_", n).strip("_")
    return n or "scene"


def resolve_formats(options: UnrealExportOptions) -> list[str]:
    if options.format.strip() == "auto":
        return list(P.PLUGINS[options.plugin].formats)
    out = [f.strip() for f in options.format.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise UserError(
            f"Unknown format {', '.join(bad) or options.format!r}.", f"Use {', '.join(FORMATS)} or auto."
        )
    return out


def _check_options(options: UnrealExportOptions) -> tuple[P.PluginPreset, int, int | None]:
    preset = P.preset(options.plugin)
    sh_degree = preset.sh_degree if options.sh_degree is None else int(options.sh_degree)
    if not 0 <= sh_degree <= 3:
        raise UserError(f"SH degree {sh_degree} is not supported.", "Use 0 to 3.")
    max_splats = options.max_splats if options.max_splats is not None else preset.default_max_splats
    if max_splats is not None and max_splats < 1:
        raise UserError(f"max_splats {max_splats} keeps nothing.", "Give a positive number.")
    if options.crop not in ("visible", "none"):
        raise UserError(f"Unknown crop {options.crop!r}.", "Use visible or none.")
    if options.collision not in COLLISION_CHOICES:
        raise UserError(f"Unknown collision {options.collision!r}.", "Use none, glb or obj.")
    if options.far_field not in ("drop", "keep"):
        raise UserError(f"Unknown far-field choice {options.far_field!r}.", "Use drop or keep.")
    if not (math.isfinite(float(options.drop_background)) and float(options.drop_background) >= 0):
        raise UserError(
            f"drop_background {options.drop_background} is not a distance.",
            "Give metres, e.g. 200, or 0 to keep the background.",
        )
    return preset, sh_degree, max_splats


def upright_cameras(cams: Cameras, T_up: F.Similarity, idx: list[int] | None = None) -> Cameras:
    """``cams`` (optionally the subset ``idx``) seeing the upright scene as they saw the SfM one."""
    c = cams.subset(idx) if idx else cams
    return Cameras(c.names, c.K, T_up.transform_world_to_cam(c.world_to_cam), c.width, c.height)


def crop_upright(s: Splats, cams: Cameras | None, options: UnrealExportOptions, rep: C.CropReport,
                 sky: bool = False) -> Splats:  # fmt: skip
    """The default crop (what the cameras see), the far field (to the sky when ``sky``, else
    dropped; :mod:`splatkit.export.farfield`) and the optional background drop."""
    if cams is not None and options.crop == "visible":
        keep = C.seen_mask(s.means, s.log_scales, cams)
        rep.add("not_seen", int((~keep).sum()), len(s), "no training camera sees them")
        s = s.index(torch.where(keep)[0])
    if cams is not None and options.far_field == "drop" and len(s):
        ff = FF.classify(s, cams.centers)
        rep.counts["far_field"] = ff.count
        rep.far_field = ff.as_dict()
        if ff.count:
            rep.lines.append(FF.message(ff, "m", sky=sky))
            s = s.index(torch.where(~ff.mask)[0])
    d = float(options.drop_background)
    if cams is not None and d > 0:
        keep = C.background_mask(s.means, cams.centers, d)
        rep.add(
            "background",
            int((~keep).sum()),
            len(s),
            f"farther than {d:g} m from every training camera (sky, far background)",
        )
        s = s.index(torch.where(keep)[0])
    return s


def choose_tiles(s_up: Splats, R_p: Tensor, options: UnrealExportOptions, cap: int | None,
                 messages: list[str] | None = None, drop_strays: bool = False) -> list[T.Tile]:  # fmt: skip
    """The tiling: none, the size asked for (raised to :func:`tiles.min_tile_size`, said in
    ``messages``), or (auto) the largest that keeps the plugin's rounding and range limits (and
    its per-file splat cap); then tiles below the minimum share merge into their neighbours.
    ``drop_strays`` (a run's export: its cameras tell the scene from what lies around it): a
    small tile that no tile is near enough to join is left out; without cameras it is kept."""
    messages = messages if messages is not None else []
    spec = str(options.tiles).strip().lower()
    if spec == "none":
        return T.single(len(s_up))
    if spec != "auto":
        size = S._float(spec, "tiles", "Example: --tiles 50 (metres), --tiles auto or --tiles none")
        floor = T.min_tile_size(s_up.means)
        if size < floor:
            messages.append(f"--tiles {size:g} m raised to {floor:.3g} m: smaller tiles would hold "
                            f"under {T.MIN_SPLATS_PER_TILE:,} splats each on average "
                            f"({len(s_up):,} splats)")  # fmt: skip
            size = floor
        return _merged(T.grid(s_up.means, size), s_up, messages, math.inf, drop_strays)
    ply = Splats(**{**s_up.as_dict(), "means": (s_up.means.double() @ R_p.T).to(s_up.means.dtype)})
    chk = L.check(ply, options.plugin)
    size = None
    if chk.out_of_range or L.ground_error(ply, options.plugin) > L.QUALITY_FRACTION * chk.typical_size_m:
        size = L.max_tile_size(options.plugin, chk.typical_size_m)
    if cap is not None and len(s_up) > cap:
        ext = (s_up.means[:, :2].max(0).values - s_up.means[:, :2].min(0).values).double()
        by_count = float(torch.sqrt(ext.prod().clamp(min=1e-12) * cap / len(s_up))) * 0.8
        size = by_count if size is None else min(size, by_count)
    if size is None:
        return T.single(len(s_up))
    return _merged(T.grid(s_up.means, size), s_up, messages, 1, drop_strays)


def _merged(tiles: list[T.Tile], s_up: Splats, messages: list[str], max_cells: float,
            drop_strays: bool) -> list[T.Tile]:
    """:func:`tiles.merge_small`, said; tiles cut for the plugin's limits (``max_cells`` 1) merge
    only into adjacent ones. A small tile with no tile near enough to join (stray splats out on
    their own, which would become an actor of their own in the level) is left out, and said."""
    out = T.merge_small(tiles, s_up.means, max_cells)
    floor = T.min_tile_splats(len(s_up), len(tiles))
    if len(out) < len(tiles):
        messages.append(f"{len(tiles) - len(out)} tiles with under {floor:,} splats merged into "
                        "their neighbours")  # fmt: skip
    stray = [t for t in out if len(t.index) < floor]
    if drop_strays and stray and len(stray) < len(out):
        n = sum(len(t.index) for t in stray)
        messages.append(f"{n:,} stray splats left out: {len(stray)} tile(s) of under {floor:,} splats "
                        "with no tile near enough to join (they would be actors of their own)")  # fmt: skip
        out = [t for t in out if len(t.index) >= floor]
    return out


def export_unreal(
    splats: Splats,
    scene: Scene | None,
    out_dir: Path,
    options: UnrealExportOptions,
    gps: dict | None = None,
    sky=None,
) -> list[Path]:
    """Write ``splats`` for ``options.plugin`` into ``out_dir``; returns the files written
    (the manifest ``<name>.unreal.json`` last). ``gps``: ``{photo name: (lat, lon, alt)}``.
    ``sky``: the learned sky (:class:`splatkit.sky.SkyMap`), written as Unreal's sky
    (:mod:`splatkit.export.sky_export`).

    Raises:
        UserError: unknown plugin/format, bad scale, up or tile options, nothing left to write.
    """
    from splatkit.export import manifest as M

    preset, sh_degree, max_splats = _check_options(options)
    formats = resolve_formats(options)
    splats = splats.detach().to("cpu", torch.float32)
    rep = C.CropReport()
    n_in = len(splats)
    keep = C.clean_mask(splats)
    rep.add("invalid", int((~keep).sum()), n_in, "NaN/infinite values or opacity below 1/255")
    splats = splats.index(torch.where(keep)[0])
    if len(splats) == 0:
        raise UserError("No valid splats to export.", "Check the training output (scene.ply).")
    T_up, info = estimate_upright(scene, options, splats, gps)
    if sh_degree < splats.sh_degree:
        splats = Splats(**{**splats.as_dict(), "shN": splats.shN[:, : (sh_degree + 1) ** 2 - 1]})
    s_up = F.transform_splats(splats, T_up)
    cams = _cams(scene)
    cams_up = upright_cameras(cams, T_up, scene.train_idx) if cams is not None else None
    s_up = crop_upright(s_up, cams_up, options, rep, sky=sky is not None)
    if len(s_up) == 0:
        raise UserError("No splats left after cropping.",
                        "Try --crop none, --far-field keep or --drop-background 0.")
    n_crop = len(s_up)
    s_up = C.budget(s_up, max_splats)
    R_p = F.upright_to_ply(P.PLUGINS[options.plugin].ply_axes)
    info["sfm_to_upright_4x4"] = T_up.matrix().tolist()
    info["sfm_to_ply_4x4"] = (
        T_up.then(F.Similarity(R_p, torch.zeros(3, dtype=torch.float64))).matrix().tolist()
    )
    tile_msgs: list[str] = []
    tiles = choose_tiles(s_up, R_p, options, preset.file_cap, tile_msgs, drop_strays=cams_up is not None)
    job = M.ExportJob(
        options,
        preset,
        formats,
        sh_degree,
        Path(out_dir),
        ascii_name(options.name),
        info,
        rep,
        {"input": n_in, "after_crop": n_crop, "written": 0},
        messages=tile_msgs,
    )
    job.sky = (sky, T_up)
    return M.write_all(job, s_up, tiles, cams_up)
