"""Limits of the classroom server: request bodies, join attempts, job time, presets per hardware.

* :class:`BodyLimit` (ASGI middleware): every request body has a limit suited to its endpoint
  (:data:`BODY_LIMITS`; the upload gets ``--max-upload-mb``), checked on ``Content-Length`` and
  again on the bytes as they arrive, so that a large body costs the server no memory: it is
  refused after at most the limit was read.
* :class:`TokenGate`: failed sign-ins (wrong class code, taken name, wrong teacher token) per client
  address in a sliding window; past the limit that address's attempts go one at a time, slowly
  (a right code or token still gets in).
* :func:`job_time_limit_s` and :func:`offered_presets`: what one job may take, by preset and
  hardware (:data:`DEFAULT_JOB_MINUTES`), and which presets students may choose.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from fastapi import HTTPException
from starlette.responses import JSONResponse

from ..config import PRESETS

UPLOAD_PATH = "/api/jobs"
KIB = 1024
#: body limits (bytes) of the endpoints that take a body; every other request gets DEFAULT_BODY
BODY_LIMITS = {"/api/join": 4 * KIB, "/api/teacher/login": 4 * KIB, "/api/teacher/settings": 16 * KIB}
DEFAULT_BODY = 16 * KIB
#: what a refused upload's client may still send before the connection is closed (so that a
#: browser reads the message rather than a reset connection)
DRAIN_BYTES = 64 * 2**20

#: default time limit of one job (minutes) on a cluster with / without GPUs; the teacher page
#: overrides it for every preset ("time limit per job")
DEFAULT_JOB_MINUTES = {
    "gpu": {"tiny": 5, "quick": 20, "standard": 60, "fast": 60, "full": 180},
    "cpu": {"tiny": 10, "quick": 60, "standard": 240, "fast": 480, "full": 720},
}
#: plain words for the presets (the student page's menu)
PRESET_HELP = {
    "tiny": "a one-minute check that the photos work (not a usable scene)",
    "quick": "minutes on a laptop-class computer: the classroom choice",
    "standard": "better detail; up to an hour without a GPU",
    "fast": "near-best detail in a fraction of the time; needs a GPU",
    "full": "best detail; needs a GPU",
}
#: presets made for a GPU: not offered on a CPU-only box unless the teacher allows them
GPU_PRESETS = ("fast", "full")


class BodyLimit:
    """ASGI middleware: refuse request bodies above the endpoint's limit with a 413, reading at
    most the limit (the bytes are counted as they arrive, whatever ``Content-Length`` says)."""

    def __init__(self, app, upload_bytes: int):
        self.app, self.upload = app, upload_bytes

    def limit(self, path: str) -> int:
        return self.upload if path == UPLOAD_PATH else BODY_LIMITS.get(path, DEFAULT_BODY)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        msg = (f"The upload is larger than {limit / 1e6:g} MB. Send fewer or smaller photos."
               if scope["path"] == UPLOAD_PATH else "The request is too large.")
        cl = dict(scope["headers"]).get(b"content-length")
        if cl is not None and (not cl.isdigit() or int(cl) > limit):
            await _drain(receive, min(int(cl) if cl.isdigit() else 0, limit + DRAIN_BYTES)
                         if scope["path"] == UPLOAD_PATH else 0)
            resp = JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})
            return await resp(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            m = await receive()
            seen += len(m.get("body", b""))
            if seen > limit:
                raise HTTPException(413, msg, headers={"Connection": "close"})
            return m

        return await self.app(scope, counted, send)


async def _drain(receive, budget: int) -> None:
    """Read and drop up to ``budget`` bytes of the body."""
    drained = 0
    while drained < budget:
        m = await receive()
        drained += len(m.get("body", b""))
        if m["type"] != "http.request" or not m.get("more_body"):
            break


class TokenGate:
    """ASGI middleware and bookkeeping: wrong secrets (class codes, teacher tokens) are slowed per
    client address, never refused, so that the right one always gets in.

    Each request that presents a secret (``/api/join``, ``/api/teacher/login``, or any request
    with an ``X-Teacher-Token`` header) belongs to a *lane*: ``join`` or ``teacher``. While a
    client has fewer than ``FREE`` failures in the last ``window_s`` (its requests under way
    counting as failures once one failed), and fewer than ``BURST`` requests under way, its
    requests pass at once. Past that, its requests of that lane go one at a time, each after
    ``delay_s``: at most one guess per ``delay_s`` from one address, however many it sends in
    parallel (about 400 a second before). A right secret waits its turn and is then accepted; a
    teacher's session cookie is never slowed. A success clears the client's failures."""

    FREE = {"join": 10, "teacher": 5}
    BURST = {"join": 64, "teacher": 16}  # a whole class joining at once behind one proxy passes
    PATHS = {"/api/join": "join", "/api/teacher/login": "teacher"}

    def __init__(self, app=None, delay_s: float = 1.0, window_s: float = 60.0):
        self.app, self.delay, self.window = app, delay_s, window_s
        self._fails: dict[tuple[str, str], deque] = {}
        self._busy: dict[tuple[str, str], int] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._lock = threading.Lock()

    def _recent(self, key) -> deque:
        q = self._fails.setdefault(key, deque())
        while q and q[0] < time.monotonic() - self.window:
            q.popleft()
        return q

    def failed(self, lane: str, who: str) -> None:
        with self._lock:
            self._recent((lane, who)).append(time.monotonic())
            if len(self._fails) > 10_000:  # forget quiet addresses
                for k in [k for k, v in self._fails.items() if not v and not self._busy.get(k)]:
                    del self._fails[k]
                    self._locks.pop(k, None)

    def succeeded(self, lane: str, who: str) -> None:
        with self._lock:
            self._fails.pop((lane, who), None)

    def failures(self, lane: str, who: str) -> int:
        with self._lock:
            return len(self._recent((lane, who)))

    def lane(self, scope) -> str | None:
        if scope["type"] != "http":
            return None
        if scope["path"] in self.PATHS:
            return self.PATHS[scope["path"]]
        if any(k == b"x-teacher-token" for k, _ in scope["headers"]):
            return "teacher"
        return None

    async def __call__(self, scope, receive, send):
        lane = self.lane(scope)
        if lane is None:
            return await self.app(scope, receive, send)
        key = (lane, scope["client"][0] if scope.get("client") else "?")
        with self._lock:
            fails, busy = len(self._recent(key)), self._busy.get(key, 0)
            # requests under way count as failures once one failed (a burst of guesses), or when
            # there are very many (a first burst); a script's few parallel requests pass
            slow = fails + (busy if fails else 0) >= self.FREE[lane] or busy >= self.BURST[lane]
            self._busy[key] = self._busy.get(key, 0) + 1
            lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            if not slow:
                return await self.app(scope, receive, send)
            async with lock:  # one at a time from this address, each after the delay
                await asyncio.sleep(self.delay)
                return await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._busy[key] -= 1


class GateMiddleware:
    """Starlette builds middleware from a class: this one runs a :class:`TokenGate` made before
    (the routes record failures on the same instance)."""

    def __init__(self, app, gate: TokenGate):
        gate.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send):
        return await self.gate(scope, receive, send)


def hardware(cluster: dict) -> str:
    return "gpu" if (cluster or {}).get("gpus", 0) >= 1 else "cpu"


def job_time_limit_s(preset: str, cluster: dict, teacher_minutes: float) -> float:
    """Seconds one job may run (all its attempts together)."""
    if teacher_minutes > 0:
        return teacher_minutes * 60.0
    table = DEFAULT_JOB_MINUTES[hardware(cluster)]
    return table.get(preset, max(table.values())) * 60.0


def offered_presets(cluster: dict, allow_full_on_cpu: bool) -> list[str]:
    """The presets students may choose: all where the cluster has a GPU; without one, all but the
    GPU presets (``full``: 30,000 steps at full resolution, many hours on a CPU; ``fast``) unless
    the teacher allows them."""
    names = [p for p in ("tiny", "quick", "standard", "fast", "full") if p in PRESETS]
    names += sorted(set(PRESETS) - set(names))
    if hardware(cluster) == "cpu" and not allow_full_on_cpu:
        names = [p for p in names if p not in GPU_PRESETS]
    return names
