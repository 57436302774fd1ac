"""Helpers for the classroom server tests: a real ``splatkit serve`` in a subprocess on loopback."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TEACHER = "teacher-secret"
CODE = "CLASS1"


def need_serve_deps():
    for mod in ("fastapi", "uvicorn", "ray", "multipart", "requests", "psutil"):
        pytest.importorskip(mod, reason=f"{mod} is not installed: pip install -e '.[serve,test]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``splatkit serve`` on 127.0.0.1:<free port> with ``data`` as its data folder."""

    def __init__(self, data: Path, env: dict | None = None, args: list[str] | None = None,
                 teacher_token: bool = True):
        self.data, self.env, self.args = Path(data), env or {}, args or []
        self.token_args = ["--teacher-token", TEACHER] if teacher_token else []
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0, wait_ray: bool = True) -> Server:
        """Start and wait until the server answers (and, with ``wait_ray``, its Ray is up)."""
        import requests

        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", **self.env}
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.data.parent / f"server-{self.port}-{time.time():.0f}.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "splatkit",
                "serve",
                "--port",
                str(self.port),
                "--data",
                str(self.data),
                *self.token_args,
                "--class-code",
                CODE,
                *self.args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                h = requests.get(self.url + "/api/health", headers={"X-Teacher-Token": TEACHER},
                                 timeout=2).json()
                if h.get("ray_error"):
                    self.stop()
                    raise RuntimeError(h["ray_error"])
                if h.get("cluster") or not wait_ray:
                    return self
            except requests.RequestException:  # not listening yet, or busy starting Ray
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not start: {Path(self.log.name).read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server's whole process group (server, its embedded Ray)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, kill_group: bool = True) -> None:
        """SIGINT (a clean stop), then, with ``kill_group``, SIGKILL to whatever is left in the
        server's process group (the embedded Ray's processes share it)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            if kill_group:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError):
            pass
        if getattr(self, "log", None):
            self.log.close()

    def student(self, name: str):
        import requests

        s = requests.Session()
        r = s.post(self.url + "/api/join", json={"class_code": CODE, "name": name}, timeout=10)
        r.raise_for_status()
        return s

    def teacher(self):
        import requests

        s = requests.Session()
        s.headers["X-Teacher-Token"] = TEACHER
        return s

    def wait_jobs(self, sess, ids, states=("done", "failed", "cancelled"), timeout=120.0) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            jobs = {i: sess.get(f"{self.url}/api/jobs/{i}", timeout=10).json() for i in ids}
            if all(j["state"] in states for j in jobs.values()):
                return jobs
            time.sleep(0.5)
        raise AssertionError(f"jobs not finished in {timeout}s: {jobs}")


def jpeg_bytes(size=(64, 48), color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def small_photos(src: Path, n: int = 8, size: int = 300) -> list[tuple[str, bytes]]:
    """The first ``n`` photos of ``src``, downscaled to ``size`` px, as JPEG bytes."""
    from PIL import Image

    out = []
    for p in sorted(src.glob("*.jpg"))[:n]:
        im = Image.open(p)
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        out.append((p.name, buf.getvalue()))
    return out


def descendants(pid: int) -> dict[int, float]:
    """The processes below ``pid`` (pid -> start time)."""
    import psutil

    out = {}
    for p in psutil.Process(pid).children(recursive=True):
        try:
            out[p.pid] = p.create_time()
        except psutil.Error:
            pass
    return out


def still_running(procs: dict[int, float], timeout: float) -> list[int]:
    """The processes of ``procs`` that are still there (not zombies) after up to ``timeout`` s."""
    import psutil

    t0 = time.time()
    while True:
        alive = []
        for pid, t in procs.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - t) < 1e-3 and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                pass
        if not alive or time.time() - t0 > timeout:
            return alive
        time.sleep(0.5)


STUB_ENV = {"SPLATKIT_SERVE_JOB_FN": "splatkit.serve.testing:stub_job"}


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
