"""Front ends of the progress stream: the terminal (rich) and the text log.

Both only read :mod:`splatkit.events`; neither knows about stages' internals.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .events import (
    EvalResult,
    Event,
    Message,
    StageFinished,
    StageProgress,
    StageStarted,
    TrainStep,
)


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def describe(event: Event) -> str | None:
    """One plain line for an event, or None for events too frequent to log one by one."""
    if isinstance(event, StageStarted):
        return f"[{event.stage}] started {event.detail}".rstrip()
    if isinstance(event, StageFinished):
        extra = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in event.summary.items())
        return f"[{event.stage}] done in {event.seconds:.1f} s" + (f": {extra}" if extra else "")
    if isinstance(event, Message):
        prefix = "warning: " if event.level == "warning" else ""
        return f"[{event.stage}] {prefix}{event.text}"
    if isinstance(event, EvalResult):
        return f"[train] step {event.step}: held-out PSNR {event.psnr:.2f} dB, SSIM {event.ssim:.3f}"
    if isinstance(event, TrainStep):
        return (
            f"[train] step {event.step}/{event.total_steps} loss {event.loss:.4f} "
            f"splats {event.num_splats} {event.seconds_per_step:.3f} s/step "
            f"ETA {_fmt_seconds(event.eta_seconds)}"
        )
    if isinstance(event, StageProgress):
        return f"[{event.stage}] {event.done}/{event.total} {event.detail}".rstrip()
    return None


def _thinned(event: StageProgress) -> bool:
    """Counting progress (photos, cameras: more than 10 steps) is logged every 10th step and at
    the end; a stage's few phases (features, matching, mapping) are always logged."""
    return event.total > 10 and event.done != event.total and event.done % 10 != 0


class TextLog:
    """``log.txt``: stage lines, messages, evaluations and a training line every ``every`` steps."""

    def __init__(self, path: Path, every: int = 100):
        self._f = open(path, "a", encoding="utf-8")
        self.every = every

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainStep) and event.step % self.every and event.step != event.total_steps:
            return
        if isinstance(event, StageProgress) and _thinned(event):
            return
        line = describe(event)
        if line:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
            self._f.write(f"{stamp} {line}\n")
            self._f.flush()

    def close(self) -> None:
        self._f.close()


class Terminal:
    """Live progress on a terminal with rich; plain lines when not a terminal; nothing if quiet."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.live = sys.stderr.isatty() and not quiet
        self._progress = None
        self._task = None
        self._psnr = float("nan")
        self._last_plain = 0.0
        if self.live:
            from rich.console import Console

            self.console = Console(stderr=True)

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _ensure_bar(self, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, info="")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, TrainStep):
            if self.live:
                self._ensure_bar(event.total_steps)
                info = (f"loss {event.loss:.4f}  PSNR {self._psnr:.2f}  "
                        f"splats {event.num_splats:,}")
                self._progress.update(self._task, completed=event.step, info=info)
            elif time.time() - self._last_plain > 10 or event.step == event.total_steps:
                self._last_plain = time.time()
                self._print(describe(event))
            return
        if isinstance(event, EvalResult):
            self._psnr = event.psnr
        if isinstance(event, StageProgress) and not self.live:
            if time.time() - self._last_plain < 10 and event.done != event.total:
                return
            self._last_plain = time.time()
        if isinstance(event, StageFinished) and event.stage == "train":
            self.close()
        line = describe(event)
        if line and not (self.live and isinstance(event, StageProgress)):
            if self._progress is not None:
                self._progress.console.print(line, markup=False, highlight=False)
            else:
                self._print(line)
