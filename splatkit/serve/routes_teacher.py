"""Teacher routes: sign-in and sessions, the overview (jobs, seats and gallery, each paged), limits
and class code, seats (let join again, remove, merge), every result."""

from __future__ import annotations

import hashlib
import re
import threading
import zipfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from ..config import PRESETS
from ..rundir import RunDir
from .auth import TEACHER_COOKIE, TEACHER_SESSION_S, ctx, need_teacher
from .jobs import elapsed_s, job_view, queue_positions, queue_waits
from .limits import hardware, job_time_limit_s, offered_presets
from .routes_student import json_body, sign_in_body

router = APIRouter(prefix="/api/teacher")
#: teacher settings: (key, lowest, highest, whole number?)
SETTINGS = [("jobs_per_student", 1, 100, True), ("jobs_per_gpu", 1, 16, True), ("cpus_per_job", 1, 256, True),
            ("paused", 0, 1, True), ("job_minutes", 0, 10_000, False), ("allow_full_on_cpu", 0, 1, True),
            ("keep_days", 0, 3650, False), ("max_seats", 0, 10_000, True)]
PER_PAGE = 50
#: seats and gallery pictures per page of the overview
SEATS_PER_PAGE, GALLERY_PER_PAGE = 30, 24
_zip_lock = threading.Lock()


@router.post("/login")
async def teacher_login(request: Request):
    c = ctx(request)
    body, who = await sign_in_body(request)
    if not c.auth.token_ok(str(body.get("token", ""))):
        c.gate.failed("teacher", who)
        raise HTTPException(403, "Wrong teacher token (the server's start message says where it is kept).")
    c.gate.succeeded("teacher", who)
    resp = JSONResponse({"ok": True})
    resp.set_cookie(TEACHER_COOKIE, c.auth.new_session(), httponly=True, samesite="strict",
                    max_age=TEACHER_SESSION_S)
    return resp


@router.post("/logout")
def teacher_logout(request: Request):
    """Sign out: this browser's session ends on the server (a copy of the cookie is worthless)."""
    ctx(request).store.end_sessions(request.cookies.get(TEACHER_COOKIE, ""))
    resp = JSONResponse({"ok": True})
    resp.delete_cookie(TEACHER_COOKIE)
    return resp


@router.post("/sessions/end-all")
def end_all_sessions(request: Request):
    """End every teacher session, this one too (e.g. after signing in on a borrowed computer)."""
    need_teacher(request)
    n = ctx(request).store.end_sessions(None)
    resp = JSONResponse({"ended": n})
    resp.delete_cookie(TEACHER_COOKIE)
    return resp


def _settings(c) -> dict:
    st = c.store.settings()
    return {k: (int(float(st[k])) if whole else float(st[k])) for k, _, _, whole in SETTINGS}


def _paged(total: int, page: int, per_page: int) -> tuple[int, int]:
    """(page, pages): ``page`` within 1..pages."""
    pages = max(1, -(-total // per_page))
    return max(1, min(page, pages)), pages


@router.get("/overview")
def overview(request: Request, page: int = 1, per_page: int = PER_PAGE, seats_page: int = 1,
             gallery_page: int = 1):
    need_teacher(request)
    c = ctx(request)
    per_page = max(1, min(per_page, 500))
    total = c.store.count_jobs()
    page, pages = _paged(total, page, per_page)
    pos, waits = queue_positions(c.store), queue_waits(c.store, c.dispatcher.slots)
    rows = c.store.jobs(newest_first=True, limit=per_page, offset=(page - 1) * per_page)
    d = c.dispatcher
    minutes = c.store.float_setting("job_minutes")
    latest = _latest_done(c)
    gallery_page, gallery_pages = _paged(len(latest), gallery_page, GALLERY_PER_PAGE)
    seats = c.store.count_seats()
    seats_page, seats_pages = _paged(seats, seats_page, SEATS_PER_PAGE)
    shown = latest[(gallery_page - 1) * GALLERY_PER_PAGE:gallery_page * GALLERY_PER_PAGE]
    return {"class_code": c.store.setting("class_code"), "settings": _settings(c),
            "jobs": [job_view(j, pos, teacher=True, waits=waits) for j in rows],
            "page": page, "pages": pages, "per_page": per_page, "total": total,
            "gallery": [job_view(j, pos, teacher=True) for j in shown],
            "gallery_page": gallery_page, "gallery_pages": gallery_pages, "gallery_total": len(latest),
            "students": _students(c, seats_page), "seats_page": seats_page, "seats_pages": seats_pages,
            "seats_total": seats,
            "seat_names": [{"id": x["id"], "name": x["name"]} for x in c.store.students()],
            "cluster": d.cluster, "hardware": hardware(d.cluster),
            "presets": sorted(PRESETS),
            "offered": offered_presets(d.cluster, _settings(c)["allow_full_on_cpu"] == 1),
            "time_limits_min": {p: round(job_time_limit_s(p, d.cluster, minutes) / 60, 2)
                                for p in offered_presets(d.cluster, True)},
            "ray_error": d.error, "running": len(d.inflight)}


def _latest_done(c) -> list[dict]:
    """Each student's latest finished job with files, students in name order."""
    latest: dict[int, dict] = {}
    for j in c.store.jobs(states=("done",)):
        if not j["purged"]:
            latest[j["student_id"]] = j
    return sorted(latest.values(), key=lambda j: (j["student_name"].casefold(), j["student_id"]))


def _students(c, page: int) -> list[dict]:
    """One page of seats, each with its jobs: state, preset, times and attempts."""
    seats = c.store.students(limit=SEATS_PER_PAGE, offset=(page - 1) * SEATS_PER_PAGE)
    out = []
    for s in seats:
        jobs = [{"id": j["id"], "state": j["state"], "preset": j["preset"], "created": j["created"],
                 "started": j["started"], "finished": j["finished"], "attempts": j["attempts"],
                 "run_seconds": elapsed_s(j)}
                for j in c.store.jobs(student_id=s["id"])]
        out.append({**s, "jobs": jobs})
    return out


@router.post("/students/{sid}/rejoin")
def allow_rejoin(request: Request, sid: int):
    """Let the holder of this seat join again by name (e.g. on another laptop): the next join
    with this name gets a new token and signs the old one out."""
    need_teacher(request)
    if not (0 < sid < 2**63) or not ctx(request).store.allow_rejoin(sid):
        raise HTTPException(404, "No such student.")
    return {"id": sid, "rejoin_ok": True}


@router.post("/students/{sid}/remove")
def remove_seat(request: Request, sid: int):
    """Remove a seat: its waiting and running jobs are cancelled, the student is signed out and
    the name is free again; its finished jobs stay listed."""
    need_teacher(request)
    c = ctx(request)
    if not (0 < sid < 2**63) or not c.store.remove_seat(sid):
        raise HTTPException(404, "No such student.")
    c.dispatcher.wake()
    return {"id": sid, "removed": True}


@router.post("/students/{sid}/merge")
async def merge_seat(request: Request, sid: int):
    """Merge this seat into another (``{"into": id}``): its jobs move there, it is removed."""
    need_teacher(request)
    c = ctx(request)
    body = await json_body(request)
    try:
        into = int(body.get("into"))
    except (TypeError, ValueError):
        raise HTTPException(400, "Say which seat to merge into (into: its id).") from None
    if not (0 < sid < 2**63 and 0 < into < 2**63) or not c.store.merge_seats(sid, into):
        raise HTTPException(404, "No such pair of seats (two different seats of this class).")
    return {"id": sid, "merged_into": into}


@router.post("/jobs/{job_id}/cancel")
def teacher_cancel(request: Request, job_id: int):
    need_teacher(request)
    c = ctx(request)
    if c.store.job(job_id) is None:
        raise HTTPException(404, "No such job.")
    state = c.store.request_cancel(job_id, "teacher")
    c.dispatcher.wake()
    return {"id": job_id, "state": state}


@router.post("/jobs/{job_id}/rerun")
async def teacher_rerun(request: Request, job_id: int):
    need_teacher(request)
    c = ctx(request)
    body = await json_body(request)
    job = c.store.job(job_id)
    if job is None:
        raise HTTPException(404, "No such job.")
    if job["purged"] or not Path(job["photos_dir"]).is_dir():
        raise HTTPException(410, "This job's photos were removed (the keep-days setting).")
    preset = str(body.get("preset") or job["preset"])
    if preset not in PRESETS:
        raise HTTPException(400, f"Unknown preset {preset!r}.")
    new = c.store.add_job(job["student_id"], preset, job["photos_dir"], c.data / "jobs",
                          note=f"re-run of job {job_id} ({preset})", rerun_of=job_id,
                          video_fps=job["video_fps"])
    c.dispatcher.wake()
    return job_view(new, queue_positions(c.store), teacher=True)


@router.post("/settings")
async def teacher_settings(request: Request):
    need_teacher(request)
    c = ctx(request)
    body = await json_body(request)
    for key, lo, hi, whole in SETTINGS:
        if key in body:
            try:
                v = float(body[key])
            except (TypeError, ValueError):
                raise HTTPException(400, f"{key} must be a number.") from None
            if not lo <= v <= hi or (whole and v != int(v)):
                kind = "a whole number" if whole else "a number"
                raise HTTPException(400, f"{key} must be {kind} from {lo} to {hi}.")
            c.store.set_setting(key, int(v) if whole else v)
    if body.get("class_code"):
        code = str(body["class_code"]).strip().upper()
        if not re.fullmatch(r"[A-Z0-9]{4,20}", code):
            raise HTTPException(400, "A class code is 4 to 20 letters and digits.")
        c.store.set_class_code(code)  # every student is signed out; seats and jobs stay
    c.dispatcher.refresh()
    return overview(request)


@router.get("/results.zip")
def all_results(request: Request):
    """Every finished job's scene, report and metrics, one folder per student. A GET changes
    nothing the class can see: the zip is made once for a given set of files (named by a hash of
    their list, sizes and times) and served again until a result changes."""
    need_teacher(request)
    c = ctx(request)
    entries = _result_files(c)
    key = hashlib.sha256(repr(entries).encode()).hexdigest()[:20]
    cache = c.data / "cache"
    target = cache / f"results-{key}.zip"
    with _zip_lock:  # one build at a time; the others then find it made
        if not target.is_file():
            cache.mkdir(exist_ok=True, mode=0o700)
            tmp = target.with_suffix(".tmp")
            with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
                for src, arc, _, _ in entries:
                    zf.write(src, arc)
            tmp.replace(target)
            for old in cache.glob("results-*.zip"):
                if old != target:
                    old.unlink(missing_ok=True)
    return FileResponse(target, media_type="application/zip", filename="splatkit_class_results.zip")


def _result_files(c) -> list[tuple[str, str, int, int]]:
    """(file, name in the zip, size, mtime in ns) of every finished job's results."""
    out = []
    for j in c.store.jobs(states=("done",)):
        folder = f"{_safe(j['student_name'])}_{j['student_id']}/job{j['id']}_{j['preset']}"
        rd = RunDir(j["out_dir"])
        for p in (rd.scene_ply, rd.report, rd.metrics):
            fname = p.name
            if not j["purged"] and p.is_file():
                st = p.stat()
                out.append((str(p), f"{folder}/{fname}", st.st_size, st.st_mtime_ns))
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40] or "student"
