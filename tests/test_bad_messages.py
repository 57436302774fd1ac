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


def test_photos_from_one_spot_are_told_to_move_between_shots():
    """No parallax (a tripod panorama) is the cause even when the photos also fell apart."""
    from splatkit.sfm.diagnose import failure

    names = [f"{i:04d}.jpg" for i in range(8)]
    e = failure(names, 3, [names[:3], names[3:6]], {}, {}, no_parallax=0.93)
    assert "taken from about the same spot (93% of the matched pairs" in e.what
    assert "groups" not in str(e) and "Take a step sideways between photos" in e.todo
    e = failure(names, 3, [names[:3], names[3:6]], {}, {}, no_parallax=0.1)
    assert "2 groups that share nothing" in e.what  # real parallax: the groups are the cause


def _turning_on_the_spot(datasets, folder, n=8, step_deg=3.0, size=(320, 240)):
    """``n`` views of one fountain photo as a camera turning on the spot (yaw ``step_deg``
    apart): each view the photo warped by the pure-rotation homography K R K^-1."""
    import numpy as np
    from PIL import Image

    src = sorted((datasets / "strecha_fountain_p11" / "images").glob("*.jpg"))
    if not src:
        pytest.skip("strecha_fountain_p11 not in ../shared/datasets")
    im = Image.open(src[5])
    im.thumbnail((600, 600))
    (w, h), f = im.size, 1.0 * im.size[0]
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    Ko = np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1.0]])
    folder.mkdir()
    for i in range(n):
        a = np.radians(step_deg * (i - n / 2))
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        M = K @ R.T @ np.linalg.inv(Ko)  # output pixel -> photo pixel
        M = M / M[2, 2]
        view = im.transform(size, Image.Transform.PERSPECTIVE, tuple(M.flatten()[:8]),
                            Image.Resampling.BICUBIC)
        view.save(folder / f"{i:04d}.jpg", quality=92)


def test_real_photos_from_one_spot_are_told_the_parallax_cause(tmp_path, capsys, shared_datasets):
    """Pure rotation through the real SfM: every matched pair shows no change of viewpoint. What
    COLMAP makes of it varies with its threads: it places the 8 small views (fitting a baseline
    to noise: the run goes on with a warning) or places some with almost no 3D point (SfM stops).
    Either way the run names no parallax as the cause and how to shoot instead, never groups."""
    from input_util import run_cli

    _turning_on_the_spot(shared_datasets, tmp_path / "spot")
    rc, text = run_cli(capsys, ["sfm", tmp_path / "spot", "-o", tmp_path / "out"], tmp_path / "spot")
    assert rc in (0, 2), text
    if rc == 0:
        assert "100% of the matched photo pairs show no change of viewpoint" in text, text
    else:
        assert "taken from about the same spot (100% of the matched pairs" in text, text
        assert not (tmp_path / "out" / "sparse").exists()
    assert "Take a step sideways" in text and "groups" not in text, text


def test_placed_photos_without_measured_depth_stop_sfm():
    """A model of cameras and no 3D points (larger views of the same turning camera: COLMAP
    keeps 5 of 8 and no point) cannot be trained from: SfM stops with the cause."""
    from splatkit.sfm.diagnose import failure

    names = [f"{i:04d}.jpg" for i in range(8)]
    e = failure(names, 5, [names[:5], names[5:]], {}, {}, no_parallax=1.0, points=0)
    assert "same spot" in e.what and "groups" not in str(e)
    e = failure(names, 5, [names[:5]], {}, {}, no_parallax=0.2, points=3)
    assert "placed 5 of 8 photos but could measure the depth of only 3 points" in e.what
    assert "Take a step sideways" in e.todo


def test_the_fix_for_images_outside_a_transforms_json_does_not_loop(tmp_path, capsys):
    """Images listed as ../images: the printed folder is one that gives the images alone (no
    camera file in it), and the move named makes the paths valid."""
    import shlex

    from input_util import fox_subset, run_cli

    from splatkit.sources import detect_source

    d = fox_subset(tmp_path / "set", k=4)
    meta = json.loads((d / "transforms.json").read_text())
    for fr in meta["frames"]:
        fr["file_path"] = "../" + fr["file_path"]
    (d / "scene").mkdir()
    (d / "scene" / "transforms.json").write_text(json.dumps(meta))
    (d / "transforms.json").unlink()
    rc, text = run_cli(capsys, ["train", d / "scene" / "transforms.json", "-o", tmp_path / "out"], d)
    assert rc == 2 and "file_path lies outside the folder" in text
    todo = text.strip().splitlines()[-1]
    assert f"Move transforms.json to {d} " in todo
    suggested = shlex.split(todo.split("splatkit train ", 1)[1])[0]
    assert suggested == str(d / "images") and detect_source(d / "images") == "photos"
    # images beside the file, no images/ folder: never "give" the folder holding the file itself
    flat = tmp_path / "flat"
    flat.mkdir()
    for fr in meta["frames"]:
        name = fr["file_path"].split("/")[-1]
        shutil_copy(d / "images" / name, flat / name)
        fr["file_path"] = name
    fr["fl_x"] = -1.0  # one bad number: the file is refused
    (flat / "transforms.json").write_text(json.dumps(meta))
    rc, text = run_cli(capsys, ["train", flat, "-o", tmp_path / "out2"], flat)
    assert rc == 2 and f"splatkit train {flat}" not in text
    assert "to a folder of their own" in text.strip().splitlines()[-1]


def shutil_copy(a, b):
    import shutil

    shutil.copy(a, b)


def test_a_gpu_preset_on_a_cpu_asks_for_device_cpu(tmp_path, capsys, project, monkeypatch):
    import splatkit.render

    class Cpu:
        name, device = "cpu", "cpu"

    monkeypatch.setattr(splatkit.render, "select_renderer", lambda device="auto": Cpu())
    for preset, hours in (("full", 17), ("fast", 6)):
        rc = main(["train", str(project), "-o", str(tmp_path / "out"), "--preset", preset])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 2, err
        assert f"--preset {preset} is made for a GPU" in err[0] and f"about {hours} hours" in err[0]
        assert "--device cpu" in err[1] and "--preset standard" in err[1]
    assert not (tmp_path / "out").exists()
