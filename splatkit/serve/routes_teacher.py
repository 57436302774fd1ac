"""Teacher routes: sign-in, the overview (paged), limits and class code, students, every result."""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask

from ..config import PRESETS
from .auth import TEACHER_COOKIE, TEACHER_SESSION_S, ctx, need_teacher
from .jobs import job_view, queue_positions
from .limits import hardware, job_time_limit_s, offered_presets
from .routes_student import json_body, sign_in_body

router = APIRouter(prefix="/api/teacher")
#: teacher settings: (key, lowest, highest, whole number?)
SETTINGS = [("jobs_per_student", 1, 100, True), ("jobs_per_gpu", 1, 16, True), ("cpus_per_job", 1, 256, True),
            ("paused", 0, 1, True), ("job_minutes", 0, 10_000, False), ("allow_full_on_cpu", 0, 1, True),
            ("keep_days", 0, 3650, False)]
PER_PAGE = 50


@router.post("/login")
async def teacher_login(request: Request):
    c = ctx(request)
    body, who = await sign_in_body(request, c.login_attempts)
    if not c.auth.token_ok(str(body.get("token", ""))):
        c.login_attempts.failed(who)
        raise HTTPException(403, "Wrong teacher token (the server's start message says where it is kept).")
    resp = JSONResponse({"ok": True})
    resp.set_cookie(TEACHER_COOKIE, c.auth.new_session(), httponly=True, samesite="strict",
                    max_age=TEACHER_SESSION_S)
    return resp


@router.post("/logout")
def teacher_logout():
    resp = JSONResponse({"ok": True})
    resp.delete_cookie(TEACHER_COOKIE)
    return resp


def _settings(c) -> dict:
    st = c.store.settings()
    return {k: (int(float(st[k])) if whole else float(st[k])) for k, _, _, whole in SETTINGS}


@router.get("/overview")
def overview(request: Request, page: int = 1, per_page: int = PER_PAGE):
    need_teacher(request)
    c = ctx(request)
    per_page = max(1, min(per_page, 500))
    total = c.store.count_jobs()
    pages = max(1, -(-total // per_page))
    page = max(1, min(page, pages))
    pos = queue_positions(c.store)
    rows = c.store.jobs(newest_first=True, limit=per_page, offset=(page - 1) * per_page)
    d = c.dispatcher
    minutes = c.store.float_setting("job_minutes")
    return {"class_code": c.store.setting("class_code"), "settings": _settings(c),
            "jobs": [job_view(j, pos, teacher=True) for j in rows],
            "page": page, "pages": pages, "per_page": per_page, "total": total,
            "gallery": [job_view(j, pos, teacher=True) for j in _latest_done(c)],
            "students": _students(c), "cluster": d.cluster, "hardware": hardware(d.cluster),
            "presets": sorted(PRESETS),
            "offered": offered_presets(d.cluster, _settings(c)["allow_full_on_cpu"] == 1),
            "time_limits_min": {p: round(job_time_limit_s(p, d.cluster, minutes) / 60, 2)
                                for p in offered_presets(d.cluster, True)},
            "ray_error": d.error, "running": len(d.inflight)}


def _latest_done(c) -> list[dict]:
    latest: dict[int, dict] = {}
    for j in c.store.jobs(states=("done",)):
        if not j["purged"]:
            latest[j["student_id"]] = j
    return list(latest.values())


def _students(c) -> list[dict]:
    """Each seat with its jobs: state, preset, times and attempts."""
    per: dict[int, list] = {}
    for j in c.store.jobs():
        per.setdefault(j["student_id"], []).append(
            {"id": j["id"], "state": j["state"], "preset": j["preset"], "created": j["created"],
             "started": j["started"], "finished": j["finished"], "attempts": j["attempts"],
             "run_seconds": round(j["run_seconds"], 1)})
    return [{**s, "jobs": per.get(s["id"], [])} for s in c.store.students()]


@router.post("/students/{sid}/rejoin")
def allow_rejoin(request: Request, sid: int):
    """Let the holder of this seat join again by name (e.g. on another laptop): the next join
    with this name gets a new token and signs the old one out."""
    need_teacher(request)
    if not (0 < sid < 2**63) or not ctx(request).store.allow_rejoin(sid):
        raise HTTPException(404, "No such student.")
    return {"id": sid, "rejoin_ok": True}


@router.post("/jobs/{job_id}/cancel")
def teacher_cancel(request: Request, job_id: int):
    need_teacher(request)
    c = ctx(request)
    if c.store.job(job_id) is None:
        raise HTTPException(404, "No such job.")
    state = c.store.request_cancel(job_id)
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
        c.store.set_class_code(code)  # every seat of the old code is signed out
    c.dispatcher.refresh()
    return overview(request)


@router.get("/results.zip")
def all_results(request: Request):
    """Every finished job's scene, report and metrics, one folder per student."""
    need_teacher(request)
    c = ctx(request)
    tmp_root = c.data / "tmp"
    tmp_root.mkdir(exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(suffix=".zip", dir=tmp_root)
    with open(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for j in c.store.jobs(states=("done",)):
            out = Path(j["out_dir"])
            folder = f"{_safe(j['student_name'])}_{j['student_id']}/job{j['id']}_{j['preset']}"
            for fname in ("scene.ply", "report.html", "metrics.json"):
                if (out / fname).is_file():
                    zf.write(out / fname, f"{folder}/{fname}")
    return FileResponse(name, media_type="application/zip", filename="splatkit_class_results.zip",
                        background=BackgroundTask(Path(name).unlink, missing_ok=True))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40] or "student"
