"""The server's helper processes end with it, however it ends.

A clean stop (Ctrl-C, SIGTERM) shuts the local Ray down. A killed server (``kill -9``, a crash,
the out-of-memory killer) cannot; Ray's own agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) were measured to outlive it by minutes. So the server starts this small
watchdog first: ``python -m splatkit.serve.reaper`` reads a pipe whose other end only the server
holds, notes the server's descendants (psutil) every second, and when the pipe closes (the server
is gone) ends the ones that are still there (SIGTERM, then SIGKILL after 1 s). It ignores SIGINT and
SIGTERM (a Ctrl-C reaches the whole terminal's process group) and exits after its sweep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

POLL_S = 1.0


class Reaper:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def finish(self, timeout: float = 10.0) -> None:
        """The server is stopping: close the pipe and let the watchdog sweep."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass


def start_reaper() -> Reaper | None:
    """Start the watchdog for this process (None where psutil is missing)."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return None
    proc = subprocess.Popen([sys.executable, "-m", "splatkit.serve.reaper", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    return Reaper(proc)


def _descendants(pid: int, known: dict) -> None:
    import psutil

    try:
        for p in psutil.Process(pid).children(recursive=True):
            if p.pid != os.getpid() and p.pid not in known:
                try:
                    known[p.pid] = p.create_time()
                except psutil.Error:
                    pass
    except psutil.Error:
        pass


def sweep(known: dict, grace_s: float = 1.0) -> list[int]:
    """End the processes in ``known`` (pid -> start time) that still run; returns their pids."""
    import psutil

    alive = []
    for pid, t0 in known.items():
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - t0) < 1e-3:  # the same process, not a reused pid
                alive.append(p)
        except psutil.Error:
            pass
    for p in alive:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=grace_s)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
    return [p.pid for p in alive]


def main(server_pid: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    known: dict[int, float] = {}
    closed = threading.Event()

    def wait_pipe():
        sys.stdin.buffer.read()  # returns when the server's end closes
        closed.set()

    threading.Thread(target=wait_pipe, daemon=True).start()
    while not closed.wait(POLL_S):
        _descendants(server_pid, known)
    time.sleep(0.5)  # a clean shutdown's own ends first
    sweep(known)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
