"""The ``splatkit`` command: thin shells over the stages and the pipeline.

A user's mistake ends with two plain lines (what went wrong, what to do) and exit code 2, never a
traceback. Ctrl-C during training writes a checkpoint and prints the command that resumes.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from .config import PRESETS, RunConfig, preset_config
from .errors import UserError

PROG = "splatkit"


class _Parser(argparse.ArgumentParser):
    """argparse that ends a usage error with two plain lines and exit code 2."""

    def error(self, message: str):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.write(f"Run `{self.prog} --help` to see the options.\n")
        raise SystemExit(2)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("photos", type=Path, help="Folder of photos (JPEG or PNG), a video (MP4, MOV), a "
                   "COLMAP project or a transforms.json. It is never written to.")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="Output folder (default: <photos-folder-name>-splatkit beside the photos).")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="Named settings. quick: minutes on a laptop CPU at low resolution; "
                        "standard: a good CPU result in about an hour (the CPU default); "
                        "full: 30k steps (the GPU default).")
    p.add_argument("--steps", type=int, default=None, help="Training steps (overrides the preset).")
    p.add_argument("--resolution", type=int, default=None,
                   help="Longest image side, in pixels, used for training (overrides the preset).")
    p.add_argument("--sh-degree", type=int, choices=range(4), default=None,
                   help="View-dependent colour detail, 0-3 (overrides the preset).")
    p.add_argument("--strategy", choices=("default", "mcmc"), default=None,
                   help="How splats are added and removed: default (clone/split/prune as in 3DGS) "
                        "or mcmc (a fixed budget, see --max-splats).")
    p.add_argument("--max-splats", type=int, default=None, help="Splat budget for --strategy mcmc.")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="Where to train: auto uses an NVIDIA GPU when there is one, else the CPU.")
    p.add_argument("--seed", type=int, default=None,
                   help="Random seed of training. SfM is seeded too: the same photos, settings "
                        "and thread count give the same camera poses (docs/benchmarks.md says "
                        "what is reproducible).")
    _add_mapper_option(p)
    p.add_argument("--resume", action="store_true",
                   help="Continue an interrupted run from its last checkpoint in OUT.")
    p.add_argument("--quiet", action="store_true", help="Print nothing but errors.")


def _add_mapper_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapper", choices=("incremental", "global"), default=None,
                   help="How cameras are placed: incremental (default, robust) or global "
                        "(all at once, faster on large photo sets).")


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
    p.add_argument("photos", type=Path,
                   help="Folder of photos, a video, a COLMAP project or a transforms.json.")
    p.add_argument("-o", "--out", type=Path, default=None, help="Output folder.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="standard",
                   help="Named settings (image size used for matching).")
    _add_mapper_option(p)
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
    p.add_argument("--port", type=int, default=8765, help="Local port (default 8765; 0: any free).")
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
    """Options of the Unreal export, taken from its options dataclass when available."""
    try:
        from .export.unreal import add_cli_options
    except ImportError:
        return
    add_cli_options(p)


def _default_preset(device: str) -> str:
    """full on a GPU, standard on a CPU."""
    from .pipeline import resolve_device

    return "full" if resolve_device(device)[0] == "cuda" else "standard"


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    preset = args.preset or _default_preset(getattr(args, "device", "auto"))
    cfg = preset_config(preset)
    cfg.device = getattr(args, "device", "auto")
    if getattr(args, "mapper", None):
        cfg.sfm.mapper = args.mapper
    t = cfg.train
    for name, attr in (("steps", "steps"), ("resolution", "resolution"), ("sh_degree", "sh_degree"),
                       ("strategy", "strategy"), ("max_splats", "max_splats"), ("seed", "seed")):
        val = getattr(args, name, None)
        if val is not None:
            setattr(t, attr, val)
    if t.steps <= 0:
        raise UserError(f"--steps must be positive, got {t.steps}.", "Use e.g. --steps 2000.")
    if t.resolution < 32:
        raise UserError(f"--resolution {t.resolution} is too small.", "Use at least 32 pixels.")
    return cfg


def _check_photos(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} does not exist.", "Give the folder that holds your photos.")


def _setup_outputs(out_dir: Path, quiet: bool):
    from .events import EventBus, JsonlWriter
    from .progress import Terminal, TextLog

    bus = EventBus()
    term = Terminal(quiet=quiet)
    bus.subscribe(term)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = TextLog(out_dir / "log.txt")
    bus.subscribe(log)
    jsonl = JsonlWriter(out_dir / "events.jsonl")
    bus.subscribe(jsonl)
    return bus, [term, log, jsonl]


def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import check_out_dir, default_out_dir, run_train

    _check_photos(args.photos)
    out_dir = args.out or default_out_dir(args.photos)
    cfg = _config_from_args(args)
    if args.resume:
        saved = out_dir / "config.json"
        if not saved.exists():
            raise UserError(f"Nothing to resume in {out_dir} (no config.json).",
                            "Run the same command without --resume to start.")
        cfg = RunConfig.load(saved)
    check_out_dir(args.photos, out_dir)
    bus, closers = _setup_outputs(out_dir, args.quiet)

    stop = {"flag": False}

    def on_sigint(signum, frame):
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run_train(args.photos, out_dir, cfg, bus, resume=args.resume,
                           stop_flag=lambda: stop["flag"])
        if stop["flag"] and not result.interrupted:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _print_resume(args, out_dir, checkpoint=False)
        return 130
    finally:
        signal.signal(signal.SIGINT, old)
        for c in closers:
            c.close()
    if result.interrupted:
        _print_resume(args, out_dir, checkpoint=True)
        return 130
    if args.export == "unreal":
        from .export.unreal import run_export_cli

        run_export_cli(out_dir, argparse.Namespace())
    if not args.quiet:
        m = result.metrics
        print(f"\nDone: {out_dir}\n  scene.ply: {m['num_splats']:,} splats\n"
              f"  held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} "
              f"({m['images']['test']} photos never trained on)\n"
              f"  next: splatkit export {shlex.quote(str(out_dir))} --for unreal")
    return 0


def _print_resume(args: argparse.Namespace, out_dir: Path, checkpoint: bool) -> None:
    cmd = f"splatkit train {shlex.quote(str(args.photos))} -o {shlex.quote(str(out_dir))} --resume"
    what = "Checkpoint written." if checkpoint else "Finished stages are kept."
    print(f"\nInterrupted. {what} To continue:\n  {cmd}", file=sys.stderr)


def cmd_sfm(args: argparse.Namespace) -> int:
    from .pipeline import check_out_dir, default_out_dir, run_sfm_stage

    _check_photos(args.photos)
    out_dir = args.out or default_out_dir(args.photos)
    cfg = preset_config(args.preset)
    if args.mapper:
        cfg.sfm.mapper = args.mapper
    check_out_dir(args.photos, out_dir)
    bus, closers = _setup_outputs(out_dir, args.quiet)
    try:
        _, scene = run_sfm_stage(args.photos, out_dir, cfg, bus, {})
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        for c in closers:
            c.close()
    if not args.quiet:
        print(f"\nPoses: {out_dir / 'sparse' / '0'} ({len(scene.cameras)} cameras, "
              f"{scene.points.shape[0]:,} points)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from .export.unreal import run_export_cli
    except ImportError:
        raise UserError("The Unreal export is not available in this installation.",
                        "Reinstall splatkit.") from None
    run_export_cli(args.out, args)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    print(build_report(args.out))
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


if __name__ == "__main__":
    sys.exit(main())
