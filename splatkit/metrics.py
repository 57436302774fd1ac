"""``metrics.json``: what a finished run measured, as one typed record.

The pipeline writes it (:meth:`RunMetrics.to_json`); the report, the capture coach and the class
wall read it through :meth:`RunMetrics.read`. Reading checks every field: a field of the wrong
type (a hand-edited or damaged file) reads as missing, so it costs that field, never the
reader. The report adds ``coach`` later (the one-line diagnosis the class wall shows); keys this
version does not know are kept (``extra``) when the file is written again.

The file's layout (the keys below, as JSON) is what other tools and earlier runs read:

- ``psnr``, ``ssim``: held-out means (NaN with no held-out photo); ``per_image``: one
  ``{name, psnr, ssim}`` per held-out photo (:class:`~splatkit.scores.ViewScore`);
- ``steps``, ``num_splats``, ``device``, ``backend``, ``preset``; ``resolution``: the longest
  side trained on, ``resolution_detail``: requested / trained / evaluated;
- ``images``: the photos found, used, skipped (with reasons), placed, not placed, trained on and
  held out; ``sky``: the learned sky's share of the pixels and size, or null;
- ``seconds``: per stage and ``total``; ``cpu_count``; ``versions``;
- ``cleanup`` (:class:`CleanupSummary`) and ``coach`` (:class:`CoachSummary`), or absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .scores import ViewScore


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    """A number (NaN kept: "no held-out photo"), else None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def finite(v: float | None) -> float | None:
    """``v`` when it is a finite number, else None (for display)."""
    return v if v is not None and math.isfinite(v) else None


@dataclass(frozen=True)
class SkippedPhoto:
    name: str
    reason: str


@dataclass(frozen=True)
class PhotoCounts:
    """What went in: photos found, used, skipped (with reasons), placed by SfM, not placed,
    trained on and held out."""

    input: int | None = None
    used: int | None = None
    skipped: tuple[SkippedPhoto, ...] = ()
    registered: int | None = None
    unregistered: tuple[str, ...] = ()
    train: int | None = None
    test: int | None = None

    def to_json(self) -> dict:
        return {"input": self.input, "used": self.used,
                "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
                "registered": self.registered, "unregistered": list(self.unregistered),
                "train": self.train, "test": self.test}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> PhotoCounts:
        skipped = tuple(SkippedPhoto(str(s.get("name")), str(s.get("reason")))
                        for s in _list(d.get("skipped")) if isinstance(s, dict))  # fmt: skip
        return cls(_int(d.get("input")), _int(d.get("used")), skipped, _int(d.get("registered")),
                   tuple(n for n in _list(d.get("unregistered")) if isinstance(n, str)),
                   _int(d.get("train")), _int(d.get("test")))  # fmt: skip


@dataclass(frozen=True)
class Resolution:
    """Longest side in pixels: asked for, trained on, evaluated at."""

    requested: int | None = None
    trained: int | None = None
    evaluated: int | None = None


@dataclass(frozen=True)
class SkySummary:
    """The learned sky: its share of the training pixels, its size, the share of it seen."""

    share: float | None = None
    width: int | None = None
    height: int | None = None
    seen_fraction: float | None = None


@dataclass(frozen=True)
class CleanupSummary:
    """What cleanup removed (:class:`splatkit.cleanup.CleanupResult`), as the report shows it."""

    removed: dict[str, int]
    removed_total: int
    kept: int
    levels: dict[str, float | None]
    psnr_before: float
    psnr_after: float
    held_out_views: int = 0
    trials: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"removed": dict(self.removed), "removed_total": self.removed_total, "kept": self.kept,
                "levels": dict(self.levels), "psnr_before": self.psnr_before,
                "psnr_after": self.psnr_after, "psnr_delta": self.psnr_after - self.psnr_before,
                "held_out_views": self.held_out_views, "trials": list(self.trials)}  # fmt: skip

    @classmethod
    def from_json(cls, d: Any) -> CleanupSummary | None:
        if not isinstance(d, dict):
            return None
        nums = [_int(d.get("removed_total")), _int(d.get("kept")), _float(d.get("psnr_before")),
                _float(d.get("psnr_after"))]  # fmt: skip
        if any(v is None for v in nums):
            return None
        removed = {str(k): v for k, v in _dict(d.get("removed")).items() if _int(v) is not None}
        levels = {str(k): _float(v) for k, v in _dict(d.get("levels")).items()}
        return cls(removed, nums[0], nums[1], levels, nums[2], nums[3],
                   _int(d.get("held_out_views")) or 0, _list(d.get("trials")))  # fmt: skip


@dataclass(frozen=True)
class CoachSummary:
    """The capture coach's summary (:meth:`splatkit.report.coach.Coaching.summary`)."""

    diagnosis: str = ""
    advice: tuple[str, ...] = ()
    detail: dict = field(default_factory=dict)
    """Its findings, views and measures, as the coach wrote them."""

    def to_json(self) -> dict:
        return {"diagnosis": self.diagnosis, "advice": list(self.advice), **self.detail}

    @classmethod
    def from_json(cls, d: Any) -> CoachSummary | None:
        if not isinstance(d, dict):
            return None
        detail = {k: v for k, v in d.items() if k not in ("diagnosis", "advice")}
        return cls(str(d.get("diagnosis") or ""), tuple(str(a) for a in _list(d.get("advice"))), detail)


def _per_image(v: Any) -> tuple[ViewScore, ...]:
    """``[{name, psnr, ssim}]`` (``{name: {psnr, ssim}}`` also read); rows without a name or a
    PSNR are left out."""
    if isinstance(v, dict):
        v = [{"name": k, **_dict(r)} for k, r in v.items()]
    out = []
    for r in _list(v):
        r = _dict(r)
        name, p = _str(r.get("name")), _float(r.get("psnr"))
        if name is not None and p is not None:
            s = _float(r.get("ssim"))
            out.append(ViewScore(name, p, float("nan") if s is None else s))
    return tuple(out)


@dataclass(frozen=True)
class RunMetrics:
    """``metrics.json`` (see the module doc). Every field may be missing in a file that
    splatkit did not write as it is."""

    psnr: float | None = None
    ssim: float | None = None
    per_image: tuple[ViewScore, ...] = ()
    steps: int | None = None
    num_splats: int | None = None
    device: str | None = None
    backend: str | None = None
    preset: str | None = None
    resolution: int | None = None
    resolution_detail: Resolution = Resolution()
    images: PhotoCounts | None = None
    sky: SkySummary | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_count: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    cleanup: CleanupSummary | None = None
    coach: CoachSummary | None = None
    extra: dict = field(default_factory=dict)
    """Keys this version does not know, kept as they were."""

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "psnr": self.psnr, "ssim": self.ssim, "per_image": [v.to_json() for v in self.per_image],
            "steps": self.steps, "num_splats": self.num_splats, "device": self.device,
            "backend": self.backend, "preset": self.preset, "resolution": self.resolution,
            "resolution_detail": vars(self.resolution_detail).copy(),
            "images": None if self.images is None else self.images.to_json(),
            "sky": None if self.sky is None else vars(self.sky).copy(),
            "seconds": dict(self.seconds), "cpu_count": self.cpu_count, "versions": dict(self.versions),
        }  # fmt: skip
        if self.cleanup is not None:
            d["cleanup"] = self.cleanup.to_json()
        if self.coach is not None:
            d["coach"] = self.coach.to_json()
        return {**d, **self.extra}

    @classmethod
    def from_json(cls, d: dict) -> RunMetrics:
        """The record in ``d``, each field checked (a wrong type reads as missing)."""
        res, sky = _dict(d.get("resolution_detail")), d.get("sky")
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            psnr=_float(d.get("psnr")), ssim=_float(d.get("ssim")), per_image=_per_image(d.get("per_image")),
            steps=_int(d.get("steps")), num_splats=_int(d.get("num_splats")), device=_str(d.get("device")),
            backend=_str(d.get("backend")), preset=_str(d.get("preset")),
            resolution=_int(d.get("resolution")),
            resolution_detail=Resolution(_int(res.get("requested")), _int(res.get("trained")),
                                         _int(res.get("evaluated"))),
            images=PhotoCounts.from_json(d["images"]) if isinstance(d.get("images"), dict) else None,
            sky=None if not isinstance(sky, dict) else SkySummary(
                _float(sky.get("share")), _int(sky.get("width")), _int(sky.get("height")),
                _float(sky.get("seen_fraction"))),
            seconds={str(k): float(v) for k, v in _dict(d.get("seconds")).items() if _float(v) is not None},
            cpu_count=_int(d.get("cpu_count")),
            versions={str(k): str(v) for k, v in _dict(d.get("versions")).items()},
            cleanup=CleanupSummary.from_json(d.get("cleanup")), coach=CoachSummary.from_json(d.get("coach")),
            extra={k: v for k, v in d.items() if k not in known},
        )  # fmt: skip

    @classmethod
    def read(cls, path: Path) -> RunMetrics | None:
        """The run's ``metrics.json``; None when it is missing or not a JSON object (damaged)."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return cls.from_json(d) if isinstance(d, dict) else None

    @property
    def finished(self) -> bool:
        """Whether this is the record of a finished run (a held-out score and the photos)."""
        return self.psnr is not None and self.images is not None


__all__ = ["RunMetrics", "PhotoCounts", "SkippedPhoto", "Resolution", "SkySummary", "CleanupSummary",
           "CoachSummary", "finite"]
