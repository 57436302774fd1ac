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


def test_a_folder_of_the_users_own_files_is_refused(tmp_path, capsys, project):
    """``-o ~``: a folder splatkit did not make, full of the user's files, is not written into."""
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    (home / ".bashrc").write_text("mine too")
    err = _refused(capsys, home, "train", str(project), "-o", str(home), "--preset", "tiny")
    assert "already holds files that splatkit did not make (.bashrc, Documents, notes.txt)" in err[0]
    assert f"-o {home / 'splatkit-run'}" in err[1]
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", "Documents", "notes.txt"]
    rc, err = _run(capsys, "train", str(project), "-o", str(home / "splatkit-run"), "--preset", "tiny",
                   "--quiet")
    assert rc == 0, err  # the suggested folder works


def test_an_output_name_longer_than_the_file_system_allows(tmp_path, capsys, project):
    with pytest.raises(SystemExit) as e:  # a usage error, as argparse ends it
        main(["train", str(project), "-o", str(tmp_path / ("x" * 300)), "--preset", "tiny"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and "has a name of 300 bytes" in err[0] and "at most 255" in err[0], err
    assert len(err) == 2 and not any(tmp_path.iterdir())
    deep = tmp_path / "/".join(["d" * 200] * 25)  # each name fine, the whole path too long
    rc, err = _run(capsys, "train", str(project), "-o", str(deep), "--preset", "tiny")
    assert rc == 2 and len(err) == 2 and "internal error" not in err[0], err
    assert "File name too long" in err[0] or "too long" in err[0]


def test_a_scene_ply_that_is_a_folder_is_not_an_unfinished_run(tmp_path, capsys, project):
    from tiny_project import stopped_run

    out = tmp_path / "out"
    stopped_run(project, out)
    (out / "scene.ply").mkdir()
    (out / "scene.ply" / "mine.txt").write_text("a folder of the user's")
    for argv in (("train", str(project), "-o", str(out), "--resume"),
                 ("train", str(project), "-o", str(out), "--preset", "tiny"),
                 ("export", str(out)), ("view", str(out), "--no-browser", "--port", "0")):
        err = _refused(capsys, out / "scene.ply", *argv)
        assert "holds scene.ply/, which is not what splatkit writes" in err[0], err
        assert "unfinished" not in err[0] and "--resume" not in err[1]
    shutil.move(str(out / "scene.ply"), str(tmp_path / "kept"))
    rc, err = _run(capsys, "train", str(project), "-o", str(out), "--resume", "--quiet")
    assert rc == 0, err
