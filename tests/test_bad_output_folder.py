"""Bad input class 1: an output folder that contains the input, lies inside it, or holds the user's
own files under splatkit's names. Each case through the real CLI: exit code 2, two plain lines, no
traceback, the input's files (sha256 and mtime) unchanged, and the next, correct run not confused.
"""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_project import hashes

from splatkit.cli import main


@pytest.fixture
def project(tiny_project):
    return tiny_project


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "Traceback" not in text
    return rc, [ln for ln in cap.err.splitlines() if ln.strip()]


def _refused(capsys, watched, *argv: str) -> list[str]:
    before = hashes(watched)
    rc, err = _run(capsys, *argv)
    assert rc == 2, err
    assert len(err) == 2 and err[0].startswith("splatkit: error: "), err
    assert hashes(watched) == before, "the user's files were changed"
    return err


def test_photos_folder_of_a_colmap_project_into_the_project(tmp_path, capsys, project):
    proj = tmp_path / "proj"
    shutil.copytree(project, proj)
    err = _refused(capsys, proj, "train", str(proj / "images"), "-o", str(proj), "--preset", "tiny")
    assert "contains the photos folder" in err[0] and "-o" in err[1]
    assert sorted(p.name for p in proj.iterdir()) == ["images", "sparse"]  # nothing added


def test_transforms_json_into_its_own_folder(tmp_path, capsys, project):
    scene = tmp_path / "scene"
    shutil.copytree(project / "images", scene / "images")
    (scene / "transforms.json").write_text(json.dumps({"frames": []}))
    for out in (scene, scene / "out"):
        err = _refused(capsys, scene, "train", str(scene / "transforms.json"), "-o", str(out))
        assert "inside the folder of transforms.json" in err[0]
    assert not (scene / "out").exists()


def test_video_into_the_folder_that_holds_it_or_above(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "clip.mp4").write_bytes(b"\0" * 1000)
    for out in (clips, tmp_path):
        err = _refused(capsys, clips, "train", str(clips / "clip.mp4"), "-o", str(out))
        assert "contains the video" in err[0]


def test_a_folder_whose_images_hold_the_users_files(tmp_path, capsys, project):
    """A new run must not write over a user's own ``images/`` (or sparse/, scene.ply, ...)."""
    theirs = tmp_path / "mine"
    shutil.copytree(project / "images", theirs / "images")
    (theirs / "scene.ply").write_bytes(b"my own ply")
    err = _refused(capsys, theirs, "train", str(project), "-o", str(theirs), "--preset", "tiny")
    assert "images, scene.ply" in err[0] and "did not write" in err[0]
    assert "new or empty output folder" in err[1]


def test_output_inside_the_photos_and_then_the_right_run(tmp_path, capsys, project):
    proj = tmp_path / "proj"
    shutil.copytree(project, proj)
    _refused(capsys, proj, "train", str(proj), "-o", str(proj / "out"), "--preset", "tiny")
    _refused(capsys, proj, "train", str(proj), "-o", str(proj), "--preset", "tiny")
    # the suggested folder works, and the project is still untouched
    before = hashes(proj)
    rc, err = _run(capsys, "train", str(proj), "-o", str(tmp_path / "proj-splatkit"), "--preset", "tiny",
                   "--quiet")
    assert rc == 0, err
    assert hashes(proj) == before
    assert (tmp_path / "proj-splatkit" / "scene.ply").is_file()
