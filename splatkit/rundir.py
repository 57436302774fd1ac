"""The output folder of a run (``OUT/``): every name in it, and the rules that keep a user's files safe.

Layout (the one place these names live; every other module asks :class:`RunDir`)::

    config.json        the resolved configuration (reproduces the run)
    log.txt            the human-readable log;  events.jsonl: the progress events
    work/images/       downscaled working copies of the photos (originals are only read)
    work/frames/       frames taken from a video (work/frames.json lists them)
    sfm_work/          SfM database, distorted model, records of what SfM used
    sparse/0/          the undistorted COLMAP model (the world frame of scene.ply)
    images/            the undistorted images trained on
    checkpoints/       training checkpoints (``--resume``)
    previews/          each held-out photo beside its render
    scene.ply          the trained splats;  metrics.json: held-out PSNR/SSIM and run facts
    scene_clean.ply    the trained splats after cleanup (what export and view use by default)
    previews/cleanup/  the scene before and after cleanup, seen from above and behind the cameras
    report.html        the report page
    unreal/, exports/  Unreal exports (``splatkit export``; the classroom server's zips)
    previous/<run>/    an earlier run's results, moved aside when a fresh run starts here
    .splatkit/         bookkeeping: run.json (run id, what splatkit wrote) and the lock

Rules (:meth:`RunDir.open`):

1. The output folder never contains the input and never lies inside it (a photos folder, a
   video, a COLMAP project, a ``transforms.json`` with its images): refused before anything is
   written.
2. splatkit only replaces or deletes what it wrote: ``.splatkit/run.json`` records every
   top-level entry splatkit created. A layout name that exists without being recorded (say a
   user's own ``images/``) is refused, never written over.
3. One run at a time per folder: ``.splatkit/lock`` is held (an OS file lock, released by the
   OS when the process dies) for the whole command; a lock left by a killed run is recognised and
   taken over, with a message.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .fileio import write_text_atomic

#: Every top-level name splatkit writes in a run folder.
LAYOUT = (
    "config.json", "log.txt", "events.jsonl", "work", "sfm_work", "sparse", "images",
    "checkpoints", "previews", "scene.ply", "scene_clean.ply", "metrics.json", "report.html",
    "unreal", "exports", "previous",
)  # fmt: skip
#: What the classroom server keeps in a job's folder beside the run (its own bookkeeping).
SERVER_FILES = ("cancel", "attempt", "node.json")
#: The results of training, moved aside (to ``previous/<run id>/``) when a fresh run starts in
#: a folder that holds another run's. SfM's outputs stay: they are reused when the inputs match.
TRAINING_OUTPUTS = (
    "config.json", "checkpoints", "previews", "scene.ply", "scene_clean.ply", "metrics.json",
    "report.html", "unreal", "exports",
)  # fmt: skip
#: Files an operating system leaves in folders; a folder holding only these counts as empty.
OS_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini", ".localized"}
META = ".splatkit"
RECORD_VERSION = 1


@dataclass(frozen=True)
class RunDir:
    """Paths of one output folder. Pure naming: constructing one touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- names --------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def work_images(self) -> Path:
        return self.root / "work" / "images"

    @property
    def frames(self) -> Path:
        return self.root / "work" / "frames"

    @property
    def sfm_work(self) -> Path:
        return self.root / "sfm_work"

    @property
    def sparse(self) -> Path:
        return self.root / "sparse" / "0"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def scene_ply(self) -> Path:
        return self.root / "scene.ply"

    @property
    def scene_clean_ply(self) -> Path:
        return self.root / "scene_clean.ply"

    def cleanup_preview(self, which: str) -> Path:
        """``before`` or ``after`` cleanup, seen from off the photo path."""
        return self.root / "previews" / "cleanup" / f"{which}.png"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def unreal(self) -> Path:
        return self.root / "unreal"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def previous(self) -> Path:
        return self.root / "previous"

    @property
    def cancel_flag(self) -> Path:
        return self.root / "cancel"

    @property
    def attempt(self) -> Path:
        return self.root / "attempt"

    @property
    def node(self) -> Path:
        return self.root / "node.json"

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def record_path(self) -> Path:
        return self.meta / "run.json"

    @property
    def lock_path(self) -> Path:
        return self.meta / "lock"

    # -- state ---------------------------------------------------------------------------------
    def has_run(self) -> bool:
        """Whether a run has written its configuration here."""
        return self.config.is_file()

    def is_finished(self) -> bool:
        """Whether a run finished here (scene.ply and metrics.json written)."""
        return self.scene_ply.is_file() and self.metrics.is_file()

    def read_record(self) -> RunRecord | None:
        try:
            d = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or not isinstance(d.get("written"), list):
            return None
        return RunRecord(run_id=str(d.get("run_id") or new_run_id()), written=set(map(str, d["written"])),
                         history=list(d.get("history") or []), source=str(d.get("source") or ""))

    def write_record(self, rec: RunRecord) -> None:
        self.meta.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.record_path, json.dumps(
            {"version": RECORD_VERSION, "run_id": rec.run_id, "source": rec.source,
             "written": sorted(rec.written), "history": rec.history}, indent=1))

    def train_command(self, resume: bool = False) -> str:
        """The ``splatkit train`` command for this folder's input (from the record), as a user
        would type it; ``SOURCE`` stands in when the input is not known."""
        rec = self.read_record()
        src = rec.source if rec and rec.source else "SOURCE"
        cmd = f"splatkit train {shlex.quote(src)} -o {shlex.quote(str(self.root))}"
        return cmd + (" --resume" if resume else "")


@dataclass
class RunRecord:
    """What ``.splatkit/run.json`` holds: the current run's id and what splatkit wrote here."""

    run_id: str
    written: set[str] = field(default_factory=set)
    #: earlier runs moved aside: ``{"run_id", "moved_to"}``
    history: list[dict] = field(default_factory=list)
    #: the input the run was made from, as given (for the commands shown in messages)
    source: str = ""


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------------------------
# Rule 1: the output folder and the input never contain each other


def input_root(source: Path) -> Path:
    """The folder or file that holds everything of the user's that a source points at.

    A ``transforms.json`` (or a COLMAP project) brings its images, so its folder counts; a
    video or a folder of photos counts as itself.
    """
    source = Path(source).resolve()
    if source.is_file() and source.suffix.lower() == ".json":
        return source.parent
    return source


def check_separate(source: Path, root: Path) -> None:
    """Refuse an output folder that contains the input or lies inside it (rule 1)."""
    src = input_root(source)
    out = Path(root).resolve()
    suggestion = suggest_out_dir(Path(source))
    what = describe_input(Path(source))
    if out == src or src in out.parents:
        raise UserError(
            f"The output folder {out} is inside {what} {src}; splatkit never writes there.",
            f"Choose a folder outside it with -o, e.g. -o {suggestion}",
        )
    if out in src.parents:
        raise UserError(
            f"The output folder {out} contains {what} {src}; splatkit would write beside "
            "your files.",
            f"Choose a new or empty folder with -o, e.g. -o {suggestion}",
        )


def describe_input(source: Path) -> str:
    """Plain words for what the user gave: ``the photos folder``, ``the video``, ..."""
    source = Path(source)
    if source.is_file():
        return f"the folder of {source.name}" if source.suffix.lower() == ".json" else "the video"
    if (source / "transforms.json").is_file():
        return "the folder of transforms.json"
    if (source / "sparse").is_dir() and (source / "images").is_dir():
        return "the COLMAP project"
    return "the photos folder"


def suggest_out_dir(source: Path) -> Path:
    """``<name>-splatkit`` beside the input folder (or video, or transforms.json's folder), as the
    user named it: beside a link, not beside the folder it points to."""
    src = Path(os.path.abspath(source))
    if src.suffix.lower() == ".json" and src.is_file():
        src = src.parent
    stem = src.stem if src.is_file() else src.name
    return src.parent / f"{stem or 'scene'}-splatkit"


# --------------------------------------------------------------------------------------------
# Rule 2: only what splatkit wrote


def foreign_entries(rd: RunDir, rec: RunRecord | None) -> list[str]:
    """Layout names present in the folder that splatkit did not write (rule 2)."""
    if not rd.root.is_dir():
        return []
    present = {p.name for p in rd.root.iterdir()}
    if rec is None:
        if _legacy_run(rd):  # a folder written before run.json existed: splatkit's own
            return []
        return sorted(n for n in present if n in LAYOUT)
    return sorted(n for n in present if n in LAYOUT and n not in rec.written)


def _legacy_run(rd: RunDir) -> bool:
    try:
        d = json.loads(rd.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and {"train", "sfm"} <= set(d)


def is_empty(path: Path) -> bool:
    return not path.exists() or all(p.name in OS_LITTER for p in path.iterdir())


# --------------------------------------------------------------------------------------------
# Rule 3: one run at a time


class RunLock:
    """An exclusive lock on a run folder for one command (``filelock``: an OS lock on
    ``.splatkit/lock``, released by the OS when the process ends, on every platform).

    ``lock.json`` beside it names the holder, so that a second command can say who holds it
    and a lock left by a killed run is recognised when it is taken over.
    """

    def __init__(self, rd: RunDir, command: str, wait_s: float = 0.0):
        self.rd, self.command, self.wait_s = rd, command, wait_s
        self.taken_over: dict | None = None
        self._lock = None

    @property
    def info_path(self) -> Path:
        return self.rd.meta / "lock.json"

    def acquire(self) -> RunLock:
        from filelock import FileLock, Timeout

        self.rd.meta.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.rd.lock_path), timeout=self.wait_s)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(*_busy_message(self.rd, self._holder())) from None
        self._lock = lock
        old = self._holder()
        if old and old.get("pid") != os.getpid():
            self.taken_over = old  # its process is gone: the OS released its lock
        write_text_atomic(self.info_path, json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
             "started": time.time()}))
        return self

    def release(self) -> None:
        if self._lock is not None:
            try:
                self.info_path.unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()
            self._lock = None

    def _holder(self) -> dict | None:
        try:
            d = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _busy_message(rd: RunDir, holder: dict | None) -> tuple[str, str]:
    who = ""
    if holder:
        started = time.strftime("%H:%M", time.localtime(float(holder.get("started", 0))))
        who = f" (`splatkit {holder.get('command', '?')}`, process {holder.get('pid')}, since {started})"
    return (f"Another splatkit command is writing to {rd.root}{who}.",
            "Wait for it to finish, or choose another output folder with -o.")


__all__ = ["RunDir", "RunRecord", "RunLock", "LAYOUT", "TRAINING_OUTPUTS", "check_separate",
           "suggest_out_dir", "foreign_entries", "input_root", "new_run_id", "is_empty"]
