"""One job setup for every front end: the CLI (`splatkit train`, `splatkit sfm`) and the classroom
server call :func:`run_job` with a :class:`JobRequest`; nothing else opens a run folder.

In order: the output folder and the input are kept apart and the folder is locked
(:mod:`splatkit.rundir`); the resume decision is made (:func:`splatkit.run.plan_run`); the log and
the event stream are attached; ``config.json`` is written; the stages run
(:mod:`splatkit.pipeline`); a full disk becomes a plain message that names the folder and the
command that continues, with every finished stage and the last checkpoint kept.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import UserError
from .events import EventBus, JsonlWriter, Message
from .fileio import write_text_atomic
from .run import Run, plan_run
from .rundir import (
    CLAIMS,
    LAYOUT,
    RunDir,
    RunRecord,
    check_layout,
    check_new_folder,
    check_separate,
    foreign_entries,
    new_run_id,
)
from .runlock import RunLock

FULL_DISK = {errno.ENOSPC, errno.EDQUOT}
#: Below this much free space, a failed write is taken for a full disk (libraries such as
#: pycolmap and torch wrap the OS error in their own message, without its errno).
NEARLY_FULL = 64 * 2**20


@dataclass
class JobRequest:
    """What a front end asks for.

    Attributes:
        source: photos folder, video, COLMAP project or transforms.json (never written to).
        out_dir: the output folder.
        cfg: the configuration from the preset and the options given.
        explicit: the settings given explicitly (flattened keys, :func:`splatkit.run.flatten`).
        resume: continue the run in ``out_dir``.
        restart: start over even though ``out_dir`` holds an unfinished run (kept aside).
        command: ``"train"`` or ``"sfm"``.
        shown_command: the command as the user would retype it, for messages.
        lock_wait_s: how long to wait for another command on the same folder to end.
    """

    source: Path
    out_dir: Path
    cfg: RunConfig
    explicit: set[str] = field(default_factory=set)
    resume: bool = False
    restart: bool = False
    command: str = "train"
    shown_command: str = ""
    lock_wait_s: float = 0.0


@dataclass
class OpenRunDir:
    """A locked output folder and its record, for the length of one command."""

    rd: RunDir
    record: RunRecord
    lock: RunLock

    def claim(self, names) -> None:
        self.record.written |= {n for n in names if n in LAYOUT}
        self.rd.write_record(self.record)


def open_run_dir(out_dir: Path, source: Path | None, command: str, wait_s: float = 0.0) -> OpenRunDir:
    """Keep ``out_dir`` apart from ``source``, create and lock it, and refuse any layout name in it
    that splatkit did not write (the rules of :mod:`splatkit.rundir`)."""
    rd = RunDir(Path(out_dir))
    if source is not None:
        check_separate(source, rd.root)
    _refuse_foreign(rd)  # before anything is written into a folder that is not splatkit's
    check_new_folder(rd, rd.read_record())
    _make_writable(rd.root)
    lock = RunLock(rd, command, wait_s=wait_s).acquire()
    try:
        _refuse_foreign(rd)  # again, now that no other command can change it
        record = rd.read_record()
        if record is None:
            present = {p.name for p in rd.root.iterdir()} & set(LAYOUT)  # a folder of an older run
            record = RunRecord(run_id=new_run_id(), written=present)
    except BaseException:
        lock.release()
        raise
    return OpenRunDir(rd, record, lock)


def _refuse_foreign(rd: RunDir) -> None:
    check_layout(rd)
    foreign = foreign_entries(rd, rd.read_record())
    if foreign:
        raise UserError(
            f"{rd.root} already holds {', '.join(foreign)}, which splatkit did not write.",
            "Choose a new or empty output folder with -o; splatkit never writes over your files.",
        )


def _make_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".splatkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if e.errno in FULL_DISK:
            raise disk_full_error(root, "") from None
        raise UserError(f"Cannot write to the output folder {root} ({e.strerror or e}).",
                        "Choose a folder you can write to with -o OUT.") from None


def disk_full_error(root: Path, resume_cmd: str) -> UserError:
    try:
        free = f" ({shutil.disk_usage(root).free / 1e6:.0f} MB free)"
    except OSError:
        free = ""
    todo = "Free some space" + (f", then continue with: {resume_cmd}" if resume_cmd else ", then run again")
    return UserError(f"The disk holding {root} is full{free}; what was finished is kept.", todo + ".")


def is_disk_full(e: BaseException, root: Path) -> bool:
    """A full disk (or quota) behind a failure: the OS error's errno, else (a library's own
    error, which carries no errno: pycolmap's database, torch's checkpoint writer) the free space
    left on the volume of ``root``. The message's text is never read."""
    seen = e
    while seen is not None:  # the errno of the OS error, also when a library chained it
        if isinstance(seen, OSError) and seen.errno in FULL_DISK:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, (UserError, MemoryError)):
        return False
    try:
        return shutil.disk_usage(_existing(root)).free < NEARLY_FULL
    except OSError:
        return False


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def run_job(req: JobRequest, bus: EventBus, stop_flag: Callable[[], bool] | None = None):
    """Run ``splatkit train`` or ``splatkit sfm`` as requested; returns the pipeline's result."""
    shown = req.shown_command or f"splatkit {req.command} {req.source} -o {req.out_dir}"
    if req.resume and not RunDir(Path(req.out_dir)).config.is_file():  # before creating anything
        raise UserError(f"Nothing to resume in {req.out_dir} (no run was started there).",
                        "Run the same command without --resume to start.")
    try:
        return _run_job(req, bus, stop_flag, shown)
    except Exception as e:  # noqa: BLE001 - a full disk, whatever the library that hit it
        if is_disk_full(e, Path(req.out_dir)):
            more = " --resume" if req.command == "train" else ""
            raise disk_full_error(Path(req.out_dir), shown + more) from None
        raise


def _run_job(req: JobRequest, bus: EventBus, stop_flag, shown: str):
    from . import pipeline
    from .fingerprint import fingerprint

    opened = open_run_dir(req.out_dir, req.source, req.command, req.lock_wait_s)
    rd, writers = opened.rd, []
    try:
        run = plan_run(rd, opened.record, req.cfg, req.explicit, req.resume, req.restart, shown,
                       inputs=fingerprint(req.source))
        opened.record.source = str(Path(req.source).resolve())
        opened.claim(CLAIMS[req.command])
        writers = _attach_writers(rd, bus)
        if opened.lock.taken_over:
            bus.emit(Message("setup", "A splatkit command that ended without cleaning up (process "
                             f"{opened.lock.taken_over.get('pid')}) had locked {rd.root}; taking over.",
                             level="warning"))
        for note in run.notes:
            bus.emit(Message("setup", note))
        write_text_atomic(rd.config, run.cfg.to_json())
        if req.command == "sfm":
            return pipeline.run_sfm_only(req.source, rd, run.cfg, bus)
        return pipeline.run_train(req.source, rd, run.cfg, bus, resume=run.resume,
                                  stop_flag=stop_flag, run_id=run.run_id, explicit=req.explicit)
    finally:
        for w in writers:
            bus.unsubscribe(w)
            w.close()
        opened.lock.release()


def _attach_writers(rd: RunDir, bus: EventBus) -> list:
    from .progress import TextLog

    log, jsonl = TextLog(rd.log), JsonlWriter(rd.events)
    bus.subscribe(log)
    bus.subscribe(jsonl)
    return [log, jsonl]


__all__ = ["JobRequest", "run_job", "open_run_dir", "OpenRunDir", "disk_full_error", "Run"]
