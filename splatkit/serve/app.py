"""The classroom web server (FastAPI): student and teacher pages, the JSON API, downloads.

Students join with the class code and a name and get a per-student token in an HttpOnly,
SameSite=Strict cookie (``splatkit_student``); every job route checks that the job is theirs (404
otherwise). The teacher signs in with the teacher token (cookie ``splatkit_teacher`` or header
``X-Teacher-Token``). State lives in ``DATA/splatkit.db`` (:mod:`.store`); jobs run on Ray
(:mod:`.runner`); uploads are checked by :mod:`.uploads`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from ..config import PRESETS
from ..errors import UserError
from .jobs import job_view, previews, queue_positions, unreal_zip
from .runner import Dispatcher
from .store import Store
from .uploads import UploadError, UploadLimits, save_upload

PAGES = Path(__file__).resolve().parent / "pages"
VIEWER_STATIC = Path(__file__).resolve().parents[1] / "viewer" / "static"
STUDENT_COOKIE, TEACHER_COOKIE = "splatkit_student", "splatkit_teacher"
UPLOAD_PATH = "/api/jobs"


class BodyLimit:
    """ASGI middleware: uploads larger than the limit get a 413 with a message, checked on the
    Content-Length header and again on the bytes that really arrive."""

    def __init__(self, app, limit_bytes: int):
        self.app, self.limit = app, limit_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != UPLOAD_PATH:
            return await self.app(scope, receive, send)
        msg = f"The upload is larger than {self.limit / 1e6:g} MB. Send fewer or smaller photos."
        cl = dict(scope["headers"]).get(b"content-length")
        if cl and cl.isdigit() and int(cl) > self.limit:
            drained = 0  # read what the client sends (up to a cap) so that it sees the answer
            while drained < self.limit + 64 * 2**20:
                m = await receive()
                drained += len(m.get("body", b""))
                if m["type"] != "http.request" or not m.get("more_body"):
                    break
            resp = JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})
            return await resp(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            m = await receive()
            seen += len(m.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, msg)
            return m

        return await self.app(scope, counted, send)


def teacher_token_for(data: Path, given: str | None) -> str:
    path = data / "teacher_token"
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    tok = secrets.token_urlsafe(16)
    path.write_text(tok + "\n")
    path.chmod(0o600)
    return tok


def create_app(data_dir: Path, teacher_token: str | None = None, ray_address: str | None = None,
               ray_cpus: int | None = None, limits: UploadLimits | None = None,
               class_code: str | None = None, job_fn: str | None = None) -> FastAPI:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    store = Store(data / "splatkit.db")
    if class_code:
        store.set_setting("class_code", class_code)
    requeued = store.requeue_running()
    token = teacher_token_for(data, teacher_token)
    limits = limits or UploadLimits()
    dispatcher = Dispatcher(store, ray_address=ray_address, ray_cpus=ray_cpus, job_fn=job_fn)

    @asynccontextmanager
    async def lifespan(app):
        dispatcher.start()
        yield
        dispatcher.shutdown()

    app = FastAPI(title="splatkit classroom", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, limit_bytes=int(limits.max_request_mb * 1e6))
    app.state.store, app.state.dispatcher, app.state.data = store, dispatcher, data
    app.state.teacher_token, app.state.requeued = token, requeued

    # -- who is asking --------------------------------------------------------------------
    def student(request: Request) -> dict | None:
        tok = request.cookies.get(STUDENT_COOKIE) or request.headers.get("x-student-token", "")
        return store.student_by_token(tok)

    def is_teacher(request: Request) -> bool:
        tok = request.cookies.get(TEACHER_COOKIE) or request.headers.get("x-teacher-token", "")
        return bool(tok) and hmac.compare_digest(tok.encode(), token.encode())

    def need_student(request: Request) -> dict:
        s = student(request)
        if s is None:
            raise HTTPException(401, "Join the class first (class code and your name).")
        return s

    def need_teacher(request: Request) -> None:
        if not is_teacher(request):
            raise HTTPException(403, "Teacher token required.")

    def job_for(request: Request, job_id: int) -> dict:
        """The job, if the caller may see it: the teacher any, a student only their own (404)."""
        job = store.job(job_id)
        if is_teacher(request) and job:
            return job
        s = need_student(request)
        if job is None or job["student_id"] != s["id"]:
            raise HTTPException(404, "No such job among yours.")
        return job

    # -- pages ----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def student_page():
        return HTMLResponse((PAGES / "student.html").read_text(), headers={"Cache-Control": "no-store"})

    @app.get("/teacher", response_class=HTMLResponse)
    def teacher_page():
        return HTMLResponse((PAGES / "teacher.html").read_text(), headers={"Cache-Control": "no-store"})

    @app.get("/api/health")
    def health():
        return {"ok": True, "ray": dispatcher.is_alive() and dispatcher.error is None,
                "ray_error": dispatcher.error, "cluster": dispatcher.cluster}

    @app.get("/api/info")
    def info():
        from ..export.unreal import PLUGINS

        return {"presets": sorted(PRESETS), "plugins": {k: v["title"] for k, v in PLUGINS.items()},
                "limits": {"max_request_mb": limits.max_request_mb, "max_files": limits.max_files,
                           "jobs_per_student": store.int_setting("jobs_per_student")}}

    # -- students -------------------------------------------------------------------------
    @app.post("/api/join")
    async def join(request: Request):
        body = await _body(request)
        code = str(body.get("class_code", "")).strip().upper()
        name = " ".join(str(body.get("name", "")).split())[:40]
        if not name:
            raise HTTPException(400, "Type your name.")
        if not hmac.compare_digest(code.encode(), (store.setting("class_code") or "").encode()):
            raise HTTPException(403, "Wrong class code. Ask your teacher for it.")
        s = store.add_student(name)
        resp = JSONResponse({"id": s["id"], "name": s["name"], "token": s["token"]})
        resp.set_cookie(STUDENT_COOKIE, s["token"], httponly=True, samesite="strict", max_age=30 * 86400)
        return resp

    @app.get("/api/me")
    def me(request: Request):
        s = need_student(request)
        pos = queue_positions(store)
        return {"id": s["id"], "name": s["name"],
                "jobs": [job_view(j, pos) for j in reversed(store.jobs(student_id=s["id"]))]}

    @app.post(UPLOAD_PATH, status_code=201)
    async def submit(request: Request):
        s = need_student(request)
        limit = store.int_setting("jobs_per_student")
        if store.count_active(s["id"]) >= limit:
            raise HTTPException(429, f"You already have {limit} jobs queued or running: wait for one "
                                     "to finish (or cancel one).")
        form = await request.form(max_files=limits.max_files + 1, max_fields=10)
        preset = str(form.get("preset") or "quick")
        if preset not in PRESETS:
            raise HTTPException(400, f"Unknown preset {preset!r}: use one of {', '.join(sorted(PRESETS))}.")
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if len(uploads) > limits.max_files:
            raise HTTPException(400, f"Too many files: at most {limits.max_files} photos per job.")
        photos = data / "uploads" / uuid.uuid4().hex
        try:
            note = await run_in_threadpool(_store_upload, uploads, photos, limits, data)
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        finally:
            await form.close()
        job = store.add_job(s["id"], preset, str(photos), data / "jobs", note=note)
        dispatcher.wake()
        return job_view(job, queue_positions(store))

    @app.get("/api/jobs/{job_id}")
    def get_job(request: Request, job_id: int):
        return job_view(job_for(request, job_id), queue_positions(store), teacher=is_teacher(request))

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(request: Request, job_id: int):
        job_for(request, job_id)
        state = store.request_cancel(job_id)
        dispatcher.wake()
        return {"id": job_id, "state": state}

    @app.get("/api/jobs/{job_id}/report.html")
    def report(request: Request, job_id: int):
        return _file(Path(job_for(request, job_id)["out_dir"]) / "report.html", "text/html", None)

    @app.get("/api/jobs/{job_id}/scene.ply")
    def ply(request: Request, job_id: int):
        job = job_for(request, job_id)
        return _file(Path(job["out_dir"]) / "scene.ply", "application/octet-stream",
                     f"splatkit_job{job_id}.ply")

    @app.get("/api/jobs/{job_id}/previews/{name}")
    def preview(request: Request, job_id: int, name: str):
        out = Path(job_for(request, job_id)["out_dir"])
        if name not in previews(out):  # only names from the folder listing: no paths
            raise HTTPException(404, "No such preview.")
        return _file(out / "previews" / name, "image/png", None)

    @app.get("/api/jobs/{job_id}/unreal/{plugin}.zip")
    def unreal(request: Request, job_id: int, plugin: str):
        job = job_for(request, job_id)
        if job["state"] != "done":
            raise HTTPException(409, "The job has not finished yet.")
        try:
            path = unreal_zip(job, plugin)
        except UserError as e:
            raise HTTPException(400, str(e)) from None
        return _file(path, "application/zip", f"splatkit_job{job_id}_{plugin}.zip")

    # -- the viewer (splatkit/viewer's page, per job) ---------------------------------------
    @app.get("/jobs/{job_id}/view/")
    def view_page(request: Request, job_id: int):
        job_for(request, job_id)
        return HTMLResponse((VIEWER_STATIC / "index.html").read_text())

    @app.get("/jobs/{job_id}/view/scene.ply")
    def view_ply(request: Request, job_id: int):
        out = Path(job_for(request, job_id)["out_dir"])
        return _file(out / "scene.ply", "application/octet-stream", None)

    @app.get("/jobs/{job_id}/view/cameras.json")
    def view_cameras(request: Request, job_id: int):
        from ..viewer.cameras import cameras_payload

        return JSONResponse(cameras_payload(Path(job_for(request, job_id)["out_dir"])))

    @app.get("/jobs/{job_id}/view/static/{path:path}")
    def view_static(request: Request, job_id: int, path: str):
        job_for(request, job_id)
        root = VIEWER_STATIC.resolve()
        p = (root / path).resolve()
        if root not in p.parents or not p.is_file():
            raise HTTPException(404, "Not found.")
        ctype = "text/javascript" if p.suffix in (".js", ".mjs") else None
        return FileResponse(p, media_type=ctype)

    # -- teacher --------------------------------------------------------------------------
    @app.post("/api/teacher/login")
    async def teacher_login(request: Request):
        body = await _body(request)
        tok = str(body.get("token", ""))
        if not hmac.compare_digest(tok.encode(), token.encode()):
            raise HTTPException(403, "Wrong teacher token (it was printed when the server started).")
        resp = JSONResponse({"ok": True})
        resp.set_cookie(TEACHER_COOKIE, tok, httponly=True, samesite="strict", max_age=7 * 86400)
        return resp

    @app.get("/api/teacher/overview")
    def overview(request: Request):
        need_teacher(request)
        pos = queue_positions(store)
        jobs = [job_view(j, pos, teacher=True) for j in store.jobs()]
        st = store.settings()
        return {"class_code": st["class_code"], "settings": {k: int(st[k]) for k in
                ("jobs_per_student", "jobs_per_gpu", "cpus_per_job", "paused")},
                "students": store.students(), "jobs": jobs, "cluster": dispatcher.cluster,
                "ray_error": dispatcher.error, "running": len(dispatcher.inflight)}

    @app.post("/api/teacher/jobs/{job_id}/cancel")
    def teacher_cancel(request: Request, job_id: int):
        need_teacher(request)
        if store.job(job_id) is None:
            raise HTTPException(404, "No such job.")
        state = store.request_cancel(job_id)
        dispatcher.wake()
        return {"id": job_id, "state": state}

    @app.post("/api/teacher/jobs/{job_id}/rerun")
    async def teacher_rerun(request: Request, job_id: int):
        need_teacher(request)
        body = await _body(request)
        job = store.job(job_id)
        if job is None:
            raise HTTPException(404, "No such job.")
        preset = str(body.get("preset") or job["preset"])
        if preset not in PRESETS:
            raise HTTPException(400, f"Unknown preset {preset!r}.")
        new = store.add_job(job["student_id"], preset, job["photos_dir"], data / "jobs",
                            note=f"re-run of job {job_id} ({preset})", rerun_of=job_id)
        dispatcher.wake()
        return job_view(new, queue_positions(store), teacher=True)

    @app.post("/api/teacher/settings")
    async def teacher_settings(request: Request):
        need_teacher(request)
        body = await _body(request)
        for key, lo, hi in (("jobs_per_student", 1, 100), ("jobs_per_gpu", 1, 16), ("cpus_per_job", 1, 256),
                            ("paused", 0, 1)):
            if key in body:
                try:
                    v = int(body[key])
                except (TypeError, ValueError):
                    raise HTTPException(400, f"{key} must be a whole number.") from None
                if not lo <= v <= hi:
                    raise HTTPException(400, f"{key} must be between {lo} and {hi}.")
                store.set_setting(key, v)
        if body.get("class_code"):
            store.set_setting("class_code", str(body["class_code"]).strip().upper()[:20])
        dispatcher._capacity_t = 0.0  # re-read the limits now
        dispatcher.wake()
        return overview(request)

    return app


async def _body(request: Request) -> dict:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(400, "The request body is not valid JSON.") from None
        return body if isinstance(body, dict) else {}
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _file(path: Path, media_type: str, download_name: str | None):
    if not path.is_file():
        raise HTTPException(404, "Not there (yet).")
    return FileResponse(path, media_type=media_type, filename=download_name)


def _store_upload(uploads: list[UploadFile], dest: Path, limits: UploadLimits, data: Path) -> str:
    """Spool each uploaded file to disk, then check them all (:func:`save_upload`)."""
    tmp_root = data / "tmp"
    tmp_root.mkdir(exist_ok=True)
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
