"""The critique wall: every student's latest result side by side, for the teacher's projector.

``GET /teacher/wall`` is the page (``pages/wall.html``); ``GET /api/teacher/wall`` its data: one
card per student with a finished job (their latest), with a render, the held-out quality, the
photos used and placed, and the capture coach's one-line diagnosis (``metrics.json`` ``coach``,
:mod:`splatkit.report.coach`), sorted and paged. Students without a result are counted.
Teacher only; nothing here writes (reading ``metrics.json`` is cached by its modification time).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request

from ..metrics import CoachSummary, PhotoCounts, RunMetrics, finite
from ..rundir import RunDir
from .auth import ctx, need_teacher
from .jobs import previews
from .routes_student import page

router = APIRouter()
PER_PAGE = 12
#: sort keys of the wall -> (value of a card, natural order: True = highest first)
SORTS = {
    "quality": (lambda c: c["psnr"] if c["psnr"] is not None else -math.inf, True),
    "name": (lambda c: c["student"].casefold(), False),
    "placed": (lambda c: c["placed"] if c["placed"] is not None else -1, True),
    "newest": (lambda c: c["finished"] or 0, True),
}
_cache: dict[str, tuple[float, RunMetrics]] = {}
_lock = threading.Lock()


def _metrics(out: Path) -> RunMetrics:
    """``out/metrics.json``, cached while its modification time stays the same."""
    path = RunDir(out).metrics
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return RunMetrics()
    with _lock:
        hit = _cache.get(str(path))
        if hit and hit[0] == mtime:
            return hit[1]
    m = RunMetrics.read(path) or RunMetrics()  # a damaged file shows an empty card, never an error
    with _lock:
        _cache[str(path)] = (mtime, m)
    return m


def card(job: dict) -> dict:
    """What the wall shows of one finished job (no server paths)."""
    out = Path(job["out_dir"])
    m = _metrics(out)
    im, coach = m.images or PhotoCounts(), m.coach or CoachSummary()
    shots = previews(out)
    jid = job["id"]
    return {
        "job_id": jid, "student": job["student_name"], "student_id": job["student_id"],
        "preset": job["preset"], "finished": job["finished"],
        "psnr": finite(m.psnr), "ssim": finite(m.ssim), "photos": im.input, "used": im.used,
        "placed": im.registered, "diagnosis": coach.diagnosis,
        "advice": coach.advice[0] if coach.advice else "",
        "image": f"/api/jobs/{jid}/previews/{shots[0]}" if shots else None,
        "report": f"/api/jobs/{jid}/report.html" if RunDir(out).report.is_file() else None,
        "viewer": f"/jobs/{jid}/view/" if RunDir(out).scene_ply.is_file() else None,
    }


@router.get("/teacher/wall")
def wall_page():
    return page("wall.html")


@router.get("/api/teacher/wall")
def wall(request: Request, page: int = 1, per_page: int = PER_PAGE, sort: str = "quality",
         order: str = ""):
    """Cards of the latest finished job of each student; ``sort``: quality, name, placed,
    newest; ``order``: asc or desc (default: the sort's natural order)."""
    need_teacher(request)
    if sort not in SORTS:
        raise HTTPException(400, f"sort is one of {', '.join(SORTS)}.")
    if order not in ("", "asc", "desc"):
        raise HTTPException(400, "order is asc or desc.")
    c = ctx(request)
    latest: dict[int, dict] = {}
    for j in c.store.jobs(states=("done",)):
        if not j["purged"] and (j["student_id"] not in latest
                                or (j["finished"] or 0) >= (latest[j["student_id"]]["finished"] or 0)):
            latest[j["student_id"]] = j
    cards = [card(j) for j in latest.values()]
    key, high_first = SORTS[sort]
    desc = high_first if not order else order == "desc"
    cards.sort(key=lambda x: x["student"].casefold())  # ties: by name
    cards.sort(key=key, reverse=desc)
    per_page = max(1, min(per_page, 100))
    pages = max(1, -(-len(cards) // per_page))
    page = max(1, min(page, pages))
    students = len(c.store.students())
    return {"cards": cards[(page - 1) * per_page: page * per_page], "page": page, "pages": pages,
            "per_page": per_page, "total": len(cards), "sort": sort,
            "order": "desc" if desc else "asc", "students": students,
            "without_result": max(0, students - len(cards))}
