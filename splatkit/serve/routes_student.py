"""Student routes: the pages, joining the class, uploads, a student's own jobs and downloads."""

from __future__ import annotations

import hmac
import json
import shutil
import tempfile
import uuid
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from ..errors import UserError
from ..rundir import RunDir
from .auth import STUDENT_COOKIE, client_key, ctx, is_teacher, job_for, need_student
from .jobs import class_report, job_view, plugin_names, previews, queue_positions, queue_waits, unreal_zip
from .limits import PRESET_HELP, UPLOAD_PATH, offered_presets
from .names import clean_name
from .store import LimitReached, SeatsFull, SeatTaken
from .uploads import UploadError, UploadLimits, save_upload

PAGES = Path(__file__).resolve().parent / "pages"
VIEWER_STATIC = Path(__file__).resolve().parents[1] / "viewer" / "static"
router = APIRouter()


def page(name: str) -> HTMLResponse:
    return HTMLResponse((PAGES / name).read_text(), headers={"Cache-Control": "no-store"})


@router.get("/", response_class=HTMLResponse)
def student_page():
    return page("student.html")


@router.get("/teacher", response_class=HTMLResponse)
def teacher_page():
    return page("teacher.html")


@router.get("/api/health")
def health(request: Request):
    """Public: is the server up, are jobs running, is the queue held (details for the teacher)."""
    c = ctx(request)
    d = c.dispatcher
    out = {"ok": True, "ready": bool(d.cluster) and d.error is None,
           "paused": c.store.setting("paused") == "1", "jobs_error": d.error is not None}
    if is_teacher(request):
        out.update(ray_error=d.error, cluster=d.cluster)
    return out


def presets_now(request: Request) -> list[str]:
    c = ctx(request)
    return offered_presets(c.dispatcher.cluster, c.store.setting("allow_full_on_cpu") == "1")


@router.get("/api/info")
def info(request: Request):
    c = ctx(request)
    names = presets_now(request)
    return {"presets": names, "preset_help": {p: PRESET_HELP.get(p, "") for p in names},
            "plugins": plugin_names(),
            "limits": {"max_request_mb": c.limits.max_request_mb, "max_files": c.limits.max_files,
                       "jobs_per_student": c.store.int_setting("jobs_per_student")}}


async def json_body(request: Request) -> dict:
    """The request's JSON object (or form fields); the body's size is capped by :class:`BodyLimit`."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(400, "The request body is not valid JSON.") from None
        return body if isinstance(body, dict) else {}
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def sign_in_body(request: Request) -> tuple[dict, str]:
    """The body of a sign-in request and the caller's address (for :class:`~.limits.TokenGate`,
    which slows the addresses with many failed attempts)."""
    return await json_body(request), client_key(request)


@router.post("/api/join")
async def join(request: Request):
    c = ctx(request)
    body, who = await sign_in_body(request)
    code = str(body.get("class_code", "")).strip().upper()
    name = clean_name(str(body.get("name", "")))
    if not name:
        raise HTTPException(400, "Type your name.")
    if not hmac.compare_digest(code.encode(), (c.store.setting("class_code") or "").encode()):
        c.gate.failed("join", who)
        raise HTTPException(403, "Wrong class code. Ask your teacher for it.")
    mine = request.cookies.get(STUDENT_COOKIE) or request.headers.get("x-student-token")
    try:
        s, token = c.store.join(name, mine)
    except SeatTaken as e:
        c.gate.failed("join", who)
        raise HTTPException(409, f"Someone has already joined as {e}. Pick another name; or, if that "
                                 "is you on another computer, ask your teacher to let you back in.") from None
    except SeatsFull as e:
        raise HTTPException(403, f"The class is full ({e} seats). If you joined before, use your own "
                                 "computer, or ask your teacher.") from None
    resp = JSONResponse({"id": s["id"], "name": s["name"], **({"token": token} if token else {})})
    if token:
        resp.set_cookie(STUDENT_COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
    return resp


@router.get("/api/me")
def me(request: Request):
    c = ctx(request)
    s = need_student(request)
    pos = queue_positions(c.store)
    mine = c.store.jobs(student_id=s["id"], newest_first=True)
    waits = queue_waits(c.store, c.dispatcher.slots) if any(j["state"] == "queued" for j in mine) else {}
    return {"id": s["id"], "name": s["name"], "paused": c.store.setting("paused") == "1",
            "keep_days": c.store.float_setting("keep_days"),
            "jobs": [job_view(j, pos, data=c.data, waits=waits) for j in mine]}


@router.post(UPLOAD_PATH, status_code=201)
async def submit(request: Request):
    c = ctx(request)
    s = need_student(request)
    limit = c.store.int_setting("jobs_per_student")
    try:
        with c.store.job_slot(s["id"], limit):
            job = await _receive_job(request, c, s)
    except LimitReached:
        raise HTTPException(429, f"You already have {limit} jobs queued or running: wait for one "
                                 "to finish (or cancel one).") from None
    c.dispatcher.wake()
    return job_view(job, queue_positions(c.store), data=c.data,
                    waits=queue_waits(c.store, c.dispatcher.slots))


async def _receive_job(request: Request, c, s: dict) -> dict:
    lim = c.limits
    form = await request.form(max_files=lim.max_files + 1, max_fields=10)
    photos = c.data / "uploads" / uuid.uuid4().hex
    try:
        preset = str(form.get("preset") or "quick")
        if preset not in presets_now(request):
            raise HTTPException(400, f"The preset {preset!r} is not offered here: choose one of "
                                     f"{', '.join(presets_now(request))}.")
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if len(uploads) > lim.max_files:
            raise HTTPException(400, f"Too many files: at most {lim.max_files} photos per job.")
        try:
            note, fps = await run_in_threadpool(_store_upload, uploads, photos, lim, c.data)
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        return c.store.add_job(s["id"], preset, str(photos), c.data / "jobs", note=note, video_fps=fps)
    except BaseException:
        shutil.rmtree(photos, ignore_errors=True)
        raise
    finally:
        await form.close()


def _store_upload(uploads: list[UploadFile], dest: Path, limits: UploadLimits, data: Path):
    """Spool each uploaded file to disk, then check them all (:func:`save_upload`)."""
    tmp_root = data / "tmp"
    tmp_root.mkdir(exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(dir=tmp_root))
    try:
        files = []
        for i, up in enumerate(uploads):
            p = tmp / f"{i:05d}"
            up.file.seek(0)
            with open(p, "wb") as f:
                shutil.copyfileobj(up.file, f, 1 << 20)
            files.append((up.filename or "upload", p))
        return save_upload(files, dest, limits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@router.get("/api/jobs/{job_id}")
def get_job(request: Request, job_id: int):
    c = ctx(request)
    teacher = is_teacher(request)
    job = job_for(request, job_id)
    waits = queue_waits(c.store, c.dispatcher.slots) if job["state"] == "queued" else {}
    return job_view(job, queue_positions(c.store), teacher=teacher, data=c.data, waits=waits)


@router.post("/api/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: int):
    job_for(request, job_id)
    c = ctx(request)
    state = c.store.request_cancel(job_id, "teacher" if is_teacher(request) else "student")
    c.dispatcher.wake()
    return {"id": job_id, "state": state}


def job_files(request: Request, job_id: int) -> dict:
    """The job (:func:`~.auth.job_for`), if its files are still kept (else 410, in plain words)."""
    job = job_for(request, job_id)
    if job.get("purged"):
        days = ctx(request).store.float_setting("keep_days")
        raise HTTPException(410, f"The files of job {job_id} were removed {days:g} days after it ended "
                                 "(your teacher's setting). Upload the photos again to make it anew.")
    return job


def send_file(path: Path, media_type: str | None, download_name: str | None = None):
    if not path.is_file():
        raise HTTPException(404, "Not there (yet).")
    return FileResponse(path, media_type=media_type, filename=download_name)


@router.get("/api/jobs/{job_id}/report.html")
def report(request: Request, job_id: int):
    job = job_files(request, job_id)
    if not RunDir(job["out_dir"]).report.is_file():
        raise HTTPException(404, "Not there (yet).")
    return send_file(class_report(job), "text/html")


@router.get("/api/jobs/{job_id}/scene.ply")
def ply(request: Request, job_id: int):
    job = job_files(request, job_id)
    return send_file(RunDir(job["out_dir"]).scene_ply, "application/octet-stream",
                     f"splatkit_job{job_id}.ply")


@router.get("/api/jobs/{job_id}/previews/{name}")
def preview(request: Request, job_id: int, name: str):
    out = Path(job_files(request, job_id)["out_dir"])
    if name not in previews(out):  # only names from the folder listing: no paths
        raise HTTPException(404, "No such preview.")
    return send_file(RunDir(out).previews / name, "image/png")


@router.get("/api/jobs/{job_id}/unreal/{plugin}.zip")
def unreal(request: Request, job_id: int, plugin: str):
    job = job_files(request, job_id)
    if job["state"] != "done":
        raise HTTPException(409, "The job has not finished yet.")
    try:
        path = unreal_zip(job, plugin)
    except UserError as e:
        raise HTTPException(400, str(e)) from None
    return send_file(path, "application/zip", f"splatkit_job{job_id}_{plugin}.zip")


# -- the viewer (splatkit/viewer's page, per job) -----------------------------------------------
@router.get("/jobs/{job_id}/view/")
def view_page(request: Request, job_id: int):
    job_for(request, job_id)
    return HTMLResponse((VIEWER_STATIC / "index.html").read_text())


@router.get("/jobs/{job_id}/view/scene.ply")
def view_ply(request: Request, job_id: int):
    return send_file(RunDir(job_files(request, job_id)["out_dir"]).scene_ply, "application/octet-stream")


@router.get("/jobs/{job_id}/view/cameras.json")
def view_cameras(request: Request, job_id: int):
    from ..viewer.cameras import cameras_payload

    return JSONResponse(cameras_payload(Path(job_files(request, job_id)["out_dir"])))


@router.get("/jobs/{job_id}/view/static/{path:path}")
def view_static(request: Request, job_id: int, path: str):
    job_for(request, job_id)
    root = VIEWER_STATIC.resolve()
    p = (root / path).resolve()
    if root not in p.parents or not p.is_file():
        raise HTTPException(404, "Not found.")
    return send_file(p, "text/javascript" if p.suffix in (".js", ".mjs") else None)
