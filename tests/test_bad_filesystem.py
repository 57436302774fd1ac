"""Issue 12, class 5 (input side): filesystem trouble among the photos, through the real CLI.

Broken links, link loops, a linked photos folder, pipes, empty files, unreadable files and
folders, names that are not UTF-8, hold newlines or are very long, files that vanish during
ingest. Each skipped file gets one plain warning with its reason and the rest is used (exit 0);
when nothing is usable the error is two plain lines (exit 2). Never a traceback, never a change
to the photos folder. The photos are five of strecha_fountain_p11 at 200 px (``--preset quick``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from input_util import error_lines, run_cli, snapshot
from PIL import Image

from splatkit.cli import main

REPO = Path(__file__).resolve().parents[1]
FOUNTAIN = REPO / ".." / "shared" / "datasets" / "strecha_fountain_p11" / "images"
pytestmark = pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no strecha_fountain_p11")
QUICK = ["--preset", "quick"]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> list[Path]:
    """Six fountain photos at 200 px (five are used in a folder, one is kept for links)."""
    d = tmp_path_factory.mktemp("fountain200")
    out = []
    for f in sorted(FOUNTAIN.glob("*.jpg"))[:6]:
        with Image.open(f) as im:
            im.draft("RGB", (400, 400))
            im = im.convert("RGB")
            im.thumbnail((200, 200), Image.Resampling.LANCZOS)
            im.save(d / f.name, quality=92)
            out.append(d / f.name)
    return out


def _folder(d: Path, small: list[Path], names: list[str] | None = None, k: int = 5) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for src, name in zip(small[:k], names or [p.name for p in small[:k]], strict=True):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, d / name)
    return d


def test_links_pipes_and_empty_files_are_named_the_rest_used(tmp_path, capsys, small):
    """A linked photos folder holding broken links, link loops (files and folders), a second
    link to one folder, a pipe, an empty file and a folder named like a photo."""
    real = _folder(tmp_path / "real", small, k=4)
    extra = _folder(tmp_path / "elsewhere", small[4:], k=1)  # a folder of photos linked in
    (real / "broken.jpg").symlink_to("nowhere.jpg")
    (real / "loop1.jpg").symlink_to("loop2.jpg")
    (real / "loop2.jpg").symlink_to("loop1.jpg")
    (real / "more").symlink_to(extra)
    (real / "more_again").symlink_to(extra)
    (real / "sub").mkdir()
    (real / "sub" / "up").symlink_to("..")
    os.mkfifo(real / "pipe.jpg")
    (real / "empty.jpg").write_bytes(b"")
    (real / "folder.jpg").mkdir()
    link = tmp_path / "photos"
    link.symlink_to(real)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", link, "-o", out, *QUICK], watched=real)
    assert rc == 0, text
    for line in (
        "Skipped broken.jpg: a broken link: it points to nowhere.jpg, which does not exist.",
        "Skipped loop1.jpg: a link that goes round in a loop (it points to loop2.jpg).",
        "Skipped more_again: a link to a folder that is already searched (a loop, or a second link to it)",
        "Skipped sub/up: a link to a folder that is already searched",
        "Skipped pipe.jpg: not a regular file (a pipe, socket or device).",
        "Skipped empty.jpg: an empty file (0 bytes; copying it may have failed).",
        "Using 5 photos, 7 file(s) skipped.",
    ):
        assert line in text, line
    # the next run is not confused by what the first left: it reuses the working copies
    rc, text = run_cli(capsys, ["sfm", link, "-o", out, *QUICK], watched=real)
    assert rc == 0 and "(5 working copies reused)" in text, text


def test_awkward_names_are_shown_on_one_line_and_used(tmp_path, capsys, small):
    """Bytes that are not UTF-8, a newline, and names longer than a flat working copy can hold."""
    deep = "/".join(["a-very-long-folder-name-" + "x" * 60] * 3)
    names = [os.fsdecode(b"caf\xe9.jpg"), "new\nline.jpg", "y" * 240 + ".jpg", f"{deep}/photo.jpg", "ok.jpg"]
    d = _folder(tmp_path / "photos", small, names)
    (d / os.fsdecode(b"notes\xff.txt")).write_text("not a photo")
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", d, "-o", out, *QUICK], watched=d)
    assert rc == 0, text
    assert "Skipped notes\\xff.txt: not a photo: splatkit reads JPEG" in text
    assert "Using 5 photos, 1 file(s) skipped." in text
    assert all("\n" not in line for line in text.splitlines())
    log = (out / "log.txt").read_bytes().decode("utf-8")  # strict: the log is valid UTF-8
    assert "notes\\xff.txt" in log
    copies = sorted(p.name for p in (out / "work" / "images").glob("*.jpg"))
    assert "cafe.jpg" in copies and "new_line.jpg" in copies
    assert all(n.isascii() and len(n.encode()) <= 120 for n in copies), copies


def _drop_file_permissions_override() -> None:
    """In the child: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that file
    permissions apply to it as to any user (prctl PR_CAPBSET_DROP, then exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            os._exit(99)


DRIVER = """
import sys
from splatkit.cli import main
for args in sys.argv[1:]:
    print("RUN", args, flush=True)
    print("RC", main(args.split("|")), flush=True)
"""


def test_unreadable_files_and_folders(tmp_path, small):
    """chmod 000 on a photo, a subfolder and a whole photos folder (run as a user without the
    right to override file permissions: a subprocess, when the tests run as root)."""
    d = _folder(tmp_path / "photos", small)
    _folder(d / "locked", small[5:], k=1)
    shutil.copy2(small[5], d / "secret.jpg")
    closed = _folder(tmp_path / "closed", small)
    before = snapshot(d)
    for p in (d / "secret.jpg", d / "locked", closed):
        p.chmod(0)
    runs = [f"sfm|{d}|-o|{tmp_path / 'out'}|--preset|quick", f"sfm|{closed}|-o|{tmp_path / 'out2'}"]
    try:
        r = subprocess.run(
            [sys.executable, "-c", DRIVER, *runs], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            preexec_fn=_drop_file_permissions_override if os.geteuid() == 0 else None,
        )
    finally:
        for p in (d / "secret.jpg", d / "locked", closed):
            p.chmod(0o755)
    if r.returncode == 99:
        pytest.skip("cannot drop root's permission override here (prctl refused)")
    text = r.stdout
    assert "Traceback" not in text, text
    first, second = text.split("RUN sfm|" + str(closed))
    assert "RC 0" in first, first
    assert "Skipped secret.jpg: cannot be read (permission denied): check its permissions." in first
    assert "Skipped locked: this folder cannot be read (permission denied): its photos were not used" in first
    assert "Using 5 photos, 2 file(s) skipped." in first
    assert "RC 2" in second
    assert error_lines(second.replace("\nRC 2", ""))[:2] == [
        f"splatkit: error: The photo folder {closed} cannot be read (permission denied).",
        "Check its permissions, or copy the photos into a folder of your own.",
    ]
    assert snapshot(d) == before


def test_files_that_vanish_during_ingest(tmp_path, capsys, small, monkeypatch):
    """Photos deleted while ingest runs (after the folder was read): before their turn, and just
    after their working copy was made. The first is named, the second is still used."""
    import splatkit.ingest.photos as photos

    d = _folder(tmp_path / "photos", small, k=6)
    real = photos._make_working_copy

    def deleting(f, rel, *args):
        if rel == "0000.jpg":
            (d / "0003.jpg").unlink()  # gone before its turn
        out = real(f, rel, *args)
        if rel == "0001.jpg":
            f.unlink()  # gone after its working copy was written
        return out

    monkeypatch.setattr(photos, "_make_working_copy", deleting)
    rc = main(["sfm", str(d), "-o", str(tmp_path / "out"), *QUICK])
    text = "".join(capsys.readouterr())
    assert "Traceback" not in text
    assert rc == 0, text
    assert "Skipped 0003.jpg: it disappeared while splatkit was reading the folder." in text
    assert "Using 5 photos, 1 file(s) skipped." in text
    assert sorted(p.name for p in d.iterdir()) == ["0000.jpg", "0002.jpg", "0004.jpg", "0005.jpg"]


def test_nothing_usable_is_two_plain_lines(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").symlink_to("gone.jpg")
    (d / "b.jpg").symlink_to("b.jpg")
    (d / "c.jpg").write_bytes(b"")
    os.mkfifo(d / "d.png")
    rc, text = run_cli(capsys, ["sfm", d, "-o", tmp_path / "out"], watched=d)
    assert rc == 2
    assert error_lines(text) == [
        f"splatkit: error: No usable photos found in {d} (4 file(s) skipped, 4 of them unreadable).",
        "Check the files' permissions, or copy the photos into a folder of your own.",
    ]
    assert "Skipped b.jpg: a link that goes round in a loop (it points to b.jpg)." in text


@pytest.mark.parametrize(
    "make, want",
    [
        (lambda p: p.write_text("not a folder"), "is neither a folder of photos nor a video."),
        (lambda p: p.symlink_to(p.parent / "gone"), "is a link to"),
        (lambda p: p.symlink_to(p), "is a link to"),
        (lambda p: os.mkfifo(p), "is neither a folder nor a file (a pipe or a device?)."),
    ],
    ids=["a file", "a broken link", "a link to itself", "a pipe"],
)
def test_photos_argument_that_is_no_folder(tmp_path, capsys, make, want):
    p = tmp_path / "photos"
    make(p)
    rc, text = run_cli(capsys, ["train", p, "-o", tmp_path / "out"], watched=tmp_path)
    assert rc == 2
    err = error_lines(text)
    assert len(err) == 2 and want in err[0], err
    assert not (tmp_path / "out").exists()
