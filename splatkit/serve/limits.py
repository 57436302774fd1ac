"""Limits of the classroom server: request bodies, join attempts, job time, presets per hardware.

* :class:`BodyLimit` (ASGI middleware): every request body has a limit suited to its endpoint
  (:data:`BODY_LIMITS`; the upload gets ``--max-upload-mb``), checked on ``Content-Length`` and
  again on the bytes as they arrive, so that a large body costs the server no memory: it is
  refused after at most the limit was read.
* :class:`Attempts`: failed sign-ins (wrong class code, taken name, wrong teacher token) per client
  address in a sliding window; past the limit every attempt from that address waits.
* :func:`job_time_limit_s` and :func:`offered_presets`: what one job may take, by preset and
  hardware (:data:`DEFAULT_JOB_MINUTES`), and which presets students may choose.
"""

from __future__ import annotations

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


class Attempts:
    """Failed attempts per key (a client address) in a sliding window of ``window_s``."""

    def __init__(self, limit: int = 10, window_s: float = 60.0):
        self.limit, self.window = limit, window_s
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque:
        q = self._seen.setdefault(key, deque())
        while q and q[0] < time.monotonic() - self.window:
            q.popleft()
        return q

    def check(self, key: str) -> None:
        """Refuse (429) a key with ``limit`` failures in the window."""
        with self._lock:
            q = self._recent(key)
            if len(q) >= self.limit:
                wait = int(q[0] + self.window - time.monotonic()) + 1
                raise HTTPException(429, f"Too many wrong tries from this computer: wait {wait} s "
                                         "and check the code with your teacher.",
                                    headers={"Retry-After": str(wait)})

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key).append(time.monotonic())
            if len(self._seen) > 10_000:  # forget quiet addresses
                for k in [k for k, v in self._seen.items() if not v]:
                    del self._seen[k]


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
