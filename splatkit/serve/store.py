"""The classroom server's state: one SQLite file (stdlib ``sqlite3``) in the data folder.

Tables: ``settings`` (class code, limits), ``students`` (one seat: a name in a class, the SHA-256
of its token), ``jobs`` (one row per training job: its photos folder, output folder, state and
timings). A job's state is one of ``queued -> running -> done | failed | cancelled``; a server
restart puts ``running`` jobs back to ``queued`` (they resume from their last checkpoint and keep
their place: :func:`fair_order` starts them first), so nothing is lost.

A seat is one person: a name (compared case- and space-insensitively) is unique within a class
code; joining again under a taken name needs that seat's token or the teacher's leave
(``rejoin_ok``). Changing the class code signs every seat of the old code out. The file is created
with mode 600 (students' tokens are kept only as hashes).

Every method takes the store's lock and commits before returning: the web handlers (threads) and
the dispatcher thread share one connection.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
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
#: columns added after the first release: (table, column, SQL type and default)
MIGRATIONS = [
    ("students", "class_code", "TEXT"),
    ("students", "name_key", "TEXT"),
    ("students", "rejoin_ok", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "run_seconds", "REAL NOT NULL DEFAULT 0"),
    ("jobs", "video_fps", "REAL"),
    ("jobs", "purged", "INTEGER NOT NULL DEFAULT 0"),
]
HASHED = "sha256:"

DEFAULTS = {
    "jobs_per_student": "3",  # queued + running jobs one student may have at a time
    "jobs_per_gpu": "1",  # jobs sharing one GPU (num_gpus = 1/this per job)
    "cpus_per_job": "1",  # CPUs asked of Ray per job on machines without a GPU
    "paused": "0",  # 1: the teacher holds the queue (nothing new starts)
    "job_minutes": "0",  # time limit of one job; 0: the default of its preset and the hardware
    "allow_full_on_cpu": "0",  # 1: offer the `full` preset on a cluster without GPUs
    "keep_days": "30",  # finished jobs' files are removed this many days after they end (0: never)
}


class SeatTaken(Exception):
    """Someone else holds this name in the class."""


class LimitReached(Exception):
    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


def token_hash(token: str) -> str:
    return HASHED + hashlib.sha256(token.encode()).hexdigest()


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pending: dict[int, int] = {}  # student id -> uploads in progress (job_slot)
        # SQLite gives its -wal and -shm files the mode of the database file
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm"):
            q = Path(str(self.path) + suffix)
            if q.exists():
                q.chmod(0o600)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        with self._lock:
            for k, v in DEFAULTS.items():
                self._db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (k, v))
            if self.setting("class_code") is None:
                self.set_setting("class_code", new_class_code())
            self._migrate()

    def _migrate(self) -> None:
        """Columns of later releases; tokens kept raw by earlier ones become hashes."""
        for table, col, decl in MIGRATIONS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if col not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
        for sid, tok in self._db.execute(
                "SELECT id, token FROM students WHERE token NOT LIKE 'sha256:%'").fetchall():
            self._db.execute("UPDATE students SET token=? WHERE id=?", (token_hash(tok), sid))
        code = self.setting("class_code")
        self._db.execute("UPDATE students SET class_code=? WHERE class_code IS NULL", (code,))
        self._db.execute("UPDATE students SET name_key=lower(trim(name)) WHERE name_key IS NULL AND id IN "
                         "(SELECT MIN(id) FROM students GROUP BY class_code, lower(trim(name)))")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS students_seat ON students(class_code, name_key)")

    # -- settings ---------------------------------------------------------------------------
    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def int_setting(self, key: str) -> int:
        return int(float(self.setting(key) or DEFAULTS[key]))

    def float_setting(self, key: str) -> float:
        return float(self.setting(key) or DEFAULTS[key])

    def set_setting(self, key: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, str(value)))

    def settings(self) -> dict:
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute("SELECT key, value FROM settings")}

    # -- students (seats) ---------------------------------------------------------------------
    def join(self, name: str, token: str | None) -> tuple[dict, str | None]:
        """The seat ``name`` in the current class: ``(student, new token or None)``.

        A free name gets a new seat and token; a taken one is returned to the holder of its token
        (no new token), or, once the teacher allowed it (``rejoin_ok``), gets a new token that signs
        the old one out. Otherwise :class:`SeatTaken`."""
        key = name_key(name)
        with self._lock:
            code = self.setting("class_code")
            row = self._db.execute("SELECT * FROM students WHERE class_code=? AND name_key=?",
                                   (code, key)).fetchone()
            if row is None:
                new = secrets.token_urlsafe(24)
                cur = self._db.execute(
                    "INSERT INTO students (name, token, created, class_code, name_key) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, token_hash(new), time.time(), code, key))
                return self.student(cur.lastrowid), new
            if token and secrets.compare_digest(row["token"], token_hash(token)):
                return dict(row), None
            if row["rejoin_ok"]:
                new = secrets.token_urlsafe(24)
                self._db.execute("UPDATE students SET token=?, rejoin_ok=0 WHERE id=?",
                                 (token_hash(new), row["id"]))
                return self.student(row["id"]), new
            raise SeatTaken(row["name"])

    def set_class_code(self, code: str) -> None:
        """A new class code: the seats of the old one are retired (signed out for good, even if
        the old code comes back); their jobs stay."""
        with self._lock:
            old = self.setting("class_code")
            if code == old:
                return
            self._db.execute("UPDATE students SET class_code = class_code || '~' || ? WHERE class_code = ?",
                             (f"{time.time():.6f}", old))
            self.set_setting("class_code", code)

    def allow_rejoin(self, sid: int) -> bool:
        with self._lock:
            return self._db.execute("UPDATE students SET rejoin_ok=1 WHERE id=?", (sid,)).rowcount == 1

    def student(self, sid: int) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM students WHERE id=?", (sid,)).fetchone()
        return dict(row) if row else None

    def student_by_token(self, token: str) -> dict | None:
        """The seat of ``token`` in the current class (a changed class code signs it out)."""
        if not token or len(token) > 200:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM students WHERE token=? AND class_code=(SELECT value FROM settings "
                "WHERE key='class_code')", (token_hash(token),)).fetchone()
        return dict(row) if row else None

    def students(self) -> list[dict]:
        """Every seat, newest class first, with ``signed_in`` (a seat of the current class)."""
        with self._lock:
            code = self.setting("class_code")
            rows = self._db.execute("SELECT id, name, created, class_code, rejoin_ok FROM students "
                                    "ORDER BY class_code = ? DESC, id", (code,))
            return [{**dict(r), "signed_in": r["class_code"] == code} for r in rows]

    @contextmanager
    def job_slot(self, student_id: int, limit: int):
        """Hold one of the student's ``limit`` job slots while an upload is read: the count of
        active jobs and uploads under way is checked and raised in one locked step, so that
        parallel uploads cannot pass the limit (:class:`LimitReached`)."""
        with self._lock:
            if self.count_active(student_id) + self._pending.get(student_id, 0) >= limit:
                raise LimitReached(limit)
            self._pending[student_id] = self._pending.get(student_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._pending[student_id] -= 1

    # -- jobs -------------------------------------------------------------------------------
    def add_job(self, student_id: int, preset: str, photos_dir: str, jobs_root: Path, note: str = "",
                rerun_of: int | None = None, video_fps: float | None = None) -> dict:
        """A queued job; its output folder is ``jobs_root/<id>/out`` (set in the same locked step)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO jobs (student_id, preset, photos_dir, upload_note, created, rerun_of, "
                "video_fps) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (student_id, preset, photos_dir, note, time.time(), rerun_of, video_fps),
            )
            jid = cur.lastrowid
            self._update(jid, out_dir=str(Path(jobs_root) / str(jid) / "out"))
            return self.job(jid)

    def job(self, job_id: int) -> dict | None:
        if not 0 < job_id < 2**63:  # SQLite integers are 64-bit
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT jobs.*, students.name AS student_name FROM jobs "
                "JOIN students ON students.id = jobs.student_id WHERE jobs.id=?", (job_id,)
            ).fetchone()
        return dict(row) if row else None

    def jobs(self, student_id: int | None = None, states: tuple[str, ...] | None = None,
             newest_first: bool = False, limit: int = -1, offset: int = 0) -> list[dict]:
        q, args = self._jobs_where(student_id, states)
        order = "DESC" if newest_first else ""
        with self._lock:
            return [dict(r) for r in self._db.execute(
                "SELECT jobs.*, students.name AS student_name FROM jobs JOIN students ON "
                f"students.id = jobs.student_id {q} ORDER BY jobs.id {order} LIMIT ? OFFSET ?",
                (*args, limit, offset))]

    def count_jobs(self, student_id: int | None = None, states: tuple[str, ...] | None = None) -> int:
        q, args = self._jobs_where(student_id, states)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM jobs {q}", args).fetchone()[0]

    @staticmethod
    def _jobs_where(student_id, states) -> tuple[str, list]:
        q, args = "WHERE 1=1", []
        if student_id is not None:
            q += " AND student_id=?"
            args.append(student_id)
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        return q, args

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
        """The end of one attempt: ``state`` is finished, or ``queued`` (to run again); the
        attempt's time is added to ``run_seconds`` (the job's time limit counts all attempts)."""
        assert state in FINISHED or state == "queued"
        now = time.time()
        with self._lock:
            job = self.job(job_id)
            fields = {"state": state, "error": error}
            if job["state"] == "running" and job["started"]:
                fields["run_seconds"] = job["run_seconds"] + max(0.0, now - job["started"])
            if state in FINISHED:
                fields["finished"] = now
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
        """After a restart: jobs left ``running`` by the previous server go back to the queue. The
        time they ran counts up to their last event (not the time the server was down)."""
        with self._lock:
            rows = self._db.execute("SELECT id, started, out_dir FROM jobs WHERE state='running'").fetchall()
            for jid, started, out_dir in rows:
                try:
                    last = (Path(out_dir) / "events.jsonl").stat().st_mtime
                except OSError:
                    last = started or time.time()
                self._db.execute("UPDATE jobs SET run_seconds = run_seconds + ? WHERE id=?",
                                 (max(0.0, min(time.time(), last) - (started or last)), jid))
            ids = [r[0] for r in rows]
            self._db.execute("UPDATE jobs SET state='queued' WHERE state='running'")
            self._db.execute(
                "UPDATE jobs SET state='cancelled', finished=? WHERE state='queued' AND cancel_requested=1",
                (time.time(),),
            )
        return ids

    def photo_dirs_in_use(self, besides: set[int] = frozenset()) -> set[str]:
        """The photo folders of the jobs that are kept (not purged, not in ``besides``)."""
        with self._lock:
            return {r[1] for r in self._db.execute("SELECT id, photos_dir FROM jobs WHERE purged=0")
                    if r[0] not in besides}

    def old_jobs(self, before: float) -> list[dict]:
        """Finished, not yet purged jobs that ended before ``before``."""
        with self._lock:
            return [dict(r) for r in self._db.execute(
                "SELECT * FROM jobs WHERE purged=0 AND finished IS NOT NULL AND finished < ? "
                "AND state IN ('done','failed','cancelled')", (before,))]

    def mark_purged(self, job_id: int) -> None:
        self._update(job_id, purged=1)

    def _update(self, job_id: int, **fields) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def new_class_code() -> str:
    return "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))


def fair_order(queued: list[dict], last_dispatch: dict[int, float | None]) -> list[int]:
    """Round-robin order of the queued jobs: one job per student per round.

    Jobs that were started before (interrupted by a restart or a lost worker: ``attempts`` > 0) keep
    their place: they come first, in the order they were first dispatched. Then students are visited
    in the order of their last dispatch (never served first, then the one served longest ago; ties
    by their oldest queued job); within a student, jobs keep their submission order. ``queued`` is a
    list of job rows (``id``, ``student_id``); returns job ids, next to run first.
    """
    resumed = sorted((j for j in queued if j.get("attempts")),
                     key=lambda j: (j.get("dispatch_seq") or 0, j["id"]))
    fresh = [j for j in queued if not j.get("attempts")]
    return [j["id"] for j in resumed] + _round_robin(fresh, last_dispatch)


def _round_robin(queued: list[dict], last_dispatch: dict[int, float | None]) -> list[int]:
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
