"""The critique wall: every student's latest result side by side, for the teacher's projector.

``GET /teacher/wall`` is the page (``pages/wall.html``); ``GET /api/teacher/wall`` its data: one
card per student with a finished job (their latest), with a render, the held-out quality, the
photos used and placed, and the capture coach's one-line diagnosis (``metrics.json`` ``coach``,
:mod:`splatkit.report.coach`), sorted and paged. Students without a result are counted.
Teacher only; nothing here writes (reading ``metrics.json`` is cached by its modification time).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request

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
_cache: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()


def _metrics(out: Path) -> dict:
    """``out/metrics.json``, cached while its modification time stays the same."""
    path = RunDir(out).metrics
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    with _lock:
        hit = _cache.get(str(path))
        if hit and hit[0] == mtime:
            return hit[1]
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        m = {}
    m = m if isinstance(m, dict) else {}  # a damaged file shows an empty card, never an error
    with _lock:
        _cache[str(path)] = (mtime, m)
    return m


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def card(job: dict) -> dict:
    """What the wall shows of one finished job (no server paths)."""
    out = Path(job["out_dir"])
    m = _metrics(out)
    im = m.get("images") if isinstance(m.get("images"), dict) else {}
    coach = m.get("coach") if isinstance(m.get("coach"), dict) else {}
    advice = coach.get("advice") if isinstance(coach.get("advice"), list) else []
    shots = previews(out)
    jid = job["id"]
    return {
        "job_id": jid, "student": job["student_name"], "student_id": job["student_id"],
        "preset": job["preset"], "finished": job["finished"],
        "psnr": _number(m.get("psnr")), "ssim": _number(m.get("ssim")),
        "photos": _count(im.get("input")), "used": _count(im.get("used")),
        "placed": _count(im.get("registered")),
        "diagnosis": str(coach.get("diagnosis") or ""), "advice": str(advice[0]) if advice else "",
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
