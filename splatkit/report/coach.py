"""The capture coach: why a capture came out as it did, and what to change next time.

Everything is measured from the run's own folder, never guessed by a downloaded model:

* **photos not placed** (``sfm_work/inputs.json``: SfM's reason per photo, from the verified
  matches) sorted into kinds: *blurry*, *no overlap*, *no parallax* (matched but could not be
  fixed in place: turning on the spot), *another place*;
* **sharpness** of every photo (variance of the Laplacian of ``work/images``, relative to the
  set's median, as the ingest checks measure it; :data:`BLUR_RATIO`);
* **standing still**: placed cameras whose nearest neighbour is closer than
  :data:`SAME_SPOT` of their distance to what they see (photos taken by turning on one spot: no
  depth from them);
* **coverage from above** (``sparse/0``): the sparse points on the ground plane (up from
  :func:`splatkit.up.estimate_up`), each cell coloured by how many photos saw its points
  (their track lengths); cells seen by at most :data:`THIN_PHOTOS` photos are *thin*, empty
  cells inside the points' outline *unseen*; for a capture around an object (cameras aim at a
  common centre), the widest angle around it with no camera (:data:`SIDE_GAP_DEG`);
* **held-out views** (``previews/`` photo | render, ``metrics.json`` ``per_image``): where each
  view's error is and its likely cause (:mod:`.coach_views`: a blurred photo, an exposure change,
  too few viewpoints near it, something that moved, a part few photos saw).

The findings are ranked by how much of the capture they affect; the first one or two give the
advice, and one line (:attr:`Coaching.diagnosis`) is saved in ``metrics.json`` under ``coach``
for the classroom's critique wall.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..metrics import CoachSummary, PhotoCounts, RunMetrics, finite
from ..rundir import RunDir
from .coach_views import BLOCKS, THIN_PHOTOS, Model, ViewCause, split_preview, view_cause

__all__ = ["analyse", "diagnosis", "save", "Coaching", "Finding", "ViewCause", "BLOCKS",
           "split_preview", "view_cause"]

#: a photo sharper than this fraction of the set's median is not called blurry (ingest's rule)
BLUR_RATIO = 0.3
#: nearest other camera closer than this fraction of the distance to the scene: same spot
SAME_SPOT = 0.03
#: turning on the spot: the view turned more than this many times the parallax of the step
TURN_RATIO = 4.0
#: share of matched pairs without parallax from which the capture counts as turning on the spot
#: (SfM's own warning level: COLMAP's PLANAR_OR_PANORAMIC also covers a flat wall seen from
#: places close together: 82 % of the pairs of the fox set, 73 % with a third of it blurred)
PAIRS_NO_PARALLAX = 0.9
#: the widest angle around an object with no camera above which a side counts as left out
SIDE_GAP_DEG = 100.0
#: grid of the map from above (cells on the longer side)
MAP_CELLS = 36
GRADE = ((27.0, "Good result"), (22.0, "Fair result"), (-math.inf, "Weak result"))


@dataclass
class Finding:
    """One thing the coach noticed: ``key`` (kind), how much it matters (0-1), plain words."""

    key: str
    severity: float
    text: str
    advice: str
    photos: list[str] = field(default_factory=list)


@dataclass
class Coaching:
    diagnosis: str
    advice: list[str]
    findings: list[Finding]
    unplaced: list[dict]
    views: list[ViewCause]
    measures: dict
    coverage: dict | None = None  # the map's arrays (not saved)

    def summary(self) -> dict:
        """What ``metrics.json`` keeps (``coach``)."""
        return {"diagnosis": self.diagnosis, "advice": self.advice,
                "findings": [{"key": f.key, "severity": round(f.severity, 3), "text": f.text}
                             for f in self.findings],
                "views": [{"name": v.name, "psnr": round(v.psnr, 2), "cause": v.key}
                          for v in self.views],
                "measures": self.measures}


# -- reading the run ---------------------------------------------------------------------------
def _json(path: Path) -> dict:
    """A JSON object file, or ``{}`` (missing, damaged, or not an object)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def sharpness(folder: Path) -> dict[str, float]:
    """name -> variance of the Laplacian of the photo's grey thumbnail (ingest's measure)."""
    from PIL import Image

    from ..ingest.checks import THUMB, laplacian_variance

    out = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        try:
            with Image.open(p) as im:
                im.draft("L", (THUMB, THUMB))
                g = im.convert("L")
                g.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
                out[p.name] = laplacian_variance(np.asarray(g, dtype=np.float32))
        except OSError:
            continue
    return out


def relative(values: dict[str, float]) -> dict[str, float]:
    """Each value over the median of all (1.0: typical)."""
    if not values:
        return {}
    med = float(np.median(list(values.values())))
    return {k: (v / med if med > 0 else 1.0) for k, v in values.items()}


def read_model(out_dir: Path) -> Model | None:
    from ..sfm.model_files import read_model as read_checked

    d = RunDir(out_dir).sparse
    if not any((d / f"cameras.{e}").exists() for e in ("bin", "txt")):
        return None
    try:  # the checked reader every reader of a model uses; a damaged one: nothing to coach on
        rec = read_checked(d, todo="-")
    except UserError:
        return None
    ims = sorted((im for im in rec.images.values() if getattr(im, "has_pose", True)),
                 key=lambda im: im.name)
    if not ims:
        return None
    index = {im.image_id: i for i, im in enumerate(ims)}
    w2c = np.tile(np.eye(4), (len(ims), 1, 1))
    for i, im in enumerate(ims):
        cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
        w2c[i, :3, :4] = np.asarray(cfw.matrix(), dtype=np.float64)
    c2w = np.linalg.inv(w2c)
    cams = [rec.cameras[im.camera_id] for im in ims]
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    seen = [np.unique([index[e.image_id] for e in p.track.elements if e.image_id in index])
            for p in pts]
    return Model([im.name for im in ims], c2w[:, :3, 3], w2c[:, 2, :3].copy(), w2c,
                 np.stack([np.asarray(c.calibration_matrix(), float) for c in cams]),
                 np.array([[c.width, c.height] for c in cams]), xyz, seen)


def up_vector(m: Model) -> np.ndarray:
    """World up (splatkit/up.py: the cameras, then the ground plane); mean image-up if that fails."""
    try:
        import torch

        from ..up import estimate_up

        pts = torch.from_numpy(m.points) if len(m.points) else None
        up = estimate_up(torch.from_numpy(m.w2c), torch.from_numpy(m.centers), pts).vector
        up = up.double().numpy()
    except Exception:  # noqa: BLE001 - any failure of the estimate falls back to the cameras
        up = -m.w2c[:, 1, :3].mean(0)
    return up / max(np.linalg.norm(up), 1e-12)


# -- photos not placed -------------------------------------------------------------------------
UNPLACED_KINDS = {
    "blurry": "blurry", "black": "dark", "blown out": "overexposed", "separate group": "elsewhere",
    "another place": "elsewhere", "no matches": "no_overlap", "few matches": "no_overlap",
    "could not be fixed": "no_parallax",
}


def unplaced(out_dir: Path, metrics: RunMetrics, rel_sharp: dict[str, float]) -> list[dict]:
    """``[{name, kind, why}]`` for each photo SfM did not place (its own reason, then the
    sharpness measured here: a blurry photo is called blurry whatever else SfM saw)."""
    rec = _json(RunDir(out_dir).sfm_inputs)
    reasons = rec.get("unregistered_reasons") or {}
    names = rec.get("unregistered") or list(metrics.images.unregistered if metrics.images else [])
    reasons = _dict(reasons)
    out = []
    for n in [n for n in names if isinstance(n, str)] if isinstance(names, list) else []:
        why = str(reasons.get(n, "not placed by SfM"))
        kind = next((k for s, k in UNPLACED_KINDS.items() if s in why), "other")
        r = rel_sharp.get(n)
        if r is not None and r < BLUR_RATIO and kind != "blurry":
            kind, why = "blurry", f"blurry (sharpness {r:.0%} of the typical photo here); {why}"
        out.append({"name": n, "kind": kind, "why": why})
    return out


# -- where the cameras stood -------------------------------------------------------------------
def same_spot(m: Model) -> list[str]:
    """Placed photos taken by turning on the spot: another photo stands closer than
    :data:`SAME_SPOT` of the distance to what they see, and the camera turned more than
    :data:`TURN_RATIO` times the parallax that step gives (a video's next frame, moved along
    and barely turned, is not turning)."""
    if len(m.names) < 2:
        return []
    d = np.linalg.norm(m.centers[:, None] - m.centers[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    depth = _depths(m)
    parallax = np.degrees(d / depth[:, None])
    turn = np.degrees(np.arccos(np.clip(m.forwards @ m.forwards.T, -1.0, 1.0)))
    hit = (d < SAME_SPOT * depth[:, None]) & (turn > TURN_RATIO * parallax)
    return [n for i, n in enumerate(m.names) if hit[i].any()]


def backed_by_wall(m: Model, centre: np.ndarray) -> bool:
    """The subject stands against a wall or is a facade: the sparse points behind the point the
    cameras aim at lie on one plane facing them (there is no back to walk around to)."""
    if len(m.points) < 30:
        return False
    fw = m.forwards.mean(0)
    fw /= max(np.linalg.norm(fw), 1e-12)
    depth = float(np.median(_depths(m)))

    def facing_plane(pts: np.ndarray, tol: float) -> float:
        """Share of ``pts`` within ``tol`` of their best plane, if it faces the cameras."""
        mu = np.median(pts, 0)
        n = np.linalg.svd(pts - mu, full_matrices=False)[2][2]
        return float(np.mean(np.abs((pts - mu) @ n) < tol)) if abs(n @ fw) > 0.85 else 0.0

    lo, hi = np.percentile(m.points, [5, 95], axis=0)
    bulk = m.points[np.all((m.points >= lo) & (m.points <= hi), axis=1)]
    if len(bulk) >= 20 and facing_plane(bulk, 0.05 * depth) > 0.6:
        return True  # a relief or facade: nearly everything on one plane
    behind = m.points[(m.points - centre) @ fw > 0]
    return bool(len(behind) >= max(20, 0.15 * len(m.points))
                and facing_plane(behind, 0.03 * depth) > 0.6)  # a wall behind the subject


def _depths(m: Model) -> np.ndarray:
    """Per camera: median distance to the points it saw (the scene's median if none)."""
    seen: list[list[int]] = [[] for _ in m.names]
    for j, cams in enumerate(m.seen_by):
        for c in cams:
            seen[c].append(j)
    fallback = (float(np.median(np.linalg.norm(m.points - m.centers.mean(0), axis=1)))
                if len(m.points) else 1.0)
    return np.array([float(np.median(np.linalg.norm(m.points[s] - m.centers[i], axis=1)))
                     if s else fallback for i, s in enumerate(seen)])


def aim_point(m: Model) -> tuple[np.ndarray, bool]:
    """The point the cameras' viewing rays pass closest to (least squares), and whether the
    cameras aim at it (a capture around an object): most rays within 25 degrees of it."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for c, f in zip(m.centers, m.forwards, strict=True):
        P = np.eye(3) - np.outer(f, f)
        A += P
        b += P @ c
    try:
        p = np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return m.centers.mean(0), False
    to = p - m.centers
    dist = np.linalg.norm(to, axis=1)
    cos = np.einsum("ij,ij->i", to, m.forwards) / np.maximum(dist, 1e-12)
    spread = np.linalg.norm(m.centers - m.centers.mean(0), axis=1).mean()
    # the scene lies inside the cameras' ring (not a courtyard seen from within)
    inside = (not len(m.points)
              or np.median(np.linalg.norm(m.points - p, axis=1)) < 0.7 * np.median(dist))
    return p, bool(len(m.names) >= 4 and np.mean(cos > math.cos(math.radians(25))) > 0.7
                   and spread > 0.2 * np.median(dist) and inside)


def side_gap(m: Model, up: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    """(widest angle around ``centre`` with no camera, degrees; its middle azimuth, degrees)."""
    from .plots import scene_axes

    B = scene_axes(m.centers, up)
    v = (m.centers - centre) @ B[:2].T
    az = np.sort(np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360)
    gaps = np.diff(np.concatenate([az, az[:1] + 360]))
    i = int(gaps.argmax())
    return float(gaps[i]), float((az[i] + gaps[i] / 2) % 360)


def coverage(m: Model, up: np.ndarray) -> dict:
    """The map from above: per ground cell, how many photos saw its points (0: no points)."""
    from .plots import scene_axes

    B = scene_axes(m.centers, up)
    origin = np.median(m.points, 0) if len(m.points) else m.centers.mean(0)
    p = (m.points - origin) @ B[:2].T
    c = (m.centers - origin) @ B[:2].T
    if len(p) < 10:
        return {"photos": np.zeros((1, 1), int), "thin": THIN_PHOTOS, "extent": [-1, 1, -1, 1], "cams": c,
                "forwards": m.forwards @ B[:2].T, "thin_share": 0.0, "unseen_share": 0.0,
                "points": len(p), "basis": B, "origin": origin}
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    cell = float(max(hi - lo)) / MAP_CELLS or 1.0
    shape = np.maximum(np.ceil((hi - lo) / cell).astype(int), 1)
    ij = np.floor((p - lo) / cell).astype(int)
    ok = np.all((ij >= 0) & (ij < shape), axis=1)
    sets: dict[tuple[int, int], set] = {}
    for (i, j), cams, keep in zip(ij, m.seen_by, ok, strict=True):
        if keep:
            sets.setdefault((i, j), set()).update(cams.tolist())
    photos = np.zeros((shape[1], shape[0]), int)  # rows: depth, columns: across
    for (i, j), s in sets.items():
        photos[j, i] = len(s)
    inside = _outline(photos > 0)
    seen = photos > 0
    return {"photos": photos, "thin": THIN_PHOTOS, "extent": [lo[0], lo[0] + shape[0] * cell, lo[1],
                                         lo[1] + shape[1] * cell],
            "cams": c, "forwards": m.forwards @ B[:2].T, "points": len(p), "basis": B,
            "origin": origin, "unseen": inside & ~seen,
            "thin_share": float(np.mean(photos[seen] <= THIN_PHOTOS)) if seen.any() else 0.0,
            "unseen_share": float((inside & ~seen).sum() / max(inside.sum(), 1))}


def _outline(mask: np.ndarray) -> np.ndarray:
    """Cells between filled cells along both a row and a column (the footprint, holes filled)."""
    def between(a: np.ndarray) -> np.ndarray:
        first = np.where(a.any(1), a.argmax(1), a.shape[1])
        last = np.where(a.any(1), a.shape[1] - 1 - a[:, ::-1].argmax(1), -1)
        k = np.arange(a.shape[1])
        return (k[None] >= first[:, None]) & (k[None] <= last[:, None])

    return between(mask) & between(mask.T).T


# -- findings, ranked --------------------------------------------------------------------------
ADVICE = {
    "blurry": "Hold the camera still for each photo (brace it, or stop walking when you press), "
              "and use more light: blur comes from slow shutters.",
    "no_overlap": "Take a photo every few steps so that each one shares about two thirds of the "
                  "view with the one before.",
    "no_parallax": "Walk between photos instead of turning on the spot: depth comes from "
                   "seeing things from different places.",
    "elsewhere": "Keep one place or object per capture, or add photos that connect the groups.",
    "dark": "Use more light, or a longer exposure with the camera braced.",
    "overexposed": "Avoid pointing at the sun or bright windows; lock the exposure.",
    "side": "Walk all the way around the subject, keeping it in frame.",
    "thin": "Photograph the thin parts from more places (each part should be in 5 photos or "
            "more, from different angles).",
    "few_photos": "Take more photos: 30 to 100 overlapping photos are typical.",
    "few_views": "Fill the gaps in your path: add photos where the cameras are far apart.",
    "exposure": "Lock the exposure and white balance (AE/AF lock), and shoot when the light "
                "does not change.",
    "moving": "Shoot when nothing moves (people, cars, branches), or wait until they are gone.",
    "detail": "Go closer for detail, and train with a longer preset for the final result.",
}


def _unplaced_findings(rows: list[dict], total: int) -> list[Finding]:
    out = []
    words = {"blurry": "were too blurry to match", "no_overlap": "did not overlap the others "
             "enough", "no_parallax": "matched others but were taken from almost the same spot "
             "(no change of viewpoint)", "elsewhere": "show another place or object",
             "dark": "were too dark", "overexposed": "were blown out", "other": "have no "
             "recorded reason"}
    for kind in words:
        names = [r["name"] for r in rows if r["kind"] == kind]
        if names:
            out.append(Finding(kind if kind != "other" else "unplaced", min(1.0, len(names)
                               / max(total, 1) * 2), f"{len(names)} of {total} photos were not "
                               f"placed: they {words[kind]}", ADVICE.get(kind, ADVICE["no_overlap"]),
                               names))
    return out


def _capture_findings(m: Model | None, cov: dict | None, rel_sharp: dict[str, float],
                      placed_total: int) -> tuple[list[Finding], dict]:
    out, meas = [], {}
    blurry = sorted(n for n, r in rel_sharp.items() if r < BLUR_RATIO and (m is None or n in m.names))
    if blurry:
        out.append(Finding("blurry", min(1.0, 2 * len(blurry) / max(placed_total, 1)),
                           f"{len(blurry)} placed photos are blurry (motion blur or focus)",
                           ADVICE["blurry"], blurry))
    if m is None:
        return out, meas
    still = same_spot(m)
    meas["same_spot"] = len(still)
    if len(still) >= 3:
        out.append(Finding("no_parallax", min(1.0, 1.5 * len(still) / len(m.names)),
                           f"{len(still)} photos were taken from the same spot as another "
                           "(turning, not walking): they add no depth", ADVICE["no_parallax"], still))
    up = up_vector(m)
    centre, around = aim_point(m)
    meas["around_object"] = around
    wall = around and backed_by_wall(m, centre)
    meas["against_wall"] = wall
    if around:
        gap, mid = side_gap(m, up, centre)
        meas["side_gap_deg"] = round(gap, 1)
        if gap > SIDE_GAP_DEG and not wall:
            if cov is not None:
                cov["gap"] = (gap, mid, centre)
            out.append(Finding("side", 0.15 + 0.4 * (gap - SIDE_GAP_DEG) / (360 - SIDE_GAP_DEG),
                               f"one side was never photographed: {gap:.0f} degrees around the "
                               "subject have no photo", ADVICE["side"]))
    if cov is not None:
        meas["thin_share"] = round(cov["thin_share"], 3)
        meas["unseen_share"] = round(cov["unseen_share"], 3)
        if cov["thin_share"] > 0.5:
            out.append(Finding("thin", 0.35 * cov["thin_share"], f"{cov['thin_share']:.0%} of the "
                               f"scene seen from above was in {THIN_PHOTOS} photos or fewer",
                               ADVICE["thin"]))
    if len(m.names) < 20:
        out.append(Finding("few_photos", 0.1 + 0.3 * (20 - len(m.names)) / 20,
                           f"only {len(m.names)} photos were placed", ADVICE["few_photos"]))
    return out, meas


def _pairs_finding(out_dir: Path, meas: dict) -> list[Finding]:
    """Matched photo pairs that a homography explains (COLMAP's PANORAMIC geometries, SfM's
    own measure): a share of :data:`PAIRS_NO_PARALLAX` or more means turning on the spot."""
    from ..sfm.database import no_parallax_share

    db = RunDir(Path(out_dir)).sfm_work / "database.db"
    try:
        share = no_parallax_share(db) if db.is_file() else 0.0
    except Exception:  # noqa: BLE001 - a damaged or foreign database: nothing measured
        return []
    meas["no_parallax_pairs"] = round(share, 3)
    if share < PAIRS_NO_PARALLAX or meas.get("against_wall"):  # a flat wall fits a homography too
        return []
    return [Finding("no_parallax", min(1.0, share), f"{share:.0%} of the matched photo pairs show "
                    "no change of viewpoint (turning on the spot, not walking)",
                    ADVICE["no_parallax"])]


def _view_findings(views: list[ViewCause]) -> list[Finding]:
    bad = [v for v in views if v.key not in ("ok", "unknown")]
    out = []
    what = {"blur": "are blurred photos", "exposure": "changed in brightness or colour",
            "few_views": "had too few photos taken near them", "moving": "show something that "
            "moved between photos", "thin": "look at parts few photos saw",
            "detail": "are softer than the photo everywhere"}
    for key, words in what.items():
        vs = [v for v in bad if v.key == key]
        if vs:
            sev = 0.8 * len(vs) / max(len(views), 1) * (0.5 if key == "detail" else 1.0)
            out.append(Finding(key if key != "blur" else "blurry", sev,
                               f"{len(vs)} of {len(views)} held-out views {words}",
                               ADVICE[key if key != "blur" else "blurry"], [v.name for v in vs]))
    return out


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per kind: the most severe, its severity raised by the others."""
    by: dict[str, Finding] = {}
    for f in sorted(findings, key=lambda f: -f.severity):
        if f.key in by:
            by[f.key].severity = min(1.0, by[f.key].severity + 0.5 * f.severity)
            by[f.key].photos = sorted(set(by[f.key].photos) | set(f.photos))
        else:
            by[f.key] = f
    return sorted(by.values(), key=lambda f: -f.severity)


# -- the whole coaching ------------------------------------------------------------------------
def _work_images(out_dir: Path) -> Path:
    from ..rundir import RunDir

    rd = RunDir(Path(out_dir))
    return rd.work_images if rd.work_images.is_dir() else rd.frames


def analyse(out_dir: Path, metrics: RunMetrics | None = None) -> Coaching:
    """Everything the coach says about the run in ``out_dir`` (see the module doc); a run file
    that splatkit did not write as it is (damaged, edited) gives a coaching that says so."""
    try:
        return _analyse(Path(out_dir), metrics)
    except (UserError, TypeError, ValueError, KeyError, AttributeError, IndexError, OSError):
        return Coaching("The coach cannot read this run: one of its files is damaged or was not "
                        "written by splatkit.", [], [], [], [], {})


def _analyse(out_dir: Path, metrics: RunMetrics | None) -> Coaching:
    m = metrics if metrics is not None else RunMetrics.read(RunDir(out_dir).metrics) or RunMetrics()
    rel = relative(sharpness(_work_images(out_dir)))
    model = read_model(out_dir)
    cov = coverage(model, up_vector(model)) if model is not None else None
    images = m.images or PhotoCounts()
    total = images.used or images.input or len(rel) or 0
    rows = unplaced(out_dir, m, rel)
    per = [r for r in m.per_image if finite(r.psnr) is not None]
    typical = float(np.median([r.psnr for r in per])) if per else 0.0
    views = [view_cause(r.name, r.psnr, RunDir(out_dir).previews / f"{Path(r.name).stem}.png", rel,
                        model, typical)
             for r in sorted(per, key=lambda r: r.psnr)]
    cap, meas = _capture_findings(model, cov, rel, len(model.names) if model else total)
    findings = _merge(_unplaced_findings(rows, total) + cap + _view_findings(views)
                      + _pairs_finding(out_dir, meas))
    meas.update(photos=total, placed=len(model.names) if model else 0,
                blurry=sum(1 for r in rel.values() if r < BLUR_RATIO))
    advice = []
    for f in findings:
        if f.advice not in advice and f.severity >= 0.05:
            advice.append(f.advice)
        if len(advice) == 2:
            break
    return Coaching(diagnosis(m.psnr, findings), advice, findings, rows, views, meas, cov)


def diagnosis(psnr: float | None, findings: list[Finding]) -> str:
    """One line: how good (the held-out PSNR), and the main cause (or that none was found)."""
    head = ""
    if psnr is not None and math.isfinite(psnr):
        head = next(g for t, g in GRADE if psnr >= t) + f" ({psnr:.1f} dB)"
    main = [f for f in findings if f.severity >= 0.05]
    if not main:
        return (head or "No measurements yet") + ": no capture problem found."
    text = main[0].text
    if len(main) > 1 and main[1].severity >= 0.5 * main[0].severity:
        text += f"; also {main[1].text}"
    return (f"{head}: " if head else "") + text[0].upper() + text[1:] + "."


def save(out_dir: Path, c: Coaching) -> None:
    """Keep the coach's summary in ``metrics.json`` (``coach``), atomically; no metrics.json:
    nothing is written (a run that did not finish)."""
    from ..fileio import write_text_atomic

    path = RunDir(Path(out_dir)).metrics
    m = RunMetrics.read(path)
    if m is None or finite(m.psnr) is None or m.images is None:
        return  # not what splatkit writes (damaged or edited): left as it is
    summary = CoachSummary.from_json(c.summary())
    if m.coach == summary:
        return
    write_text_atomic(path, json.dumps(dataclasses.replace(m, coach=summary).to_json(), indent=2))


def as_dict(c: Coaching) -> dict:
    """Everything but the map's arrays (tests, debugging)."""
    d = asdict(c)
    d.pop("coverage", None)
    return d
