"""The output folder of a run (``OUT/``): every name in it, and the rules that keep a user's files safe.

Layout (the one place these names live; every other module asks :class:`RunDir`)::

    config.json        the resolved configuration (reproduces the run)
    log.txt            the human-readable log;  events.jsonl: the progress events
    work/images/       downscaled working copies of the photos (originals are only read)
    work/frames/       frames taken from a video (work/frames.json lists them)
    sfm_work/          SfM database, distorted model, records of what SfM used
    sparse/0/          the undistorted COLMAP model (the world frame of scene.ply)
    images/            the undistorted images trained on
    depth/             a phone scan's depth and confidence maps, with depth.json (Polycam, Record3D)
    checkpoints/       training checkpoints (``--resume``)
    blocks/            a large capture's blocks, each a run of its own (``block_NNN/``, blocks.json)
    previews/          each held-out photo beside its render
    scene.ply          the trained splats;  metrics.json: held-out PSNR/SSIM and run facts
    sky.npz, sky.png   the learned sky behind the splats (when the run has one; splatkit/sky.py)
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
   taken over, with a message (:mod:`splatkit.runlock`).
"""

from __future__ import annotations

import json
import os
import shlex
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .fileio import write_text_atomic

#: Every top-level name splatkit writes in a run folder.
LAYOUT = (
    "config.json", "log.txt", "events.jsonl", "work", "sfm_work", "sparse", "images", "depth",
    "checkpoints", "blocks", "previews", "scene.ply", "scene_clean.ply", "metrics.json",
    "report.html", "unreal", "exports", "previous", "sky.npz", "sky.png",
)  # fmt: skip
#: What each entry is, in a user's words (the report's list of files).
DESCRIPTIONS = {
    "scene.ply": "the trained splats (INRIA 3DGS PLY): open in a splat viewer or export",
    "metrics.json": "quality and run facts (machine-readable)",
    "config.json": "the settings used (reproduces the run)",
    "log.txt": "the run's log", "events.jsonl": "progress events (machine-readable)",
    "previews": "held-out photos beside their renders", "sparse": "camera poses (COLMAP)",
    "images": "undistorted images used for training", "checkpoints": "for --resume",
    "work": "working copies of the photos", "sfm_work": "SfM database",
    "unreal": "the Unreal export (splatkit export)", "previous": "earlier runs and exports, kept",
    "blocks": "a large capture's blocks, each trained as a run of its own",
    "depth": "the phone scan's depth maps (depth.json says which belongs to which photo)",
    "sky.npz": "the learned sky (exported as Unreal's sky)", "sky.png": "the sky panorama, to look at",
    "scene_clean.ply": "the splats after cleanup (what export and view use; --cleanup none: scene.ply)",
}
#: The layout names that are files (the others are folders).
FILES = ("config.json", "log.txt", "events.jsonl", "scene.ply", "scene_clean.ply", "metrics.json",
         "report.html", "sky.npz", "sky.png")
#: What the classroom server keeps in a job's folder beside the run (its own bookkeeping).
SERVER_FILES = ("cancel", "attempt", "node.json", "report_student.html")
#: The results of training, moved aside (to ``previous/<run id>/``) when a fresh run starts in
#: a folder that holds another run's. SfM's outputs stay: they are reused when the inputs match.
TRAINING_OUTPUTS = (
    "config.json", "checkpoints", "blocks", "previews", "scene.ply", "scene_clean.ply",
    "metrics.json", "report.html", "unreal", "exports", "sky.npz", "sky.png",
)  # fmt: skip
#: Top-level names each writing command may write (claimed in ``.splatkit/run.json`` first).
CLAIMS = {
    "train": LAYOUT,
    "sfm": ("config.json", "log.txt", "events.jsonl", "work", "sfm_work", "sparse", "images", "depth"),
    "export": ("unreal", "previous"),
}
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
    def depth(self) -> Path:
        return self.root / "depth"

    @property
    def blocks(self) -> Path:
        return self.root / "blocks"

    @property
    def blocks_summary(self) -> Path:
        return self.blocks / "blocks.json"

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def scene_ply(self) -> Path:
        return self.root / "scene.ply"

    @property
    def sky(self) -> Path:
        return self.root / "sky.npz"

    @property
    def sky_png(self) -> Path:
        return self.root / "sky.png"

    @property
    def scene_clean_ply(self) -> Path:
        return self.root / "scene_clean.ply"

    def scene_in_use(self, cleanup: str = "auto") -> Path:
        """The scene the export and the viewer use: the cleaned one unless ``cleanup`` is
        ``none`` (or there is none: a run from before cleanup, or trained with ``--cleanup none``)."""
        if cleanup != "none" and self.scene_clean_ply.is_file():
            return self.scene_clean_ply
        return self.scene_ply

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
    def student_report(self) -> Path:
        """The report as the classroom's students see it (the server's)."""
        return self.root / "report_student.html"

    def export_zip(self, plugin: str) -> Path:
        """The classroom server's zip of the Unreal export for ``plugin``."""
        return self.exports / f"{plugin}.zip"

    @property
    def meta(self) -> Path:
        return self.root / META

    # -- names inside the stages' folders (each stage's own files, named here all the same) ----
    @property
    def frames_list(self) -> Path:
        """``work/frames.json``: the frames taken from a video (reused by a second run)."""
        return self.work / "frames.json"

    @property
    def sfm_inputs(self) -> Path:
        """``sfm_work/inputs.json``: what SfM ran on (its cache key, the photos it left out)."""
        return self.sfm_work / "inputs.json"

    @property
    def sfm_import(self) -> Path:
        """``sfm_work/import.json``: the cameras imported from a COLMAP project or transforms.json."""
        return self.sfm_work / "import.json"

    def sfm_stage(self, name: str) -> Path:
        """A scratch folder of SfM (``sfm_work/<name>``)."""
        return self.sfm_work / name

    @property
    def lock_info(self) -> Path:
        return self.meta / "lock.json"

    @property
    def readers(self) -> Path:
        return self.meta / "readers"

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
        inputs = d.get("inputs")
        return RunRecord(run_id=str(d.get("run_id") or new_run_id()), written=set(map(str, d["written"])),
                         history=[h for h in d.get("history") or [] if isinstance(h, dict)],
                         source=str(d.get("source") or ""),
                         inputs=inputs if isinstance(inputs, dict) else None,
                         model=str(d.get("model") or ""))

    def write_record(self, rec: RunRecord) -> None:
        self.meta.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.record_path, json.dumps(
            {"version": RECORD_VERSION, "run_id": rec.run_id, "source": rec.source,
             "written": sorted(rec.written), "history": rec.history, "inputs": rec.inputs,
             "model": rec.model}, indent=1))

    def model_id(self) -> str:
        """A hash of the camera model in ``sparse/0`` (which cameras a checkpoint belongs to);
        empty when there is none."""
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        found = False
        for name in ("cameras", "images", "points3D"):
            for ext in (".bin", ".txt"):
                f = self.sparse / (name + ext)
                if f.is_file():
                    h.update(f.name.encode() + b"\0" + f.read_bytes())
                    found = True
        return h.hexdigest() if found else ""

    def misplaced(self) -> list[str]:
        """Layout names present with the wrong kind (a ``scene.ply`` that is a folder, a
        ``checkpoints`` that is a file): not splatkit's, whatever the record says."""
        out = []
        for name in LAYOUT:
            p = self.root / name
            if not os.path.lexists(p):
                continue
            want_file = name in FILES
            if p.is_file() != want_file or (not want_file and not p.is_dir()):
                out.append(name + ("/" if p.is_dir() else ""))
        return out

    def read_json_object(self, path: Path) -> dict | None:
        """One of the run's JSON files as an object; None when missing or damaged (not JSON, not
        an object): readers show what they can instead of failing on it."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return d if isinstance(d, dict) else None

    def train_command(self, resume: bool = False) -> str:
        """The ``splatkit train`` command for this folder's input (from the record), as a user
        would type it; ``SOURCE`` stands in when the input is not known. Without ``resume`` it
        starts the run again, so it names the run's preset (``config.json``): a restart must not
        fall back to the default preset (hours on a CPU for a run made with ``quick``)."""
        rec = self.read_record()
        src = rec.source if rec and rec.source else "SOURCE"
        cmd = f"splatkit train {shlex.quote(src)} -o {shlex.quote(str(self.root))}"
        return cmd + (" --resume" if resume else self.preset_flag())

    def preset_flag(self) -> str:
        """`` --preset NAME`` of the run in this folder (``config.json``), or ``""``."""
        cfg = self.read_json_object(self.config) or {}
        preset = cfg.get("preset")
        return f" --preset {preset}" if isinstance(preset, str) and preset.isidentifier() \
            and preset != "custom" else ""


def as_rundir(out: Path | str | RunDir) -> RunDir:
    """``out`` as a RunDir (stages take one; a path is accepted from library callers)."""
    return out if isinstance(out, RunDir) else RunDir(Path(out))


@dataclass
class RunRecord:
    """What ``.splatkit/run.json`` holds: the current run's id and what splatkit wrote here."""

    run_id: str
    written: set[str] = field(default_factory=set)
    #: earlier runs moved aside: ``{"run_id", "moved_to"}``
    history: list[dict] = field(default_factory=list)
    #: the input the run was made from, as given (for the commands shown in messages)
    source: str = ""
    #: what the run was trained on (:func:`splatkit.fingerprint.fingerprint`): a resume on other
    #: photos is refused
    inputs: dict | None = None
    #: the camera model the checkpoints belong to (:meth:`RunDir.model_id`)
    model: str = ""


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


def colmap_images(project: Path) -> Path:
    """The images folder of a COLMAP project."""
    return Path(project) / "images"


def colmap_models(project: Path) -> tuple[Path, ...]:
    """Where a COLMAP project's model may be, in order: ``sparse/0``, ``sparse``, the folder."""
    project = Path(project)
    return project / "sparse" / "0", project / "sparse", project


def check_layout(rd: RunDir) -> None:
    """Refuse a folder where a layout name is of the wrong kind (:meth:`RunDir.misplaced`):
    neither a run nor a reader can use it, and it is not splatkit's to move."""
    odd = rd.misplaced()
    if odd:
        raise UserError(
            f"{rd.root} holds {', '.join(odd)}, which is not what splatkit writes under that name "
            "(a folder where it writes a file, or the other way round); splatkit did not make it.",
            "Move it out of the output folder, or choose another folder with -o.",
        )


def check_new_folder(rd: RunDir, rec: RunRecord | None) -> None:
    """Refuse an existing folder with entries of the user's in it that splatkit did not make
    (``-o ~``): splatkit's files would be mixed with theirs."""
    if rec is not None or not rd.root.is_dir() or _legacy_run(rd):
        return
    theirs = sorted(p.name for p in rd.root.iterdir()
                    if p.name not in OS_LITTER and p.name not in SERVER_FILES and p.name != META)
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
        raise UserError(
            f"{rd.root} already holds files that splatkit did not make ({shown}); splatkit writes "
            "only into a new or empty folder, or one of its own runs.",
            f"Choose a new folder with -o, e.g. -o {rd.root / 'splatkit-run'}",
        )


__all__ = ["RunDir", "as_rundir", "RunRecord", "LAYOUT", "TRAINING_OUTPUTS", "check_separate",
           "suggest_out_dir", "foreign_entries", "input_root", "new_run_id", "is_empty", "check_new_folder",
           "check_layout", "colmap_images", "colmap_models"]
