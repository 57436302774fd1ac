"""Ctrl-C and SIGTERM (what ``kill`` and container stops send) mean the same thing: stop cleanly.

While training runs, the first signal asks the loop to stop after the current step (it writes a
checkpoint and the CLI prints the command that resumes); a second one stops at once. Outside
training, a signal stops at once with :class:`KeyboardInterrupt`; finished stages are kept (and
SfM's own calls cancel their work between images, see ``splatkit.sfm.colmap``).

pycolmap installs glog's failure handler on SIGTERM when it is imported (it prints a native stack
dump and aborts), so :func:`install` imports it first and then puts Python's handler in place.
"""

from __future__ import annotations

import signal
import time


class Stopper:
    """The stop flag handed to the training loop: ``stopper()`` is True once a stop was asked.

    The loop's first poll *arms* it: from then on the first signal only sets the flag.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self.armed = False
        self.time = 0.0

    def __call__(self) -> bool:
        self.armed = True
        return self.requested

    def handle(self, signum, frame) -> None:
        self.signum = signum
        if self.requested or not self.armed:
            self.requested = True
            raise KeyboardInterrupt
        self.requested = True
        self.time = time.monotonic()

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number)."""
        return 128 + int(self.signum or signal.SIGINT)


def install(stopper: Stopper) -> dict:
    """Route SIGINT and SIGTERM to ``stopper``; returns the old handlers for :func:`restore`."""
    try:
        import pycolmap  # noqa: F401 - its import installs the native handler we replace
    except ImportError:  # pragma: no cover - pycolmap is a dependency
        pass
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.getsignal(sig)
        signal.signal(sig, stopper.handle)
    return old


def restore(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


#: The signals that mean "stop" (SfM's worker-thread wrapper listens to the same ones).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
