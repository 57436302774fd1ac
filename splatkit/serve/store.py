"""The classroom server's state: one SQLite file (stdlib ``sqlite3``) in the data folder.

Tables: ``settings`` (class code, limits), ``students`` (one seat: a name in a class, the SHA-256
of its token), ``jobs`` (one row per training job: its photos folder, output folder, state and
timings). A job's state is one of ``queued -> running -> done | failed | cancelled``; a server
restart puts ``running`` jobs back to ``queued`` (they resume from their last checkpoint and keep
their place: :func:`fair_order` starts them first), so nothing is lost.

A seat is one person: a name (compared by :func:`~.names.name_key`: Unicode NFKC, no invisible
characters, case, spaces and look-alike letters) is unique within the class; joining again under a
taken name needs that seat's token or the teacher's leave (``rejoin_ok``). The class (setting
``class_id``) outlives its code: changing the class code signs every student out (``joined_code``
is the code a seat last joined with) but keeps the seats and their jobs: joining with the new code
from the same browser gives the seat back. The teacher may remove a seat (its waiting and running
jobs are cancelled, the name is free again) or merge one into another (its jobs move), and cap the
number of seats (``max_seats``). Teacher sessions are rows of ``sessions`` (the SHA-256 of each
cookie), so that signing out ends one and the teacher can end them all. The file is created with
mode 600 (students' tokens and sessions are kept only as hashes).

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

from ..rundir import RunDir
from .names import clean_name, name_key

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
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, expires REAL NOT NULL);
"""
#: columns added after the first release: (table, column, SQL type and default)
MIGRATIONS = [
    ("students", "class_code", "TEXT"),
    ("students", "name_key", "TEXT"),
    ("students", "rejoin_ok", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "run_seconds", "REAL NOT NULL DEFAULT 0"),
    ("jobs", "video_fps", "REAL"),
    ("jobs", "purged", "INTEGER NOT NULL DEFAULT 0"),
    ("students", "joined_code", "TEXT"),
    ("students", "removed", "INTEGER NOT NULL DEFAULT 0"),
    ("students", "merged_into", "INTEGER"),
    ("jobs", "cancel_by", "TEXT"),
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
    "max_seats": "0",  # most seats (names) in the class; 0: no cap
}
#: who cancelled a job (``jobs.cancel_by``)
CANCELLERS = ("student", "teacher", "seat")


class SeatTaken(Exception):
    """Someone else holds this name in the class."""


class SeatsFull(Exception):
    """The class has ``max_seats`` seats already."""


class LimitReached(Exception):
    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


def token_hash(token: str) -> str:
    return HASHED + hashlib.sha256(token.encode()).hexdigest()


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
        if self.setting("class_id") is None:  # the class outlives its code from now on
            self.set_setting("class_id", code)
        self._db.execute("UPDATE students SET class_code=? WHERE class_code IS NULL", (code,))
        self._db.execute("UPDATE students SET joined_code=class_code WHERE joined_code IS NULL")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS students_seat ON students(class_code, name_key)")
        for sid, name, key in self._db.execute(
                "SELECT id, name, name_key FROM students WHERE removed=0").fetchall():
            if key is not None and key != name_key(name):  # keys of an earlier rule
                try:
                    self._db.execute("UPDATE students SET name_key=? WHERE id=?", (name_key(name), sid))
                except sqlite3.IntegrityError:
                    pass  # two seats whose names now look alike: both stay (the teacher merges)

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
        name, key = clean_name(name), name_key(name)
        with self._lock:
            cls, code = self.setting("class_id"), self.setting("class_code")
            row = self._db.execute("SELECT * FROM students WHERE class_code=? AND name_key=?",
                                   (cls, key)).fetchone()
            if row is None:
                cap = self.int_setting("max_seats")
                if cap and self.count_seats() >= cap:
                    raise SeatsFull(cap)
                new = secrets.token_urlsafe(24)
                cur = self._db.execute(
                    "INSERT INTO students (name, token, created, class_code, name_key, joined_code) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, token_hash(new), time.time(), cls, key, code))
                return self.student(cur.lastrowid), new
            if token and secrets.compare_digest(row["token"], token_hash(token)):
                self._db.execute("UPDATE students SET joined_code=? WHERE id=?", (code, row["id"]))
                return self.student(row["id"]), None
            if row["rejoin_ok"]:
                new = secrets.token_urlsafe(24)
                self._db.execute("UPDATE students SET token=?, rejoin_ok=0, joined_code=? WHERE id=?",
                                 (token_hash(new), code, row["id"]))
                return self.student(row["id"]), new
            raise SeatTaken(row["name"])

    def count_seats(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM students WHERE class_code=? AND removed=0",
                                    (self.setting("class_id"),)).fetchone()[0]

    def set_class_code(self, code: str) -> None:
        """A new class code: every student is signed out until they join with it; seats and
        jobs stay (the same browser, or the teacher's leave, gets the seat back)."""
        with self._lock:
            self.set_setting("class_code", code)

    def remove_seat(self, sid: int) -> bool:
        """Remove a seat: its waiting and running jobs are cancelled, its browser is signed out
        and its name is free again; its finished jobs stay listed."""
        with self._lock:
            row = self.student(sid)
            if row is None or row["removed"]:
                return False
            for j in self.jobs(student_id=sid, states=ACTIVE):
                self.request_cancel(j["id"], "seat")
            self._db.execute("UPDATE students SET removed=1, name_key=NULL, rejoin_ok=0 WHERE id=?", (sid,))
            return True

    def merge_seats(self, src: int, dst: int) -> bool:
        """Merge seat ``src`` into ``dst``: its jobs become ``dst``'s; ``src`` is removed."""
        with self._lock:
            a, b = self.student(src), self.student(dst)
            if a is None or b is None or src == dst or a["removed"] or b["removed"]:
                return False
            self._db.execute("UPDATE jobs SET student_id=? WHERE student_id=?", (dst, src))
            self._db.execute("UPDATE students SET removed=1, name_key=NULL, rejoin_ok=0, merged_into=? "
                             "WHERE id=?", (dst, src))
            last = max(a["last_dispatch"] or 0, b["last_dispatch"] or 0) or None
            self._db.execute("UPDATE students SET last_dispatch=? WHERE id=?", (last, dst))
            return True

    def allow_rejoin(self, sid: int) -> bool:
        with self._lock:
            return self._db.execute("UPDATE students SET rejoin_ok=1 WHERE id=?", (sid,)).rowcount == 1

    def student(self, sid: int) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM students WHERE id=?", (sid,)).fetchone()
        return dict(row) if row else None

    def seat_by_token(self, token: str) -> dict | None:
        """The seat of ``token``, signed in or not: with ``signed_out`` None (signed in), or why
        not: ``code`` (the class code changed), ``removed``, ``merged`` or ``old_class``."""
        if not token or len(token) > 200:
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM students WHERE token=?", (token_hash(token),)).fetchone()
            if row is None:
                return None
            s = dict(row)
            why = None
            if s["class_code"] != self.setting("class_id"):
                why = "old_class"
            elif s["merged_into"]:
                why = "merged"
            elif s["removed"]:
                why = "removed"
            elif s["joined_code"] != self.setting("class_code"):
                why = "code"
        return {**s, "signed_out": why}

    def student_by_token(self, token: str) -> dict | None:
        """The signed-in seat of ``token`` (a changed class code, a removed seat sign it out)."""
        s = self.seat_by_token(token)
        return s if s is not None and s["signed_out"] is None else None

    def students(self, limit: int = -1, offset: int = 0) -> list[dict]:
        """The seats of the class (not removed), in joining order, with ``signed_in`` (joined
        with the current class code)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, created, class_code, rejoin_ok, joined_code FROM students "
                "WHERE class_code=? AND removed=0 ORDER BY id LIMIT ? OFFSET ?",
                (self.setting("class_id"), limit, offset))
            code = self.setting("class_code")
            return [{**dict(r), "signed_in": r["joined_code"] == code} for r in rows]

    # -- teacher sessions ---------------------------------------------------------------------
    def add_session(self, cookie: str, lifetime_s: float) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?)",
                             (token_hash(cookie), now, now + lifetime_s))

    def session_ok(self, cookie: str) -> bool:
        if not cookie or len(cookie) > 200:
            return False
        with self._lock:
            return self._db.execute("SELECT 1 FROM sessions WHERE id=? AND expires > ?",
                                    (token_hash(cookie), time.time())).fetchone() is not None

    def end_sessions(self, cookie: str | None = None) -> int:
        """End the session of ``cookie``, or every session (None); returns how many."""
        with self._lock:
            if cookie is None:
                return self._db.execute("DELETE FROM sessions").rowcount
            return self._db.execute("DELETE FROM sessions WHERE id=?", (token_hash(cookie),)).rowcount

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

    def request_cancel(self, job_id: int, by: str) -> str:
        """Cancel a job (``by``: one of :data:`CANCELLERS`): queued ones at once, running ones when
        their task stops. Returns the state."""
        assert by in CANCELLERS
        with self._lock:
            job = self.job(job_id)
            if job["state"] == "queued":
                self._update(job_id, state="cancelled", finished=time.time(), cancel_requested=1,
                             cancel_by=by)
                return "cancelled"
            if job["state"] == "running":
                self._update(job_id, cancel_requested=1, cancel_by=by)
            return job["state"]

    def run_times(self, preset: str, n: int = 20) -> list[float]:
        """How long the last ``n`` finished jobs of ``preset`` ran (seconds; done jobs only)."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT run_seconds FROM jobs WHERE state='done' AND preset=? AND run_seconds > 0 "
                "ORDER BY finished DESC LIMIT ?", (preset, n))]

    def requeue_running(self) -> list[int]:
        """After a restart: jobs left ``running`` by the previous server go back to the queue. The
        time they ran counts up to their last event (not the time the server was down)."""
        with self._lock:
            rows = self._db.execute("SELECT id, started, out_dir FROM jobs WHERE state='running'").fetchall()
            for jid, started, out_dir in rows:
                try:
                    last = RunDir(out_dir).events.stat().st_mtime
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
