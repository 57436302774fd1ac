"""The classroom server's state: one SQLite file (stdlib ``sqlite3``) in the data folder.

Tables: ``settings`` (class code, limits), ``students`` (name, token), ``jobs`` (one row per
training job: its photos folder, output folder, state and timings). A job's state is one of
``queued -> running -> done | failed | cancelled``; a server restart puts ``running`` jobs back to
``queued`` (they resume from their last checkpoint), so nothing is lost.

Every method takes the store's lock and commits before returning: the web handlers (threads) and
the dispatcher thread share one connection.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS students (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_dispatch REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    student_id INTEGER NOT NULL REFERENCES students(id),
    preset TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    photos_dir TEXT NOT NULL,
    out_dir TEXT NOT NULL DEFAULT '',
    upload_note TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    dispatch_seq INTEGER,
    node_id TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    rerun_of INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""

DEFAULTS = {
    "jobs_per_student": "3",  # queued + running jobs one student may have at a time
    "jobs_per_gpu": "1",  # jobs sharing one GPU (num_gpus = 1/this per job)
    "cpus_per_job": "1",  # CPUs asked of Ray per job on machines without a GPU
    "paused": "0",  # 1: the teacher holds the queue (nothing new starts)
}


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        with self._lock:
            for k, v in DEFAULTS.items():
                self._db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (k, v))
            if self.setting("class_code") is None:
                code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
                self.set_setting("class_code", code)

    # -- settings ---------------------------------------------------------------------------
    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def int_setting(self, key: str) -> int:
        return int(self.setting(key) or DEFAULTS[key])

    def set_setting(self, key: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, str(value)))

    def settings(self) -> dict:
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute("SELECT key, value FROM settings")}

    # -- students ---------------------------------------------------------------------------
    def add_student(self, name: str) -> dict:
        token = secrets.token_urlsafe(24)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO students (name, token, created) VALUES (?, ?, ?)", (name, token, time.time())
            )
            return self.student(cur.lastrowid)

    def student(self, sid: int) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM students WHERE id=?", (sid,)).fetchone()
        return dict(row) if row else None

    def student_by_token(self, token: str) -> dict | None:
        if not token:
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM students WHERE token=?", (token,)).fetchone()
        return dict(row) if row else None

    def students(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT id, name, created FROM students ORDER BY id")]

    # -- jobs -------------------------------------------------------------------------------
    def add_job(self, student_id: int, preset: str, photos_dir: str, jobs_root: Path, note: str = "",
                rerun_of: int | None = None) -> dict:
        """A queued job; its output folder is ``jobs_root/<id>/out`` (set in the same locked step)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO jobs (student_id, preset, photos_dir, upload_note, created, rerun_of) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (student_id, preset, photos_dir, note, time.time(), rerun_of),
            )
            jid = cur.lastrowid
            self._update(jid, out_dir=str(Path(jobs_root) / str(jid) / "out"))
            return self.job(jid)

    def job(self, job_id: int) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT jobs.*, students.name AS student_name FROM jobs "
                "JOIN students ON students.id = jobs.student_id WHERE jobs.id=?", (job_id,)
            ).fetchone()
        return dict(row) if row else None

    def jobs(self, student_id: int | None = None, states: tuple[str, ...] | None = None) -> list[dict]:
        q = ("SELECT jobs.*, students.name AS student_name FROM jobs "
             "JOIN students ON students.id = jobs.student_id WHERE 1=1")
        args: list = []
        if student_id is not None:
            q += " AND student_id=?"
            args.append(student_id)
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        with self._lock:
            return [dict(r) for r in self._db.execute(q + " ORDER BY jobs.id", args)]

    def count_active(self, student_id: int) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE student_id=? AND state IN ('queued','running')",
                (student_id,),
            ).fetchone()[0]

    def last_dispatch(self) -> dict[int, float | None]:
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute("SELECT id, last_dispatch FROM students")}

    def mark_running(self, job_id: int) -> dict:
        """queued -> running (attempts + 1, a dispatch sequence number); returns the job."""
        now = time.time()
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(dispatch_seq), 0) + 1 FROM jobs").fetchone()[0]
            self._db.execute(
                "UPDATE jobs SET state='running', started=?, attempts=attempts+1, dispatch_seq=? "
                "WHERE id=? AND state='queued'", (now, seq, job_id),
            )
            job = self.job(job_id)
            self._db.execute("UPDATE students SET last_dispatch=? WHERE id=?", (now, job["student_id"]))
            return job

    def finish(self, job_id: int, state: str, error: str | None = None, node_id: str | None = None) -> None:
        assert state in FINISHED or state == "queued"
        fields = {"state": state, "error": error}
        if state in FINISHED:
            fields["finished"] = time.time()
        if node_id:
            fields["node_id"] = node_id
        self._update(job_id, **fields)

    def set_node(self, job_id: int, node_id: str) -> None:
        self._update(job_id, node_id=node_id)

    def request_cancel(self, job_id: int) -> str:
        """Cancel a job: queued ones at once, running ones when their task stops. Returns the state."""
        with self._lock:
            job = self.job(job_id)
            if job["state"] == "queued":
                self._update(job_id, state="cancelled", finished=time.time(), cancel_requested=1)
                return "cancelled"
            if job["state"] == "running":
                self._update(job_id, cancel_requested=1)
            return job["state"]

    def requeue_running(self) -> list[int]:
        """After a restart: jobs left ``running`` by the previous server go back to the queue."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state='running'")]
            self._db.execute("UPDATE jobs SET state='queued' WHERE state='running'")
            self._db.execute(
                "UPDATE jobs SET state='cancelled', finished=? WHERE state='queued' AND cancel_requested=1",
                (time.time(),),
            )
        return ids

    def _update(self, job_id: int, **fields) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def fair_order(queued: list[dict], last_dispatch: dict[int, float | None]) -> list[int]:
    """Round-robin order of the queued jobs: one job per student per round.

    Students are visited in the order of their last dispatch (never served first, then the one served
    longest ago; ties by their oldest queued job); within a student, jobs keep their submission order.
    ``queued`` is a list of job rows (``id``, ``student_id``); returns job ids, next to run first.
    """
    per: dict[int, list[int]] = {}
    for j in sorted(queued, key=lambda j: j["id"]):
        per.setdefault(j["student_id"], []).append(j["id"])
    students = sorted(per, key=lambda s: (last_dispatch.get(s) or 0.0, per[s][0]))
    order: list[int] = []
    rnd = 0
    while len(order) < len(queued):
        for s in students:
            if rnd < len(per[s]):
                order.append(per[s][rnd])
        rnd += 1
    return order
