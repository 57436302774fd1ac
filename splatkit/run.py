"""The resume decision: the saved configuration of a run plus what this command line asked for.

One function, :func:`plan_run`, decides for every front end (the CLI, the classroom server):

- a **fresh** run (no ``--resume``) into a folder that holds a *finished* run moves that run's
  results to ``previous/<run id>/`` and says so; into a folder that holds an *unfinished* run
  (checkpoints, no ``scene.ply``) it is refused, with the two commands that continue it or start
  over (``--restart``), so that hours of training are never abandoned by a forgotten flag;
- ``--resume`` continues with the saved settings (``config.json``). A setting given on the command
  line that can change safely when resuming (:data:`SAFE_ON_RESUME`, e.g. ``--steps`` to train
  longer) is applied and said; one that cannot (resolution, SH degree, strategy, ...) is refused
  with the reason.

The same rule (:data:`splatkit.config.SAFE_ON_RESUME`) checks a checkpoint against the
configuration it is resumed with (:func:`splatkit.train.checkpoint.resume_conflicts`), so an edited
``config.json`` cannot mix two runs either.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import SAFE_ON_RESUME, RunConfig, validate
from .errors import UserError
from .rundir import TRAINING_OUTPUTS, RunDir, RunRecord, new_run_id

#: Why the others cannot change, for the message (default: "the checkpoint was trained with it").
WHY_NOT = {
    "train.resolution": "the splats were fitted to photos of that size",
    "train.sh_degree": "the checkpoint holds that many colour coefficients per splat",
    "train.strategy": "the densification state in the checkpoint belongs to it",
    "train.seed": "the random state in the checkpoint came from it",
    "ingest.video_fps": "the frames of the video were chosen with it (start a new run to take others)",
    "preset": "it sets the resolution, steps and densification the run was started with",
}


@dataclass
class Run:
    """What a command will do in its output folder.

    Attributes:
        cfg: the configuration to run with (saved as ``config.json``).
        resume: continue from the newest checkpoint.
        run_id: the id checkpoints are stamped with (``.splatkit/run.json``).
        notes: lines for the user (what was applied, moved aside).
    """

    cfg: RunConfig
    resume: bool
    run_id: str
    notes: list[str] = field(default_factory=list)


def flatten(cfg: RunConfig) -> dict:
    """``{"preset": .., "device": .., "train.steps": .., "sfm.mapper": .., ...}``."""
    out: dict = {}
    for k, v in dataclasses.asdict(cfg).items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _set(cfg: RunConfig, key: str, value) -> None:
    obj = cfg
    *parents, name = key.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, value)


def option_name(key: str) -> str:
    """``train.max_splats`` -> ``--max-splats``."""
    return "--" + key.split(".")[-1].replace("_", "-")


def plan_run(rd: RunDir, record: RunRecord, requested: RunConfig, explicit: set[str],
             resume: bool, restart: bool = False, command: str = "",
             inputs: dict | None = None) -> Run:
    """Decide how this command runs in ``rd`` (see the module doc).

    ``explicit``: the flattened keys (:func:`flatten`) the user set on the command line.
    ``command``: the command as typed, for the messages (``splatkit train photos -o out``).
    ``inputs``: the input's fingerprint (:func:`splatkit.fingerprint.fingerprint`); a resume on
    other inputs than the run's is refused. It is kept in ``record`` (written by the caller).
    """
    if resume:
        run = _plan_resume(rd, record, requested, explicit, command, inputs)
        if inputs is not None:
            record.inputs = inputs
        return run
    run = Run(cfg=requested, resume=False, run_id=record.run_id)
    if (rd.checkpoints.is_dir() and any(rd.checkpoints.iterdir())) or rd.is_finished():
        unfinished = not rd.is_finished()
        if unfinished and not restart:
            step = _last_step(rd)
            raise UserError(
                f"{rd.root} holds an unfinished run" + (f" (stopped at step {step})" if step else "")
                + ".",
                f"Continue it: {command} --resume   or start over (the earlier run is kept in "
                f"{rd.previous.name}/): {command}{_asked_preset(requested, explicit, command)} --restart",
            )
        moved = move_aside(rd, record)
        run.notes.append(f"The earlier run's results were moved to {moved}; this run starts fresh.")
    run.run_id = record.run_id
    record.inputs, record.model = inputs, ""
    return run


def _plan_resume(rd: RunDir, record: RunRecord, requested: RunConfig, explicit: set[str],
                 command: str, inputs: dict | None) -> Run:
    if not rd.config.is_file():
        raise UserError(f"Nothing to resume in {rd.root} (no run was started there).",
                        "Run the same command without --resume to start.")
    _refuse_other_inputs(rd, record, inputs, command)
    try:
        saved = RunConfig.load(rd.config)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{rd.config} cannot be read ({e}).",
                        "Start a new run in another folder (-o).") from None
    now, before = flatten(requested), flatten(saved)
    refused, notes = [], []
    for key in sorted(explicit):
        if key not in before or now[key] == before[key]:
            continue
        if key in SAFE_ON_RESUME:
            _set(saved, key, now[key])
            notes.append(f"{option_name(key)} {now[key]} (was {before[key]}): {SAFE_ON_RESUME[key]}.")
        else:
            why = WHY_NOT.get(key, "the checkpoint was trained with it")
            refused.append(f"{option_name(key)} (was {before[key]}; {why})")
    if refused:
        raise UserError(
            "These settings cannot change when resuming: " + "; ".join(refused) + ".",
            "Resume without them, or start a new run in another folder (-o).",
        )
    validate(saved)  # a config.json edited by hand is held to the same ranges as the options
    done = _last_step(rd)
    if done is not None and saved.train.steps < done:
        raise UserError(
            f"--steps {saved.train.steps} is fewer than the {done} steps already trained.",
            f"Give more steps to train longer, e.g. {command} --resume --steps {done * 2}",
        )
    if rd.is_finished() and done is not None and saved.train.steps <= done:
        raise UserError(f"The run in {rd.root} has finished ({done} steps); nothing to resume.",
                        f"To train longer: {command} --resume --steps {done * 2}")
    return Run(cfg=saved, resume=True, run_id=record.run_id, notes=notes)


def _refuse_other_inputs(rd: RunDir, record: RunRecord, inputs: dict | None, command: str) -> None:
    """A checkpoint continues only on the inputs it was trained on (see splatkit.fingerprint)."""
    from .fingerprint import describe, differences

    if inputs is None or record.inputs is None:
        return  # a run from before inputs were recorded: nothing to compare with
    diff = differences(record.inputs, inputs)
    if any(diff.values()):
        raise UserError(
            f"The input changed since the run in {rd.root} was trained on it: {describe(diff)}; "
            "its checkpoint cannot continue on other photos.",
            f"Start over on the photos as they are now (the earlier run is kept in "
            f"{rd.previous.name}/): {_with_preset(command, rd.preset_flag())} --restart",
        )


def _with_preset(command: str, flag: str) -> str:
    """``command`` with the run's ``--preset`` added (unless it names one already)."""
    return command if not flag or "--preset" in command else command + flag


def _asked_preset(requested: RunConfig, explicit: set[str], command: str) -> str:
    """`` --preset NAME`` when the user asked for one in this command (the shown command
    carries no options)."""
    return "" if "preset" not in explicit or "--preset" in command else f" --preset {requested.preset}"


def refuse_other_model(rd: RunDir, record: RunRecord, model: str, command: str) -> None:
    """A checkpoint continues only on the camera model it was trained on (the SfM output)."""
    if record.model and model and record.model != model:
        raise UserError(
            f"The camera poses in {rd.sparse} are not the ones the run in {rd.root} was trained "
            "on (SfM ran again); its checkpoint cannot continue on them.",
            f"Start over (the earlier run is kept in {rd.previous.name}/): "
            f"{_with_preset(command, rd.preset_flag())} --restart",
        )


def check_model(rd: RunDir, resume: bool) -> None:
    """After SfM: a resumed run's camera model must be the one its checkpoints belong to; the
    model of a run that starts is recorded."""
    record = rd.read_record()
    if record is None:
        return
    model = rd.model_id()
    if resume:
        refuse_other_model(rd, record, model, rd.train_command())
    if model and record.model != model:
        record.model = model
        rd.write_record(record)


def _last_step(rd: RunDir) -> int | None:
    from .train.checkpoint import list_checkpoints

    found = list_checkpoints(rd.root)
    return found[-1][0] if found else None


def move_aside(rd: RunDir, record: RunRecord) -> Path:
    """Move the current run's results into ``previous/<run id>/``; start a new run id."""
    dest = rd.previous / record.run_id
    dest.mkdir(parents=True, exist_ok=True)
    for name in TRAINING_OUTPUTS:
        src = rd.root / name
        if src.exists() and name in record.written:
            shutil.move(str(src), str(dest / name))
    record.history.append({"run_id": record.run_id, "moved_to": str(dest.relative_to(rd.root))})
    record.run_id = new_run_id()
    rd.write_record(record)
    return dest


def command_line(argv: list[str]) -> str:
    """The command as a user would retype it."""
    return " ".join(shlex.quote(a) for a in argv)


def saved_settings(rd: RunDir) -> dict:
    try:
        return json.loads(rd.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
