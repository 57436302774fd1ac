"""splatkit.fingerprint: what a run was trained on, and what changed since."""

from __future__ import annotations

import os

import pytest

from splatkit.fingerprint import SAMPLE, describe, differences, fingerprint


def _photos(d, n=3, size=1000):
    d.mkdir(parents=True)
    for i in range(n):
        (d / f"{i:04d}.jpg").write_bytes(bytes([i]) * size)
    (d / "notes.txt").write_text("not an input")
    return d


def test_names_are_relative_so_a_renamed_folder_is_no_change(tmp_path):
    a = fingerprint(_photos(tmp_path / "a"))
    b = fingerprint((tmp_path / "a").rename(tmp_path / "b"))
    assert a == b and sorted(a["files"]) == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert not any(differences(a, b).values())


def test_a_change_in_the_middle_of_a_large_file_is_seen(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    big = d / "0000.jpg"
    data = bytearray(b"x" * (10 * SAMPLE))
    big.write_bytes(bytes(data))
    before = fingerprint(d)
    data[len(data) // 2] = ord("y")  # same size, one byte in the middle
    big.write_bytes(bytes(data))
    diff = differences(before, fingerprint(d))
    assert diff == {"added": [], "removed": [], "changed": ["0000.jpg"]}
    assert describe(diff) == "1 changed (0000.jpg)"


def test_added_removed_and_a_video(tmp_path):
    d = _photos(tmp_path / "p")
    before = fingerprint(d)
    (d / "0001.jpg").unlink()
    (d / "sub").mkdir()
    (d / "sub" / "0009.png").write_bytes(b"png")
    diff = differences(before, fingerprint(d))
    assert diff["removed"] == ["0001.jpg"] and diff["added"] == ["sub/0009.png"]
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"v" * 5000)
    v1 = fingerprint(video)
    renamed = fingerprint(video.rename(tmp_path / "other.mp4"))
    assert v1 == renamed and list(v1["files"]) == ["video"]
    (tmp_path / "other.mp4").write_bytes(b"w" * 5000)
    assert describe(differences(v1, fingerprint(tmp_path / "other.mp4"))) == "1 changed (the video)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_under_a_photos_name_is_recorded_not_opened(tmp_path):
    import threading

    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 photo")
    os.mkfifo(tmp_path / "b.jpg")  # opening it for reading would wait for a writer forever
    out = {}
    t = threading.Thread(target=lambda: out.update(fingerprint(tmp_path)), daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "fingerprint blocked on a named pipe"
    assert out["files"]["b.jpg"] == [-1, "not a file"] and out["files"]["a.jpg"][0] == 8
