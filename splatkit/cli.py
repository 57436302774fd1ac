"""The ``splatkit`` command: thin shells over the stages and the pipeline.

A user's mistake ends with two plain lines (what went wrong, what to do) and exit code 2, never a
traceback. Ctrl-C during training writes a checkpoint and prints the command that resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import shlex
import sys
from pathlib import Path

from .config import (
    PRESETS,
    BlocksConfig,
    CleanupConfig,
    IngestConfig,
    RunConfig,
    SfmConfig,
    TrainConfig,
    preset_config,
)
from .errors import UserError
from .options import add_config_option, input_path, output_path, port_number
from .rundir import RunDir

PROG = "splatkit"
#: OS errors that come from a path the user gave, not from a bug (said in two lines, exit 2).
PATH_ERRORS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
               errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EXDEV}


class _Parser(argparse.ArgumentParser):
    """argparse that ends a usage error with two plain lines and exit code 2."""

    def error(self, message: str):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.write(f"Run `{self.prog} --help` to see the options.\n")
        raise SystemExit(2)


#: The settings the train and sfm command lines set, in --help's order: flag (the field's name)
#: -> (its RunConfig section, what the command line adds to the field's help). Each flag is built
#: from its config field (:func:`splatkit.options.add_config_option`), as the export's are.
TRAIN_FLAGS = {
    "steps": ("train", " Overrides the preset; with --resume: train longer."),
    "resolution": ("train", " Overrides the preset."),
    "sh_degree": ("train", " Overrides the preset."),
    "strategy": ("train", ""),
    "max_splats": ("train", ""),
    "pose_opt": ("train", ""),
    "appearance": ("train", ""),
    "packed": ("train", ""),
    "seed": ("train", ""),
    "mapper": ("sfm", ""),
    "video_fps": ("ingest", " Raise it for a short or fast clip."),
    "blocks": ("blocks", " Each block trains on the photos that see it and holds the memory alone."),
    "ray_address": ("blocks", ""),
    "sky": ("train", ""),
    "cleanup": ("cleanup", ""),
}
#: flags named otherwise than their config field
FIELD_OF = {"cleanup": "mode"}
#: flag -> the config setting it sets (flattened key, see splatkit.run.flatten)
TRAIN_OPTIONS = {name: f"{section}.{FIELD_OF.get(name, name)}"
                 for name, (section, _) in TRAIN_FLAGS.items()}
SECTIONS = {"train": TrainConfig, "sfm": SfmConfig, "ingest": IngestConfig, "blocks": BlocksConfig,
            "cleanup": CleanupConfig}
#: the flags of `splatkit sfm` (the settings that reach SfM)
SFM_FLAGS = ("mapper", "video_fps")


def _add_config_flags(p: argparse.ArgumentParser, names) -> None:
    for name in names:
        section, note = TRAIN_FLAGS[name]
        add_config_option(p, SECTIONS[section], FIELD_OF.get(name, name), note=note, flag=name,
                          dest=name, metavar="ADDRESS" if name == "ray_address" else None)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("photos", type=input_path, help="Folder of photos (JPEG, PNG, HEIC, AVIF or camera "
                   "RAW), a video (MP4, MOV; HDR too), a COLMAP project or a transforms.json. It is "
                   "never written to.")
    p.add_argument("-o", "--out", type=output_path, default=None,
                   help="Output folder (default: <photos-folder-name>-splatkit beside the photos).")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="Named settings. quick: minutes on a laptop CPU at low resolution; "
                        "standard: a good CPU result in about an hour (the CPU default); "
                        "full: 30k steps (the GPU default); fast: GPU, about 1/4 of full's time.")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="Where to train: auto (default) uses an NVIDIA GPU when there is one, else "
                        "the CPU.")
    _add_config_flags(p, TRAIN_FLAGS)
    p.add_argument("--resume", action="store_true",
                   help="Continue the interrupted (or finished: train longer with --steps) run in OUT "
                        "from its last checkpoint, with its own settings.")
    p.add_argument("--restart", action="store_true",
                   help="Start over in an OUT that holds an unfinished run (it is kept in "
                        "OUT/previous/).")
    p.add_argument("--quiet", action="store_true", help="Print nothing but errors.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Turn a folder of photos into a Gaussian-splat scene for Unreal Engine.\n\n"
        "  splatkit train photos/          photos -> camera poses -> trained splats -> scene.ply\n"
        "  splatkit sfm photos/ -o OUT     camera poses only, to check them before training\n"
        "  splatkit export OUT --for unreal   files the Unreal splat plugins import\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version",
                        version=f"splatkit {__import__('splatkit').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="Photos to a trained splat scene (scene.ply, metrics, previews).",
                       description="Run the whole job: find camera poses with COLMAP, train "
                       "Gaussian splats, measure them on held-out photos and write scene.ply.")
    _add_train_options(p)
    p.add_argument("--export", choices=("unreal",), default=None,
                   help="Also write Unreal-ready files at the end (see `splatkit export --help`).")

    p = sub.add_parser("sfm", help="Camera poses only (OUT/sparse/0), to check before training.",
                       description="Run ingest and structure-from-motion only and write OUT/sparse/0 "
                       "(the same folder `splatkit train` writes and reuses).")
    p.add_argument("photos", type=input_path,
                   help="Folder of photos, a video, a COLMAP project or a transforms.json.")
    p.add_argument("-o", "--out", type=output_path, default=None, help="Output folder.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="Named settings (image size used for matching; default: standard on a CPU, "
                        "full on a GPU, as for train).")
    _add_config_flags(p, SFM_FLAGS)
    p.add_argument("--quiet", action="store_true", help="Print nothing but errors.")

    p = sub.add_parser("export", help="Write the trained scene in the formats Unreal plugins read.",
                       description="Export a trained scene (OUT/scene.ply) for Unreal Engine: "
                       "upright, to scale, cropped, in the chosen plugin's format.")
    p.add_argument("out", type=Path, help="The output folder of `splatkit train`.")
    p.add_argument("--for", dest="target", choices=("unreal",), default="unreal",
                   help="Target application.")
    _add_export_options(p)

    p = sub.add_parser("report", help="Write OUT/report.html: inputs, cameras, training, quality.",
                       description="Build one self-contained page (opens offline) about a run: "
                       "photos used and skipped, camera positions, loss and PSNR curves, each "
                       "held-out photo beside its render, output files and the next step.")
    p.add_argument("out", type=Path, help="The output folder of `splatkit train`.")

    p = sub.add_parser("view", help="Look at a trained scene in your web browser (offline).",
                       description="Serve OUT/scene.ply with a WebGL splat viewer on 127.0.0.1, "
                       "with the training cameras drawn as frusta (click one to look through it).")
    p.add_argument("out", type=Path, help="The output folder of `splatkit train`.")
    p.add_argument("--port", type=port_number, default=8765,
                   help="Local port (default 8765; 0: any free).")
    p.add_argument("--no-browser", action="store_true", help="Only print the URL.")

    p = sub.add_parser("serve", help="Classroom server: students upload photos, jobs run on Ray.",
                       description="Serve the student and teacher pages (see docs/classroom.md).")
    from .serve import add_cli_options as _add_serve_options

    _add_serve_options(p)

    sub.add_parser("doctor", help="Check that this machine can run `splatkit train`.",
                   description="Check Python, PyTorch, GPU and CUDA tools, pycolmap, numba, "
                   "disk, memory and write access; one line per check. Exit code 0 when ready.")
    return parser


def _add_export_options(p: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`~splatkit.export.unreal.UnrealExportOptions` field, built as the
    train flags are (when the export is available)."""
    try:
        from .export.unreal import UnrealExportOptions
    except ImportError:
        return
    for f in dataclasses.fields(UnrealExportOptions):
        add_config_option(p, UnrealExportOptions, f.name, dest=f"unreal_{f.name}")


def export_options_from_args(args: argparse.Namespace):
    """The :class:`~splatkit.export.unreal.UnrealExportOptions` the flags ask for."""
    from .export.unreal import UnrealExportOptions

    vals = {}
    for f in dataclasses.fields(UnrealExportOptions):
        v = getattr(args, f"unreal_{f.name}", None)
        if v is not None:
            vals[f.name] = v
    return UnrealExportOptions(**vals)


def run_export(out_dir: Path, args: argparse.Namespace) -> list[Path]:
    """``splatkit export OUT --for unreal`` and ``splatkit train --export unreal``: one
    run-folder export (:func:`splatkit.export.run_folder.export_run`), printed."""
    from .export.run_folder import export_run, print_result

    result = export_run(Path(out_dir), export_options_from_args(args))
    print_result(result)
    return result.paths


def _default_preset(device: str) -> str:
    """full on a GPU, standard on a CPU."""
    from .render import select_renderer

    return "full" if select_renderer(device).name == "gsplat" else "standard"


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, set[str]]:
    """The configuration asked for, and the settings given explicitly (flattened keys)."""
    from .config import validate

    device = getattr(args, "device", None)
    preset = args.preset or _default_preset(device or "auto")
    cfg = preset_config(preset)
    explicit = {"preset"} if args.preset else set()
    if device:
        cfg.device = device
        explicit.add("device")
    for name, key in TRAIN_OPTIONS.items():
        val = getattr(args, name, None)
        if val is not None:
            section, attr = key.split(".")
            setattr(getattr(cfg, section), attr, val)
            explicit.add(key)
    if "train.resolution" in explicit:  # working copies at least as large as asked to train on
        cfg.ingest.max_image_size = max(cfg.ingest.max_image_size, cfg.train.resolution)
    validate(cfg)
    _check_gpu_preset(args, cfg)
    return cfg, explicit


def _check_gpu_preset(args: argparse.Namespace, cfg: RunConfig) -> None:
    """A GPU preset on a machine that trains on its CPU runs only when asked with --device cpu:
    hours of work never start by surprise."""
    from .config import GPU_PRESETS, cpu_hours
    from .render import select_renderer

    if args.preset not in GPU_PRESETS or getattr(args, "command", "") != "train":
        return
    if getattr(args, "device", None) != "cpu" and select_renderer(cfg.device).name != "cpu":
        return
    hours = cpu_hours(cfg)
    if getattr(args, "device", None) != "cpu":
        raise UserError(
            f"--preset {args.preset} is made for a GPU; this machine has none, and its CPU would "
            f"train for about {hours:.0f} hours.",
            "Use --preset standard (about an hour) or quick (minutes), or add --device cpu to run "
            f"{args.preset} on the CPU anyway.")
    if not getattr(args, "quiet", False):
        print(f"--preset {args.preset} on the CPU: about {hours:.0f} hours of training.",
              file=sys.stderr)


def check_input(path: Path) -> None:
    """The input argument names something usable (an empty one is refused by argparse): a plain
    UserError if it is missing, a broken link, unreadable, or no kind of input."""
    from .sources import detect_source

    detect_source(path)


def _shown(command: str, photos: Path, out_dir: Path) -> str:
    return f"splatkit {command} {shlex.quote(str(photos))} -o {shlex.quote(str(out_dir))}"


def _run(command: str, args: argparse.Namespace, cfg: RunConfig, explicit: set[str]):
    """Run a job with the terminal attached; Ctrl-C / SIGTERM stop it cleanly."""
    from .events import EventBus
    from .job import JobRequest, run_job
    from .pipeline import default_out_dir
    from .progress import Terminal
    from .signals import Stopper, install, restore

    out_dir = args.out or default_out_dir(args.photos)
    shown = _shown(command, args.photos, out_dir)
    req = JobRequest(source=args.photos, out_dir=out_dir, cfg=cfg, explicit=explicit,
                     resume=getattr(args, "resume", False), restart=getattr(args, "restart", False),
                     command=command, shown_command=shown)
    bus, term = EventBus(), Terminal(quiet=args.quiet)
    bus.subscribe(term)
    stopper = Stopper()
    old = install(stopper)
    try:
        result = run_job(req, bus, stop_flag=stopper)
    except KeyboardInterrupt:
        term.close()
        print(f"\nInterrupted. Finished stages are kept. To continue:\n  {shown}"
              + (" --resume" if command == "train" else ""), file=sys.stderr)
        return None, stopper.exit_code
    finally:
        restore(old)
        term.close()
    if getattr(result, "interrupted", False):
        print(f"\nInterrupted. Checkpoint written. To continue:\n  {shown} --resume", file=sys.stderr)
        return None, stopper.exit_code
    return result, 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume and args.restart:
        raise UserError("--resume and --restart contradict each other.", "Give one of them.")
    check_input(args.photos)
    cfg, explicit = config_from_args(args)
    result, code = _run("train", args, cfg, explicit)
    if result is None:
        return code
    out_dir = result.out_dir
    if args.export == "unreal":
        run_export(out_dir, argparse.Namespace())
    if not args.quiet:
        m = result.metrics
        print(f"\nDone: {out_dir}\n  scene.ply: {m.num_splats:,} splats, trained at "
              f"{m.resolution} px\n"
              f"  held-out PSNR {m.psnr:.2f} dB, SSIM {m.ssim:.3f} "
              f"({_photos(m.images.test)} never trained on)\n"
              f"  next: splatkit export {shlex.quote(str(out_dir))} --for unreal")
    return 0


def _photos(n: int) -> str:
    return f"{n} photo" + ("" if n == 1 else "s")


def cmd_sfm(args: argparse.Namespace) -> int:
    check_input(args.photos)
    cfg, explicit = config_from_args(args)
    result, code = _run("sfm", args, cfg, explicit)
    if result is None:
        return code
    scene = result.scene
    if not args.quiet:
        print(f"\nPoses: {RunDir(result.out_dir).sparse} ({len(scene.cameras)} cameras, "
              f"{scene.points.shape[0]:,} points)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        import splatkit.export.unreal  # noqa: F401
    except ImportError:
        raise UserError("The Unreal export is not available in this installation.",
                        "Reinstall splatkit.") from None
    run_export(args.out, args)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report_command

    print(report_command(args.out))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from .viewer import view

    return view(args.out, port=args.port, open_browser=not args.no_browser)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import cmd_serve as run

    return run(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return doctor()


COMMANDS = {"train": cmd_train, "sfm": cmd_sfm, "export": cmd_export, "report": cmd_report,
            "view": cmd_view, "doctor": cmd_doctor, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"{PROG}: error: {e.what}", file=sys.stderr)
        if e.todo:
            print(e.todo, file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a path the OS refuses (name too long, loop, not a folder, read-only)
        if e.errno not in PATH_ERRORS:
            raise
        print(f"{PROG}: error: {e.filename or 'a path'}: {e.strerror or e}.", file=sys.stderr)
        print("Check the paths given (their length, their folders, your permissions) and run "
              "again; nothing of yours was changed.", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: this machine ran out of memory.", file=sys.stderr)
        print("Use a smaller --resolution or --max-splats (or --preset quick); finished stages are "
              "kept.", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: two lines for the user, the details in a file
        if os.environ.get("SPLATKIT_DEBUG"):
            raise
        path = write_crash_report(e, argv)
        print(f"{PROG}: internal error: {type(e).__name__}: {_first_line(e)}", file=sys.stderr)
        print(f"This is a bug in splatkit, not your mistake; your files are unchanged. Details: "
              f"{path} (please send it with a report).", file=sys.stderr)
        return 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else "")[:200]


def write_crash_report(e: BaseException, argv: list[str] | None) -> Path:
    """The traceback of an internal error, in the user's cache folder (XDG_CACHE_HOME)."""
    import time
    import traceback

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "splatkit"
    path = base / time.strftime("crash-%Y%m%d-%H%M%S.txt")
    args = argv if argv is not None else sys.argv
    text = (f"splatkit {__import__('splatkit').__version__}\nargs: {args}\n\n"
            + "".join(traceback.format_exception(e)))
    try:
        base.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError:
        path = Path("(could not be written)")
        print(text, file=sys.stderr)
    return path


if __name__ == "__main__":
    sys.exit(main())
