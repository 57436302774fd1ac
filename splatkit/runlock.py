"""Rule 3 of the run folder (:mod:`splatkit.rundir`): one command at a time.

:class:`RunLock` is an OS lock on ``OUT/.splatkit/lock`` (``fcntl``; ``filelock``'s exclusive lock
on Windows), released by the OS when the process ends. Writers (``train``, ``sfm``, ``export``:
:func:`writing`) take it exclusively, readers (``report``, ``view``: :func:`reading`) shared; a
command that finds the folder busy says who holds it (:func:`busy_message`: a live training run
with its step, :func:`live_step`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from .errors import UserError
from .fileio import write_text_atomic
from .rundir import RunDir


class RunLock:
    """The lock of a run folder for one command: an OS lock on ``.splatkit/lock``, released by
    the OS when the process ends.

    Writers (``train``, ``sfm``, ``export``) take it exclusively: one at a time, and no reader
    meanwhile. Readers (``report``, ``view``) take it shared: any number together, none while a
    writer holds it, so that they never see a run that is being replaced. ``lock.json`` beside it
    names the writer, so that a second command can say who holds it (a live training run, with
    its step) and a lock left by a killed run is recognised when it is taken over.
    """

    def __init__(self, rd: RunDir, command: str, wait_s: float = 0.0, shared: bool = False):
        self.rd, self.command, self.wait_s, self.shared = rd, command, wait_s, shared
        self.taken_over: dict | None = None
        self._fd: int | None = None
        self._lock = None

    @property
    def info_path(self) -> Path:
        return self.rd.lock_info

    def acquire(self) -> RunLock:
        self.rd.meta.mkdir(parents=True, exist_ok=True)
        if not _os_lock(self):
            raise UserError(*busy_message(self.rd, self._holder(), reading=self.shared))
        if self.shared:
            return self
        old = self._holder()
        if old and old.get("pid") != os.getpid():
            self.taken_over = old  # its process is gone: the OS released its lock
        write_text_atomic(self.info_path, json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
             "started": time.time()}))
        return self

    def release(self) -> None:
        if self._fd is None and self._lock is None:
            return
        if not self.shared:
            try:
                self.info_path.unlink(missing_ok=True)
            except OSError:
                pass
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the OS lock
            self._fd = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _holder(self) -> dict | None:
        return self.rd.read_json_object(self.info_path)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _os_lock(lock: RunLock) -> bool:
    """Take the OS lock (shared or exclusive), waiting up to ``lock.wait_s``; False if busy."""
    try:
        import fcntl
    except ImportError:  # Windows: filelock's exclusive lock for readers and writers alike
        from filelock import FileLock, Timeout

        fl = FileLock(str(lock.rd.lock_path), timeout=lock.wait_s)
        try:
            fl.acquire()
        except Timeout:
            return False
        lock._lock = fl
        return True
    fd = os.open(lock.rd.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    mode = (fcntl.LOCK_SH if lock.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + lock.wait_s
    while True:
        try:
            fcntl.flock(fd, mode)
            lock._fd = fd
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(0.1)


@contextlib.contextmanager
def reading(root: Path, command: str):
    """Hold a reader's (shared) lock on ``root`` while the block reads it. A folder splatkit
    cannot lock (read-only media, no ``.splatkit/`` there) is read as it is: no splatkit command
    writes there then."""
    rd = RunDir(Path(root))
    lock = RunLock(rd, command, shared=True)
    try:  # only where splatkit keeps its bookkeeping: a reader never adds it to a user's folder
        if rd.meta.is_dir() and os.access(rd.meta, os.W_OK):
            lock.acquire()
    except OSError:
        pass
    try:
        yield rd
    finally:
        lock.release()


@contextlib.contextmanager
def writing(root: Path, command: str):
    """Hold the writer's (exclusive) lock on ``root`` while the block writes in it."""
    lock = RunLock(RunDir(Path(root)), command).acquire()
    try:
        yield lock.rd
    finally:
        lock.release()


def live_step(rd: RunDir) -> int | None:
    """The last training step the run in ``rd`` reported (the tail of ``events.jsonl``)."""
    try:
        with open(rd.events, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("kind") == "train_step" and isinstance(e.get("step"), int):
            return e["step"]
    return None


def busy_message(rd: RunDir, holder: dict | None, reading: bool = False) -> tuple[str, str]:
    """Who holds ``rd`` (a live training run named as live, with its step) and what to do."""
    if not holder:  # readers only (report, view) hold it
        return (f"{rd.root} is being read by another splatkit command (`splatkit view` or "
                "`splatkit report`).", "Close it (Ctrl-C in its terminal), then run this again.")
    pid, command = holder.get("pid"), str(holder.get("command", "?"))
    since = time.strftime("%H:%M", time.localtime(float(holder.get("started", 0) or 0)))
    if command.split()[0] == "train":
        step = live_step(rd)
        at = f", step {step}" if step is not None else ""
        return (f"Training is running in {rd.root} (`splatkit {command}`, process {pid}{at}, "
                f"since {since}).",
                "Wait for it to finish, or stop it first (Ctrl-C in its terminal; it keeps its "
                "checkpoint).")
    what = {"sfm": "Camera poses are being computed", "export": "An export is being written"}.get(
        command.split()[0], f"`splatkit {command}` is running")
    return (f"{what} in {rd.root} (`splatkit {command}`, process {pid}, since {since}).",
            "Wait for it to finish" + ("." if reading else ", or choose another output folder with -o."))


# --------------------------------------------------------------------------------------------
# The COLMAP project layout: an output folder is one (images/ + sparse/0), and so is an input


__all__ = ["RunLock", "reading", "writing", "busy_message", "live_step"]
