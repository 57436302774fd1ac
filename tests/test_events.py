"""The event stream (splatkit/events.py): each kind defined once, written and read back typed."""

from __future__ import annotations

import json

from splatkit.events import (
    EVENTS,
    EvalResult,
    Event,
    JsonlWriter,
    Message,
    StageFinished,
    StageProgress,
    StageStarted,
    TrainStep,
    from_record,
    read_events,
)

SAMPLES = [
    StageStarted(stage="sfm", detail="8 photos"),
    StageProgress(stage="sfm", done=3, total=8, detail="matched"),
    StageFinished(stage="sfm", seconds=1.5, summary={"registered": 8}),
    TrainStep(step=10, total_steps=100, loss=0.25, num_splats=1234, eta_seconds=9.0, seconds_per_step=0.1),
    EvalResult(step=10, psnr=21.5, ssim=0.71),
    Message(stage="train", text="careful", level="warning"),
]


def test_every_kind_is_registered_once():
    def subclasses(c):
        return {c} | {s for d in c.__subclasses__() for s in subclasses(d)}

    assert set(EVENTS.values()) == subclasses(Event) - {Event}
    assert {type(e) for e in SAMPLES} == set(EVENTS.values())
    assert all(EVENTS[e.kind] is type(e) for e in SAMPLES)


def test_written_events_read_back_as_the_same_types(tmp_path):
    w = JsonlWriter(tmp_path / "events.jsonl")
    for e in SAMPLES:
        w(e)
    w.close()
    assert read_events(tmp_path / "events.jsonl") == SAMPLES  # dataclass equality, time included


def test_damaged_or_foreign_lines_cost_that_line_only(tmp_path):
    good = TrainStep(step=1, total_steps=2, loss=0.5, num_splats=3, eta_seconds=1.0, seconds_per_step=0.1)
    bad = [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"kind": "no_such_kind", "x": 1}),
        json.dumps({**json.loads(good.to_json()), "loss": "high"}),  # wrong type
        json.dumps({**json.loads(good.to_json()), "step": True}),  # a bool is not a number
        json.dumps({"kind": "eval", "step": 3, "ssim": 0.5}),  # psnr missing
    ]
    (tmp_path / "events.jsonl").write_text("\n".join([*bad, good.to_json(), '{"kind": "trai']))
    assert read_events(tmp_path / "events.jsonl") == [good]
    assert read_events(tmp_path / "missing.jsonl") == []
    assert from_record({"kind": "message", "stage": "x", "text": "t"}).level == "info"  # a default


def test_the_server_reads_the_same_stream(tmp_path):
    from splatkit.serve.jobs import progress

    w = JsonlWriter(tmp_path / "events.jsonl")
    for e in SAMPLES[:2] + SAMPLES[3:5]:
        w(e)
    w.close()
    state = progress(tmp_path)
    assert (state["stage"], state["step"], state["total_steps"], state["psnr"]) == ("train", 10, 100, 21.5)
