"""Who is asking, and may they: students' seats, the teacher's session, cross-site requests.

* Students: the token of their seat (:meth:`~.store.Store.join`) in an HttpOnly, SameSite=Strict
  cookie (``splatkit_student``) or the header ``X-Student-Token``; the database keeps only its hash.
* The teacher signs in with the teacher token (``DATA/teacher_token``, mode 600, or
  ``--teacher-token``) and gets a session cookie (``splatkit_teacher``) holding an expiry time and
  an HMAC of it under a key derived from the teacher token and a server secret
  (``DATA/secret``): never the token itself. Scripts may send the token as ``X-Teacher-Token``.
* :class:`SameOrigin` (ASGI middleware): a state-changing request (POST, PUT, PATCH, DELETE) whose
  ``Origin`` (or, without it, ``Referer``) names another site or port is refused (403). Browsers
  send ``Origin`` with every cross-origin POST, so a page on another port of the same host cannot
  act with the student's or teacher's cookies; programs that send neither header must still carry
  a token.
* :class:`SecurityHeaders`: no page may be framed (``X-Frame-Options: DENY``, CSP
  ``frame-ancestors 'none'``), no content-type sniffing, no referrer to other sites.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import JSONResponse

STUDENT_COOKIE, TEACHER_COOKIE = "splatkit_student", "splatkit_teacher"
TEACHER_SESSION_S = 7 * 86400
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def secret_file(path: Path, given: str | None = None, nbytes: int = 16) -> str:
    """``given``, else the secret kept in ``path`` (made once, mode 600)."""
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    tok = secrets.token_urlsafe(nbytes)
    path.touch(mode=0o600)
    path.write_text(tok + "\n")
    return tok


class TeacherAuth:
    """The teacher token and the session cookies made from it."""

    def __init__(self, token: str, server_secret: str):
        self._token = token.encode()
        self._key = hashlib.sha256(b"splatkit-teacher-session\0" + server_secret.encode() + b"\0"
                                   + self._token).digest()

    def token_ok(self, tok: str) -> bool:
        return bool(tok) and hmac.compare_digest(tok.encode(), self._token)

    def new_session(self) -> str:
        expiry = str(int(time.time()) + TEACHER_SESSION_S)
        nonce = secrets.token_urlsafe(8)
        return f"{expiry}.{nonce}.{self._mac(expiry, nonce)}"

    def session_ok(self, cookie: str) -> bool:
        parts = (cookie or "").split(".")
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < time.time():
            return False
        return hmac.compare_digest(parts[2], self._mac(parts[0], parts[1]))

    def _mac(self, expiry: str, nonce: str) -> str:
        return hmac.new(self._key, f"{expiry}.{nonce}".encode(), hashlib.sha256).hexdigest()

    def is_teacher(self, request: Request) -> bool:
        return (self.session_ok(request.cookies.get(TEACHER_COOKIE, ""))
                or self.token_ok(request.headers.get("x-teacher-token", "")))


def ctx(request: Request):
    return request.app.state.ctx


def student(request: Request) -> dict | None:
    tok = request.cookies.get(STUDENT_COOKIE) or request.headers.get("x-student-token", "")
    return ctx(request).store.student_by_token(tok)


def is_teacher(request: Request) -> bool:
    return ctx(request).auth.is_teacher(request)


def need_student(request: Request) -> dict:
    s = student(request)
    if s is None:
        raise HTTPException(401, "Join the class first (class code and your name).")
    return s


def need_teacher(request: Request) -> None:
    if not is_teacher(request):
        raise HTTPException(403, "Teacher sign-in required.")


def job_for(request: Request, job_id: int) -> dict:
    """The job, if the caller may see it: the teacher any, a student only their own (404)."""
    job = ctx(request).store.job(job_id)
    if is_teacher(request):
        if job is None:
            raise HTTPException(404, "No such job.")
        return job
    s = need_student(request)
    if job is None or job["student_id"] != s["id"]:
        raise HTTPException(404, "No such job among yours.")
    return job


def client_key(request: Request) -> str:
    return request.client.host if request.client else "?"


def _same_origin(url: str, host: str) -> bool:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


class SameOrigin:
    """ASGI middleware: refuse state-changing requests sent by a page of another origin."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in UNSAFE:
            h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            src = h.get("origin") or h.get("referer")
            if src is not None and not _same_origin(src, h.get("host", "")):
                resp = JSONResponse({"detail": "Refused: this request came from another web page "
                                               f"({src[:80]}), not from this server's own pages."},
                                    status_code=403)
                return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: headers on every response (no framing, no sniffing, no referrer)."""

    HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            return await send(message)

        return await self.app(scope, receive, with_headers)
