"""Who is asking, and may they: students' seats, the teacher's session, cross-site requests.

* Students: the token of their seat (:meth:`~.store.Store.join`) in an HttpOnly, SameSite=Strict
  cookie (``splatkit_student``) or the header ``X-Student-Token``; the database keeps only its hash.
* The teacher signs in with the teacher token (``DATA/teacher_token``, mode 600, or
  ``--teacher-token``, refused when weak: :func:`weak_token`) and gets a session cookie
  (``splatkit_teacher``): a random value whose SHA-256 is a row of the database's ``sessions``
  (7 days), never the token itself. Signing out deletes that row; the teacher may end every
  session. Scripts may send the token as ``X-Teacher-Token``. Wrong tokens and class codes are
  slowed per client address (:class:`~.limits.TokenGate`): never refused, so a right one always
  gets in.
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
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import JSONResponse

STUDENT_COOKIE, TEACHER_COOKIE = "splatkit_student", "splatkit_teacher"
TEACHER_SESSION_S = 7 * 86400
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


#: a chosen teacher token must have at least this many characters, this many different ones
MIN_TOKEN_CHARS, MIN_TOKEN_DISTINCT = 12, 6
#: words people choose as passwords: with only digits or signs around them, a token is refused
COMMON_WORDS = {"", "password", "passwort", "motdepasse", "qwerty", "qwertz", "azerty", "letmein", "admin",
                "teacher", "secret", "classroom", "splatkit", "welcome", "abcdef", "abcdefgh"}


def weak_token(token: str) -> str | None:
    """Why a chosen teacher token is too easy to guess, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"it has {len(token)} characters (at least {MIN_TOKEN_CHARS})"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return f"it has only {len(set(token))} different characters (at least {MIN_TOKEN_DISTINCT})"
    letters = "".join(ch for ch in token.lower() if ch.isalpha())
    if letters in COMMON_WORDS or not letters and token.isdigit():
        return "it is a common word (or only digits) with digits or signs added"
    return None


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
    """The teacher token, and the sessions (cookies) kept in the store."""

    def __init__(self, token: str, store, gate=None):
        self._token = hashlib.sha256(token.encode()).digest()
        self.store, self.gate = store, gate

    def token_ok(self, tok: str) -> bool:
        return bool(tok) and hmac.compare_digest(hashlib.sha256(tok.encode()).digest(), self._token)

    def new_session(self) -> str:
        cookie = secrets.token_urlsafe(32)
        self.store.add_session(cookie, TEACHER_SESSION_S)
        return cookie

    def session_ok(self, cookie: str) -> bool:
        return self.store.session_ok(cookie)

    def is_teacher(self, request: Request) -> bool:
        """A live session cookie, or the right ``X-Teacher-Token`` (a wrong one counts as a failed
        attempt of this client, once per request)."""
        known = getattr(request.state, "is_teacher", None)
        if known is not None:
            return known
        ok = self.session_ok(request.cookies.get(TEACHER_COOKIE, ""))
        header = request.headers.get("x-teacher-token", "")
        if not ok and header:
            ok = self.token_ok(header)
            if self.gate is not None:
                (self.gate.succeeded if ok else self.gate.failed)("teacher", client_key(request))
        request.state.is_teacher = ok
        return ok


def ctx(request: Request):
    return request.app.state.ctx


SIGNED_OUT = {
    "code": "Your teacher changed the class code, which signs everyone out. Type the new code and "
            "your name to get back to your seat: your jobs are kept.",
    "removed": "Your teacher removed this seat. To go on, join again with the class code and your name.",
    "merged": "Your teacher merged this seat into {name}'s, with its jobs. Join as {name} (on "
              "another computer, ask your teacher to let you back in).",
    "old_class": "A new class started on this server. Join it with the class code and your name.",
}


def _student_token(request: Request) -> str:
    return request.cookies.get(STUDENT_COOKIE) or request.headers.get("x-student-token", "")


def student(request: Request) -> dict | None:
    return ctx(request).store.student_by_token(_student_token(request))


def is_teacher(request: Request) -> bool:
    return ctx(request).auth.is_teacher(request)


def need_student(request: Request) -> dict:
    """The caller's signed-in seat, else 401 saying why they are signed out."""
    store = ctx(request).store
    s = store.seat_by_token(_student_token(request))
    if s is None:
        raise HTTPException(401, "Join the class first (class code and your name).")
    why = s["signed_out"]
    if why is not None:
        into = store.student(s["merged_into"]) if s["merged_into"] else None
        raise HTTPException(401, SIGNED_OUT[why].format(name=into["name"] if into else "another seat"),
                            headers={"X-Signed-Out": why})
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
