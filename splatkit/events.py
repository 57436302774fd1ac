"""Typed progress events: the one stream that the terminal, the log, the report and the server read.

A stage calls ``emit(event)``; front ends subscribe with ``bus.subscribe(fn)``. Every event is a small
dataclass with a ``kind`` and can be turned into a JSON line (``events.jsonl`` in the output folder).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass
class Event:
    kind: str = field(init=False, default="event")
    time: float = field(init=False, default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


@dataclass
class StageStarted(Event):
    stage: str
    detail: str = ""
    kind: str = field(init=False, default="stage_started")


@dataclass
class StageFinished(Event):
    stage: str
    seconds: float
    summary: dict = field(default_factory=dict)
    kind: str = field(init=False, default="stage_finished")


@dataclass
class Message(Event):
    """A line for the user (warnings, skipped photos, hints)."""

    stage: str
    text: str
    level: str = "info"  # info | warning
    kind: str = field(init=False, default="message")


@dataclass
class StageProgress(Event):
    """Progress inside a non-training stage (e.g. images matched)."""

    stage: str
    done: int
    total: int
    detail: str = ""
    kind: str = field(init=False, default="stage_progress")


@dataclass
class TrainStep(Event):
    step: int
    total_steps: int
    loss: float
    num_splats: int
    eta_seconds: float
    seconds_per_step: float
    kind: str = field(init=False, default="train_step")


@dataclass
class EvalResult(Event):
    step: int
    psnr: float
    ssim: float
    kind: str = field(init=False, default="eval")


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers; a subscriber that raises is reported once and dropped."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> None:
        self._subs.append(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        if fn in self._subs:
            self._subs.remove(fn)

    def emit(self, event: Event) -> None:
        for fn in list(self._subs):
            fn(event)


class JsonlWriter:
    """Appends every event as a JSON line to a file (the machine-readable log)."""

    def __init__(self, path) -> None:
        self._f = open(path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._f.write(event.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


#: A bus that drops everything; the default for library calls.
NULL_BUS = EventBus()
