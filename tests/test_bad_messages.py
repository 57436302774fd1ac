"""Bad input class 8: messages that would send users the wrong way.

- a half-finished run's report suggests ``--resume`` (the command that continues it), never
  ``export``/``view``, which would fail; a run with poses only suggests training;
- metrics.json and the report state the resolution actually trained and evaluated (the working
  copies cap it), not only the one asked for;
- an internal error (a bug, not the user's mistake) prints two lines and the path of the details,
  never a traceback.
(An empty photos argument: tests/test_bad_options.py; an export of an unfinished run and
panoramas: the export and ingest test modules.)
"""

from __future__ import annotations

import json

import pytest
from tiny_project import stopped_run

from splatkit.cli import main
from splatkit.report import build_report


@pytest.fixture
def project(tiny_project):
    return tiny_project


def test_report_of_a_stopped_run_says_resume(tmp_path, project):
    out = tmp_path / "out"
    stopped_run(project, out, at=12)
    page = build_report(out).read_text()
    nxt = page[page.index("id='next'"):]
    assert "Training stopped at step 12" in nxt
    assert f"splatkit train {project} -o {out} --resume" in nxt
    assert "splatkit export" not in nxt and "splatkit view" not in nxt


def test_report_of_poses_only_says_train(tmp_path, project, capsys):
    out = tmp_path / "poses"
    assert main(["sfm", str(project), "-o", str(out), "--preset", "tiny", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["preset"] == "tiny"  # sfm writes it too
    nxt = build_report(out).read_text()
    nxt = nxt[nxt.index("id='next'"):]
    assert f"splatkit train {project} -o {out}" in nxt and "--resume" not in nxt


def test_resolution_trained_is_the_one_reported(tmp_path, project, capsys):
    out = tmp_path / "out"
    # the tiny project's photos are 160 px wide: --resolution 400 cannot be honoured in full
    assert main(["train", str(project), "-o", str(out), "--preset", "tiny", "--resolution", "400"]) == 0
    text = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["resolution"] == 160 and m["resolution_detail"] == {
        "requested": 400, "trained": 160, "evaluated": 160}
    assert "trained at 160 px" in text
    page = (out / "report.html").read_text()
    assert 'data-key="resolution">160</b> px on the longest side (asked for 400' in page


def test_internal_error_prints_two_lines_and_keeps_the_details(tmp_path, project, capsys,
                                                               monkeypatch):
    import splatkit.pipeline as pipeline

    def broken(*a, **k):
        raise ValueError("something splatkit got wrong")

    monkeypatch.setattr(pipeline, "run_train", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPLATKIT_DEBUG", raising=False)
    rc = main(["train", str(project), "-o", str(tmp_path / "out"), "--preset", "tiny"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-2] == "splatkit: internal error: ValueError: something splatkit got wrong"
    assert "not your mistake" in lines[-1]
    crash = next((tmp_path / "cache" / "splatkit").glob("crash-*.txt"))
    assert "Traceback" in crash.read_text() and str(crash) in lines[-1]
