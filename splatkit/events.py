"""Typed progress events: the one stream that the terminal, the log, the report and the server read.

A stage calls ``emit(event)``; front ends subscribe with ``bus.subscribe(fn)``. Every event is a small
dataclass with a ``kind`` and can be turned into a JSON line (``events.jsonl`` in the output folder).
Readers get the same types back (:func:`read_events`, :func:`from_record`): each kind is defined
once, here (:data:`EVENTS`), for the writers and for the report and the server that read it back.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path


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


#: Every kind of event, by its ``kind``: what :func:`from_record` reads back.
EVENTS: dict[str, type[Event]] = {
    c.__dataclass_fields__["kind"].default: c
    for c in (StageStarted, StageFinished, Message, StageProgress, TrainStep, EvalResult)
}

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,)}


def _fits(value, type_name: str) -> bool:
    ok = _TYPES.get(str(type_name))
    return ok is None or (isinstance(value, ok) and not isinstance(value, bool))


def from_record(record) -> Event | None:
    """The typed event of one JSON record (a line of ``events.jsonl``); None for an unknown kind,
    a missing field or a field of the wrong type (a damaged or foreign line)."""
    cls = EVENTS.get(record.get("kind")) if isinstance(record, dict) else None
    if cls is None:
        return None
    kw = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.name not in record:
            if f.default is MISSING and f.default_factory is MISSING:
                return None
            continue
        if not _fits(record[f.name], f.type):
            return None
        kw[f.name] = record[f.name]
    event = cls(**kw)
    t = record.get("time")
    if _fits(t, "float") and math.isfinite(t):
        event.time = float(t)
    return event


def parse_lines(data: bytes | str) -> list[Event]:
    """The events of whole ``events.jsonl`` lines; lines that do not parse are skipped."""
    out = []
    for line in data.splitlines():
        try:
            event = from_record(json.loads(line))
        except ValueError:
            continue
        if event is not None:
            out.append(event)
    return out


def read_events(path: Path) -> list[Event]:
    """The events of ``events.jsonl`` (a crash mid-write or a damaged line costs that line only)."""
    path = Path(path)
    if not path.exists():
        return []
    return parse_lines(path.read_text(encoding="utf-8", errors="replace"))


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
