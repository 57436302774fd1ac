"""Cleanup after training: remove the splats no training view needs, thresholds chosen per scene.

Three rules, each a score per splat and a list of levels (:class:`splatkit.config.CleanupConfig`):

- **unseen** (LightGaussian's global significance): a splat's largest blending weight ``alpha T``
  (its share of a pixel's colour) over every pixel of every training view, from splatkit's CPU
  rasterizer (:func:`splatkit.render.cpu.splat_weights`). A splat that reaches no training
  pixel at all (weight 0: no training view needs it) is always removed; then ``weight_floor``
  (1/255: less than one 8-bit step of every training pixel) and the higher ``weight_levels``
  are validated;
- **isolated**: the mean distance to its ``isolation_neighbours`` nearest splats (a scipy k-d
  tree) over its distance to the nearest training camera (so the far background, naturally
  sparser, is measured by the angle its spacing subtends), in multiples of the scene's median;
- **clearance**: within a radius of a training camera, outside its view and nearer to it than to
  any SfM point (:func:`splatkit.train.clearance.near_cameras`; radii in camera spacings).

A splat that makes at least ``needed_weight`` (half) of some training pixel's colour is needed by
that view: the isolation and clearance rules leave it (the held-out photos cannot speak for a
part of the place only one training photo shows).

Selection (held-out validation): the removals accepted so far start with the splats of weight 0;
then for
each rule in turn, its levels from the mildest, a level is accepted when the held-out PSNR of
the scene without everything accepted plus that level's splats is at most ``max_psnr_drop``
below the trained scene's; the first level that costs more ends the rule. Each removed splat is
counted once, under the first rule that removed it. The held-out photos are those of the
evaluation (never trained on); the cleanup only removes, so it can hardly fit them.

``scene.ply`` stays as trained; the cleaned scene is ``scene_clean.ply`` (:class:`RunDir`), which
``splatkit export`` and ``splatkit view`` use unless ``--cleanup none``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import CleanupConfig
from .metrics import CleanupSummary
from .render import RenderSettings, View
from .rundir import RunDir
from .scene import Scene
from .splats import Splats

#: The rules, in the order they are applied and counted.
RULES = ("unseen", "isolated", "clearance")


@dataclass
class CleanupResult:
    """What the cleanup decided: ``keep [N]`` bool, and per rule the splats it removed and the
    level accepted (None: none accepted); the held-out PSNR before and after and every trial."""

    keep: Tensor
    removed: dict[str, int]
    levels: dict[str, float | None]
    psnr_before: float
    psnr_after: float
    trials: list[dict] = field(default_factory=list)
    held_out_views: int = 0

    @property
    def num_removed(self) -> int:
        return int((~self.keep).sum())

    def record(self) -> CleanupSummary:
        """What ``metrics.json`` keeps (``cleanup``)."""
        return CleanupSummary(dict(self.removed), self.num_removed, int(self.keep.sum()), dict(self.levels),
                              self.psnr_before, self.psnr_after, self.held_out_views, list(self.trials))

    def summary(self) -> str:
        """One line: what was removed, by which rule, and what it cost."""
        parts = ", ".join(f"{self.removed[r]:,} {r}" for r in RULES)
        delta = ("" if not self.held_out_views else
                 f"; held-out PSNR {self.psnr_before:.2f} -> {self.psnr_after:.2f} dB")  # fmt: skip
        return f"cleanup removed {self.num_removed:,} of {len(self.keep):,} splats ({parts}){delta}"


# ----------------------------------------------------------------------------- scores


def training_views(scene: Scene, resolution: int) -> tuple[object, list[View]]:
    """The scaled cameras and the training views at the training resolution (SfM frame)."""
    from .views import WorldNorm, make_view, scaled_cameras

    cams = scaled_cameras(scene.cameras, resolution)
    ident = WorldNorm.identity()
    return cams, [make_view(cams, i, ident) for i in scene.train_idx]


def significance(splats: Splats, views: list[View], sh_degree: int = 0) -> tuple[Tensor, Tensor]:
    """Each splat's largest and summed blending weight over every pixel of ``views`` (CPU
    rasterizer; colours do not change weights, so SH degree 0 suffices)."""
    from .render.cpu import splat_weights

    settings = RenderSettings(sh_degree=sh_degree)
    sp = splats.detach().to("cpu", torch.float32)
    w_max = torch.zeros(len(sp), dtype=torch.float64)
    w_sum = torch.zeros(len(sp), dtype=torch.float64)
    for v in views:
        splat_weights(sp, v, settings, w_max, w_sum)
    return w_max, w_sum


def isolation(means: Tensor, centers: Tensor, k: int = 8) -> Tensor:
    """``[N]`` float64: mean distance to the ``k`` nearest other splats over the distance to the
    nearest camera centre, divided by its median over the scene (1 = typical)."""
    from scipy.spatial import cKDTree

    from .export.farfield import camera_distance

    x = means.detach().double().cpu().numpy()
    n = len(x)
    if n < 2:
        return torch.zeros(n, dtype=torch.float64)
    kk = min(k, n - 1)
    d, _ = cKDTree(x).query(x, k=kk + 1)
    spacing = torch.from_numpy(np.asarray(d)[:, 1:].mean(1))
    ratio = spacing / camera_distance(means.detach().cpu(), centers.cpu()).clamp(min=1e-12)
    med = float(ratio.median())
    return ratio / med if med > 0 else ratio


def clearance_sets(means: Tensor, scene: Scene, views: list[View], levels: list[float]) -> list[Tensor]:
    """For each radius (camera spacings), the splats the clearance rule marks."""
    from .train.clearance import camera_spacing, near_cameras, point_index

    spacing = camera_spacing(scene.cameras.centers[scene.train_idx])
    pts = point_index(scene.points)
    m = means.detach().double().cpu()
    vs = [View(v.world_to_cam.double(), v.K.double(), v.width, v.height) for v in views]
    return [near_cameras(m, vs, lv * spacing, pts) for lv in levels]


# ----------------------------------------------------------------------------- held-out check


class HeldOut:
    """Renders the held-out views (CPU) and scores a subset of the splats by mean PSNR."""

    def __init__(self, splats: Splats, scene: Scene, resolution: int, sh_degree: int, sky=None):
        from .views import WorldNorm, load_images, make_view, scaled_cameras

        cams = scaled_cameras(scene.cameras, resolution)
        self.idx = list(scene.test_idx)
        self.photos = load_images(scene, self.idx, cams) if self.idx else []
        self.views = [make_view(cams, i, WorldNorm.identity()) for i in self.idx]
        self.splats = splats.detach().to("cpu", torch.float32)
        self.settings = RenderSettings(sh_degree=min(sh_degree, splats.sh_degree))
        self.sky = sky  # splatkit.sky.SkyMap: composited behind the splats, as evaluate does

    def __len__(self) -> int:
        return len(self.idx)

    @torch.no_grad()
    def psnr(self, keep: Tensor | None = None) -> float:
        from .evaluate import psnr
        from .render.cpu import render

        s = self.splats if keep is None else self.splats.index(torch.where(keep)[0])
        vals = []
        for v, gt in zip(self.views, self.photos, strict=True):
            out = render(s, v, self.settings)
            img = out.image if self.sky is None else self.sky.render_behind(out.image, out.alpha, v)
            vals.append(psnr(img.clamp(0, 1), gt))
        return sum(vals) / len(vals) if vals else float("nan")


# ----------------------------------------------------------------------------- selection


def candidates(splats: Splats, scene: Scene, views: list[View], cfg: CleanupConfig) -> tuple[Tensor, dict]:
    """The floor's removals and, per rule, the nested removal sets of its levels
    ``{rule: [(level, mask), ...]}`` (mildest first)."""
    w_max, _ = significance(splats, views)
    floor = w_max <= 0
    iso = isolation(splats.means, scene.cameras.centers[scene.train_idx], cfg.isolation_neighbours)
    free = w_max < cfg.needed_weight  # what no training view needs (the other rules' domain)
    clear = clearance_sets(splats.means, scene, views, sorted(cfg.clearance_levels))
    sets = {
        "unseen": [(float(lv), w_max < lv) for lv in sorted({cfg.weight_floor, *cfg.weight_levels})
                   if lv > 0],
        "isolated": [(float(lv), (iso >= lv) & free) for lv in sorted(cfg.isolation_levels, reverse=True)],
        "clearance": [(float(lv), m & free)
                      for lv, m in zip(sorted(cfg.clearance_levels), clear, strict=True)],
    }
    return floor, sets


def select(floor: Tensor, sets: dict, score: Callable[[Tensor], float], base: float,
           budget: float, progress: Callable[[str], None] | None = None) -> CleanupResult:  # fmt: skip
    """The held-out search (module docstring): ``score(keep)`` is the held-out PSNR of a subset."""
    removed_by = torch.full(floor.shape, -1, dtype=torch.int64)
    removed_by[floor] = 0
    gone = floor.clone()
    levels: dict[str, float | None] = {r: None for r in RULES}
    trials = []
    current = score(~gone) if bool(gone.any()) and math.isfinite(base) else base
    trials.append({"rule": "unseen", "level": 0.0, "removed": int(gone.sum()), "psnr": current,
                   "accepted": True})
    for ri, rule in enumerate(RULES):
        for level, mask in sets.get(rule, []):
            cand = gone | mask
            if int(cand.sum()) == int(gone.sum()):
                levels[rule] = level
                continue
            if int(cand.sum()) == len(cand) or not math.isfinite(base):
                break
            p = score(~cand)
            ok = base - p <= budget
            trials.append({"rule": rule, "level": level, "removed": int(cand.sum()), "psnr": p,
                           "accepted": ok})  # fmt: skip
            if progress:
                progress(f"{rule} at {level:g}: {int(cand.sum()):,} removed, held-out {p:.3f} dB "
                         f"({'kept' if ok else 'over budget'})")  # fmt: skip
            if not ok:
                break
            removed_by[cand & ~gone] = ri
            gone, current, levels[rule] = cand, p, level
    counts = {r: int((removed_by == i).sum()) for i, r in enumerate(RULES)}
    return CleanupResult(~gone, counts, levels, base, current, trials)


def clean(splats: Splats, scene: Scene, resolution: int, cfg: CleanupConfig | None = None,
          progress: Callable[[str], None] | None = None, sky=None) -> CleanupResult:  # fmt: skip
    """Choose what to remove from the trained ``splats`` (SfM frame) of ``scene`` (``sky``: the
    run's learned sky, behind the splats in the held-out renders)."""
    cfg = cfg or CleanupConfig()
    _, views = training_views(scene, resolution)
    floor, sets = candidates(splats, scene, views, cfg)
    held = HeldOut(splats, scene, resolution, splats.sh_degree, sky)
    base = held.psnr() if len(held) else float("nan")
    res = select(floor, sets, held.psnr, base, cfg.max_psnr_drop, progress)
    res.held_out_views = len(held)
    return res


# ----------------------------------------------------------------------------- preview


def overview_view(scene: Scene, width: int, height: int) -> View:
    """A viewpoint off the photo path, where floaters show: above and behind the cameras (half
    the cameras' extent back from their centroid, away from the scene, and half up), looking at
    the scene's centre (median SfM point)."""
    from .export.farfield import camera_extent

    cams = scene.cameras.subset(scene.train_idx) if scene.train_idx else scene.cameras
    w2c = cams.world_to_cam.double()
    centres = cams.centers.double()
    pts = scene.points.double()
    target = pts.median(0).values if len(pts) else centres.mean(0) + w2c[0, 2, :3]
    up = -w2c[:, 1, :3].mean(0)
    up = up / up.norm().clamp(min=1e-12)
    extent = camera_extent(centres, pts)
    back = centres.mean(0) - target
    back = back - (back @ up) * up
    if back.norm() < 0.1 * extent:  # cameras around the scene: behind the first one
        back = -w2c[0, 2, :3] + (w2c[0, 2, :3] @ up) * up
    back = back / back.norm().clamp(min=1e-12)
    eye = centres.mean(0) + 0.5 * extent * (back + up)
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(-up, z)
    x = x / x.norm().clamp(min=1e-12)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = R, -R @ eye
    f = 0.7 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)
    return View(m.float(), K.float(), width, height)


@torch.no_grad()
def write_previews(splats: Splats, keep: Tensor, scene: Scene, rd: RunDir, width: int = 480) -> list[Path]:
    """The trained and the cleaned scene from :func:`overview_view`, as PNGs (atomically)."""
    from PIL import Image

    from .fileio import atomic_path
    from .render.cpu import render

    view = overview_view(scene, width, int(round(width * 2 / 3)))
    settings = RenderSettings(sh_degree=min(3, splats.sh_degree))
    sp = splats.detach().to("cpu", torch.float32)
    paths = []
    for which, s in (("before", sp), ("after", sp.index(torch.where(keep)[0]))):
        img = render(s, view, settings).image.clamp(0, 1)
        path = rd.cleanup_preview(which)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray((img * 255 + 0.5).to(torch.uint8).numpy()).save(tmp, format="PNG")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- run folder


def scene_path(rd: RunDir, cleanup: str = "auto") -> Path:
    """The scene the export and the viewer use (:meth:`RunDir.scene_in_use`)."""
    return rd.scene_in_use(cleanup)


def run_cleanup(rd: RunDir, splats: Splats, scene: Scene, resolution: int, cfg: CleanupConfig,
                progress: Callable[[str], None] | None = None, sky=None) -> CleanupResult:  # fmt: skip
    """Clean the trained ``splats`` and write ``scene_clean.ply`` and the before/after previews
    into ``rd``; ``scene.ply`` is not touched."""
    from .export.ply import write_ply

    res = clean(splats, scene, resolution, cfg, progress, sky)
    kept = splats.detach().to("cpu").index(torch.where(res.keep)[0])
    write_ply(kept, rd.scene_clean_ply)
    write_previews(splats, res.keep, scene, rd, cfg.preview_width)
    return res
