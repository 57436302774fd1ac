"""The classroom web server (FastAPI): student and teacher pages, the JSON API, downloads.

Routes: :mod:`.routes_student` (pages, joining, uploads, a student's own jobs and downloads) and
:mod:`.routes_teacher` (sign-in, overview, limits, class code, students, every result). Who may do
what: :mod:`.auth`; body, attempt, time and preset limits: :mod:`.limits`. State lives in
``DATA/splatkit.db`` (:mod:`.store`); jobs run on Ray (:mod:`.runner`); uploads are checked by
:mod:`.uploads`. The security model is described in ``docs/classroom.md``.
"""

from __future__ import annotations

import shutil
import stat
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from .auth import SameOrigin, SecurityHeaders, TeacherAuth, secret_file
from .limits import BodyLimit, GateMiddleware, TokenGate
from .runner import Dispatcher
from .store import Store
from .uploads import UploadLimits


@dataclass
class Context:
    """What the routes share (``app.state.ctx``)."""

    data: Path
    store: Store
    dispatcher: Dispatcher
    auth: TeacherAuth
    limits: UploadLimits
    gate: TokenGate
    teacher_token_path: Path
    made_private: bool = False  # the data folder was readable by others and was made private


def create_app(data_dir: Path, teacher_token: str | None = None, ray_address: str | None = None,
               ray_cpus: int | None = None, limits: UploadLimits | None = None,
               class_code: str | None = None, job_fn: str | None = None) -> FastAPI:
    from . import routes_student, routes_teacher, routes_wall

    data = Path(data_dir).resolve()
    if not data.exists():
        data.mkdir(parents=True, mode=0o700)
    made_private = private_folder(data)
    store = Store(data / "splatkit.db")
    if class_code:
        store.set_class_code(class_code.strip().upper())
    requeued = store.requeue_running()
    sweep_orphans(data, store)
    token = secret_file(data / "teacher_token", teacher_token)
    gate = TokenGate()
    ctx = Context(data=data, store=store, limits=limits or UploadLimits(),
                  dispatcher=Dispatcher(store, ray_address=ray_address, ray_cpus=ray_cpus, job_fn=job_fn),
                  auth=TeacherAuth(token, store, gate), gate=gate,
                  teacher_token_path=data / "teacher_token", made_private=made_private)

    @asynccontextmanager
    async def lifespan(app):
        ctx.dispatcher.start()
        yield
        ctx.dispatcher.shutdown()

    app = FastAPI(title="splatkit classroom", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, upload_bytes=int(ctx.limits.max_request_mb * 1e6))
    app.add_middleware(GateMiddleware, gate=gate)
    app.add_middleware(SameOrigin)
    app.add_middleware(SecurityHeaders)
    add_error_handlers(app, data)
    app.include_router(routes_student.router)
    app.include_router(routes_teacher.router)
    app.include_router(routes_wall.router)
    app.state.ctx, app.state.requeued = ctx, requeued
    return app


def add_error_handlers(app: FastAPI, data: Path) -> None:
    """Every error the pages show loses the server's paths (:func:`~.jobs.scrub`), whichever route
    raised it; an unexpected failure says so in plain words (the trace goes to the log)."""
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.responses import JSONResponse

    from .jobs import scrub

    @app.exception_handler(StarletteHTTPException)
    async def scrubbed(request, exc):
        return JSONResponse({"detail": scrub(exc.detail, data)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        traceback.print_exception(exc)
        return JSONResponse({"detail": "Something went wrong on the server (your files are safe). "
                                       "Try again; if it goes on, tell your teacher."}, status_code=500)


def private_folder(data: Path) -> bool:
    """Make the data folder readable by the server's user only (students' photos, the database):
    also a folder the teacher made before (mode 755 by default). True if it was changed."""
    mode = stat.S_IMODE(data.stat().st_mode)
    if mode & 0o077:
        data.chmod(mode & 0o700 | 0o700)
        return True
    return False


def sweep_orphans(data: Path, store: Store) -> list[str]:
    """Remove what a crash mid-upload left: spooled files, and photo folders of no job."""
    shutil.rmtree(data / "tmp", ignore_errors=True)
    used = store.photo_dirs_in_use()
    gone = []
    for d in sorted((data / "uploads").glob("*")) if (data / "uploads").is_dir() else []:
        if str(d) not in used:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone
