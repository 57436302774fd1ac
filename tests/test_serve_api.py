"""The classroom server's API against a real ``splatkit serve`` on loopback (embedded Ray, the real
pipeline with the ``tiny`` preset): upload, queue, progress, downloads (the Unreal zip's README, the
report without server paths); isolation between students; refused uploads (paths, links, zip
bombs, damaged zips, oversized, not images); the cap on a video's frames."""

from __future__ import annotations

import io
import json
import re
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest
from serve_util import CODE, Server, jpeg_bytes, need_serve_deps, small_photos

from splatkit.serve.jobs import scrub
from splatkit.serve.store import fair_order
from splatkit.serve.uploads import sniff


def test_fair_order_round_robin():
    # student 1 queued 4 jobs before students 2 and 3 queued one each
    q = [{"id": i, "student_id": 1} for i in (1, 2, 3, 4)] + [
        {"id": 5, "student_id": 2},
        {"id": 6, "student_id": 3},
    ]
    assert fair_order(q, {}) == [1, 5, 6, 2, 3, 4]
    # student 1 was just served: the others go first
    assert fair_order(q, {1: 100.0, 2: None, 3: 50.0}) == [5, 6, 1, 2, 3, 4]
    # a job interrupted by a restart (started before) keeps its place at the front
    q[3].update(attempts=1, dispatch_seq=7)
    assert fair_order(q, {1: 100.0, 2: None, 3: 50.0}) == [4, 5, 6, 1, 2, 3]


def test_scrub_removes_server_paths():
    data = Path("/srv/class-2025")
    text = "/srv/class-2025/uploads/ab12/video.mp4 does not exist; see /usr/lib/x/y.py"
    out = scrub(text, data)
    assert "/srv" not in out and "/usr" not in out and "video.mp4" in out and "y.py" in out


def test_sniff():
    assert sniff(jpeg_bytes()[:16]) == "jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 8) == "png"
    assert sniff(b"PK\x03\x04" + b"\0" * 12) == "zip"
    assert sniff(b"\0\0\0\x18ftypmp42" + b"\0" * 4) == "mp4"
    assert sniff(b"GIF89a" + b"\0" * 10) is None
    assert sniff(b"\0\0\0\x18ftypheic" + b"\0" * 4) == "heic"
    assert sniff(b"\0\0\0\x18ftypavif" + b"\0" * 4) == "avif"
    assert sniff(b"\0\0\0\x18ftypqt  " + b"\0" * 4) == "mp4"  # a phone's .mov


def test_heic_and_avif_uploads_are_photos(tmp_path):
    """An iPhone's HEIC photos (and AVIF) are taken as they are; the job's ingest reads them."""
    import io

    from PIL import Image, features

    from splatkit.serve.uploads import UploadLimits, save_upload

    pytest.importorskip("pillow_heif").register_heif_opener()
    fmts = ["HEIF"] + (["AVIF"] if features.check("avif") else [])
    for fmt in fmts:
        files = []
        for k in range(3):
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), (k * 60, 20, 20)).save(buf, fmt, quality=80)
            (tmp_path / f"{fmt}{k}").write_bytes(buf.getvalue())
            files.append((f"IMG_{k}.{fmt.lower()}", tmp_path / f"{fmt}{k}"))
        note, fps = save_upload(files, tmp_path / f"job_{fmt}", UploadLimits())
        assert note == "3 photos" and fps is None
        ext = ".heic" if fmt == "HEIF" else ".avif"
        assert sorted(p.suffix for p in (tmp_path / f"job_{fmt}").iterdir()) == [ext] * 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need_serve_deps()
    srv = Server(tmp_path_factory.mktemp("serve-api") / "data",
                 args=["--max-upload-mb", "2", "--max-video-frames", "10"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def photos(shared_datasets):
    src = shared_datasets / "strecha_fountain_p11" / "images"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    return small_photos(src, 8, 300)


def _zip(entries, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def test_join_and_auth(server):
    import requests

    r = requests.post(server.url + "/api/join", json={"class_code": "WRONG", "name": "eve"}, timeout=10)
    assert r.status_code == 403 and "class code" in r.json()["detail"]
    assert requests.get(server.url + "/api/me", timeout=10).status_code == 401
    assert requests.get(server.url + "/api/teacher/overview", timeout=10).status_code == 403
    s = server.student("dana")
    assert s.get(server.url + "/api/me", timeout=10).json()["name"] == "dana"
    assert s.get(server.url + "/api/teacher/overview", timeout=10).status_code == 403
    assert s.get(server.url + "/", timeout=10).status_code == 200
    assert "teacher" in s.get(server.url + "/teacher", timeout=10).text
    # the Unreal plugins by the names students look for, not source repositories
    plugins = requests.get(server.url + "/api/info", timeout=10).json()["plugins"]
    assert plugins["nanogs"] == "NanoGS" and len(plugins) >= 5
    assert not any("/" in name or "assumed" in name for name in plugins.values()), plugins


def test_upload_progress_download_and_isolation(server, photos):
    t0 = time.time()
    alice, bob = server.student("alice"), server.student("bob")
    r = alice.post(
        server.url + "/api/jobs",
        data={"preset": "tiny"},
        files=[("files", (n, b, "image/jpeg")) for n, b in photos],
        timeout=30,
    )
    assert r.status_code == 201, r.text
    job = r.json()
    jid = job["id"]
    assert job["state"] in ("queued", "running") and job["note"] == "8 photos"
    assert "out_dir" not in job and "photos_dir" not in job  # no server paths leak
    # live progress comes from events.jsonl
    seen_stages, first_progress = set(), None
    while time.time() - t0 < 150:
        j = alice.get(f"{server.url}/api/jobs/{jid}", timeout=10).json()
        if j["progress"].get("stage"):
            seen_stages.add(j["progress"]["stage"])
            first_progress = first_progress or time.time() - t0
        if j["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert j["state"] == "done", j
    assert j["progress"]["step"] == 40 and "psnr" in j["progress"]
    assert seen_stages & {"ingest", "sfm", "train"}
    print(f"upload to first progress event {first_progress:.1f}s, job done {time.time() - t0:.1f}s")
    base = f"{server.url}/api/jobs/{jid}"
    rep = alice.get(base + "/report.html", timeout=30)
    assert rep.status_code == 200 and "<html" in rep.text.lower()
    # the students' report: the next step points at the class page, no server paths anywhere
    assert "Unreal export (zip)" in rep.text and "splatkit export" not in rep.text
    assert f"<title>alice&#x27;s job {jid} (tiny)</title>" in rep.text and "report: out" not in rep.text
    assert str(server.data) not in rep.text and str(server.data) not in json.dumps(j)
    ply = alice.get(base + "/scene.ply", timeout=30)
    assert ply.status_code == 200 and ply.content.startswith(b"ply")
    pv = alice.get(f"{base}/previews/{j['previews'][0]}", timeout=30)
    assert pv.status_code == 200 and pv.content.startswith(b"\x89PNG")
    z = alice.get(base + "/unreal/nanogs.zip", timeout=120)
    assert z.status_code == 200, z.text
    zf = zipfile.ZipFile(io.BytesIO(z.content))
    names = zf.namelist()
    assert any(n.endswith(".ply") for n in names) and any(n.endswith(".unreal.json") for n in names)
    readme = zf.read(f"splatkit_job{jid}/README.txt").decode()
    assert "NanoGS" in readme and "Import" in readme and str(server.data) not in readme
    assert alice.get(base + "/unreal/nosuch.zip", timeout=30).status_code == 400
    assert alice.get(f"{server.url}/jobs/{jid}/view/", timeout=10).status_code == 200
    assert alice.get(f"{server.url}/jobs/{jid}/view/cameras.json", timeout=10).status_code == 200
    # another student sees none of it
    for path in ("", "/report.html", "/scene.ply", f"/previews/{j['previews'][0]}", "/unreal/nanogs.zip"):
        assert bob.get(base + path, timeout=10).status_code == 404, path
    assert bob.post(base + "/cancel", timeout=10).status_code == 404
    assert bob.get(f"{server.url}/jobs/{jid}/view/scene.ply", timeout=10).status_code == 404
    assert bob.get(server.url + "/api/me", timeout=10).json()["jobs"] == []
    # traversal in names of previews and the viewer's static files
    for path in (
        f"{base}/previews/..%2F..%2Fsplatkit.db",
        f"{base}/previews/%2E%2E%2Freport.html",
        f"{server.url}/jobs/{jid}/view/static/..%2F..%2F__init__.py",
    ):
        assert alice.get(path, timeout=10).status_code == 404, path
    # the teacher sees it, with the node that ran it
    t = server.teacher().get(server.url + "/api/teacher/overview", timeout=10).json()
    mine = [x for x in t["jobs"] if x["id"] == jid][0]
    assert mine["student"] == "alice" and mine["node_id"]
    assert t["class_code"] == CODE


def _post(sess, server, files, preset="tiny"):
    return sess.post(server.url + "/api/jobs", data={"preset": preset}, files=files, timeout=30)


def test_bad_uploads_refused(server):
    s = server.student("mallory")
    used_before = {d.name for d in (server.data / "uploads").glob("*")}
    jpg = jpeg_bytes()
    cases = {}
    link = zipfile.ZipInfo("photos/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    cases["dotdot"] = [
        ("files", ("p.zip", _zip([("../evil.jpg", jpg)] + [(f"{i}.jpg", jpg) for i in range(3)])))
    ]
    cases["absolute"] = [
        ("files", ("p.zip", _zip([("/etc/evil.jpg", jpg)] + [(f"{i}.jpg", jpg) for i in range(3)])))
    ]
    cases["symlink"] = [
        ("files", ("p.zip", _zip([(link, "/etc/passwd")] + [(f"{i}.jpg", jpg) for i in range(3)])))
    ]
    cases["bomb"] = [
        ("files", ("p.zip", _zip([("big.jpg", b"\0" * 5_000_000)] + [(f"{i}.jpg", jpg) for i in range(3)])))
    ]
    cases["path name"] = [("files", ("../../x.jpg", jpg))] * 3
    cases["not image"] = [("files", (f"{i}.jpg", b"hello, not a photo at all")) for i in range(3)]
    cases["cut off"] = [("files", (f"{i}.jpg", jpg[:60])) for i in range(3)]
    noisy = _noisy_jpeg()
    cases["cut to a third"] = [("files", ("0.jpg", noisy[: len(noisy) // 3]))] + [
        ("files", (f"{i}.jpg", noisy)) for i in (1, 2)]
    cases["too few"] = [("files", ("a.jpg", jpg))]
    cases["mix"] = [("files", ("a.jpg", jpg)), ("files", ("b.zip", _zip([("x.jpg", jpg)])))]
    good = _zip([(f"{i}.jpg", jpeg_bytes(color=(i * 50, 9, 9))) for i in range(4)], zipfile.ZIP_STORED)
    cases["cut zip"] = [("files", ("cut.zip", good[: len(good) // 2]))]
    at = good.index(jpg[:2], good.index(b"2.jpg"))  # inside the third photo's data: a CRC error
    cases["corrupt zip"] = [("files", ("bad.zip", good[:at + 40] + bytes(64) + good[at + 104:]))]
    expect = {
        "dotdot": "..",
        "absolute": "absolute",
        "symlink": "symbolic link",
        "bomb": "zip bomb",
        "path name": "not allowed",
        "not image": "not a JPEG",
        "cut off": "cannot be opened",
        "cut to a third": "0.jpg looks like a photo but cannot be opened",
        "too few": "at least",
        "mix": "not a mix",
        "cut zip": "damaged",
        "corrupt zip": "damaged",
    }
    for name, files in cases.items():
        r = _post(s, server, files)
        assert r.status_code in (400, 413), (name, r.status_code, r.text)
        assert expect[name] in r.json()["detail"], (name, r.json())
    big = [("files", (f"{i}.jpg", jpg + b"\0" * 600_000)) for i in range(4)]  # 2.4 MB > 2 MB
    r = _post(s, server, big)
    assert r.status_code == 413 and "larger than 2 MB" in r.json()["detail"]
    r = _post(s, server, [("files", (f"{i}.jpg", jpg)) for i in range(3)], preset="nosuch")
    assert r.status_code == 400 and "preset" in r.json()["detail"]
    assert s.get(server.url + "/api/me", timeout=10).json()["jobs"] == []  # nothing was queued
    assert not list((server.data / "tmp").glob("*"))  # nothing left behind
    assert not [d for d in (server.data / "uploads").glob("*") if d.name not in used_before]


def _noisy_jpeg() -> bytes:
    """A 320x240 JPEG of noise (its data, not its header, makes most of its bytes)."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=90)
    return buf.getvalue()


def test_limits_cancel_and_rerun(server):
    teacher = server.teacher()
    r = teacher.post(
        server.url + "/api/teacher/settings", json={"paused": 1, "jobs_per_student": 2}, timeout=10
    )
    assert r.status_code == 200 and r.json()["settings"]["paused"] == 1
    try:
        s = server.student("carol")
        three = [("files", (f"{i}.png", _png(i))) for i in range(3)]
        ids = [_post(s, server, three).json()["id"] for _ in range(2)]
        r = _post(s, server, three)
        assert r.status_code == 429 and "2 jobs" in r.json()["detail"]
        assert [j["queue_position"] for j in s.get(server.url + "/api/me", timeout=10).json()["jobs"]] == [
            2,
            1,
        ]
        assert s.post(f"{server.url}/api/jobs/{ids[0]}/cancel", timeout=10).json()["state"] == "cancelled"
        assert (
            teacher.post(f"{server.url}/api/teacher/jobs/{ids[1]}/cancel", timeout=10).json()["state"]
            == "cancelled"
        )
        r = teacher.post(
            f"{server.url}/api/teacher/jobs/{ids[1]}/rerun", json={"preset": "quick"}, timeout=10
        )
        assert r.status_code == 200 and r.json()["preset"] == "quick" and r.json()["rerun_of"] == ids[1]
        teacher.post(f"{server.url}/api/teacher/jobs/{r.json()['id']}/cancel", timeout=10)
        jobs = {j["id"]: j for j in s.get(server.url + "/api/me", timeout=10).json()["jobs"]}
        assert {j["state"] for j in jobs.values()} == {"cancelled"} and len(jobs) == 3
        # who cancelled, in plain words
        assert jobs[ids[0]]["error"] == "You cancelled this job."
        assert jobs[ids[1]]["error"] == "Your teacher cancelled this job."
        seen = teacher.get(f"{server.url}/api/jobs/{ids[0]}", timeout=10).json()
        assert seen["error"] == "Cancelled by the student."
    finally:
        teacher.post(
            server.url + "/api/teacher/settings", json={"paused": 0, "jobs_per_student": 3}, timeout=10
        )


def _png(i: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (80, 60), (i * 40, 100, 100)).save(buf, "PNG")
    return buf.getvalue()


def _video(path: Path, seconds: int = 20, fps: int = 10) -> None:
    """A small test clip: moving squares on a gradient (every frame differs, all sharp)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 96, 64, "yuv420p"
        ramp = np.linspace(0, 200, 96, dtype=np.uint8)[None, :, None].repeat(64, 0).repeat(3, 2)
        for k in range(seconds * fps):
            img = ramp.copy()
            x = (k * 3) % 80
            img[10:30, x:x + 16] = (250, 40, 40)
            img[36:56, 80 - x:96 - x] = (30, 220, 60)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def _claim_seconds(clip: bytes, factor: int) -> bytes:
    """``clip`` (an MP4) whose header durations (movie, track, media) claim ``factor`` times less
    than its frames last: a long clip that says it is short."""
    b = bytearray(clip)
    for box, at in ((b"mvhd", 16), (b"mdhd", 16), (b"tkhd", 20)):  # version 0 boxes
        i = b.find(box)
        assert i > 0 and b[i + 4] == 0, box
        o = i + 4 + at
        b[o:o + 4] = struct.pack(">I", struct.unpack(">I", b[o:o + 4])[0] // factor)
    return bytes(b)


@pytest.mark.parametrize("header_lies", [False, True])
def test_video_frames_capped(server, tmp_path, header_lies):
    """A 20 s clip at the preset's 2 frames per second would give 40 frames; the server's cap
    (--max-video-frames 10) lowers the rate so that at most 10 are kept (frames with too little
    motion may be dropped too). The cap counts the frames that decode, not the header's duration:
    the same clip claiming to last 2 s gives no more."""
    av = pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    _video(clip)
    data = clip.read_bytes()
    if header_lies:
        data = _claim_seconds(data, 10)
        (tmp_path / "lie.mp4").write_bytes(data)
        with av.open(str(tmp_path / "lie.mp4")) as c:
            st = c.streams.video[0]
            assert float(st.duration * st.time_base) <= 2.1  # what the header says
    s = server.student("filmer, header lies" if header_lies else "filmer")
    r = _post(s, server, [("files", ("clip.mp4", data, "video/mp4"))])
    assert r.status_code == 201, r.text
    assert "(20 s, 200 frames; at most 10 used)" in r.json()["note"], r.json()["note"]
    jid = r.json()["id"]
    events = server.data / "jobs" / str(jid) / "out" / "events.jsonl"
    took = None
    t0 = time.time()
    while took is None and time.time() - t0 < 240:
        for line in events.read_text().splitlines() if events.exists() else []:
            m = re.search(r"; kept (\d+),", json.loads(line).get("text", ""))
            took = int(m.group(1)) if m else took
        state = s.get(f"{server.url}/api/jobs/{jid}", timeout=10).json()["state"]
        if state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    s.post(f"{server.url}/api/jobs/{jid}/cancel", timeout=10)
    assert took is not None and 3 <= took <= 10, took


def test_progress_fraction_and_time_left():
    """Every stage with steps gets a fraction (the page's bar) and a time left: training from its
    own estimate, other stages (matching, placing cameras) from their pace so far."""
    from splatkit.serve.jobs import _apply

    st: dict = {}
    _apply(st, {"kind": "stage_started", "stage": "sfm", "time": 100.0})
    _apply(st, {"kind": "stage_progress", "stage": "sfm", "done": 0, "total": 4, "time": 100.0,
                "detail": "finding features"})
    assert st["fraction"] == 0 and st["eta_seconds"] is None
    _apply(st, {"kind": "stage_progress", "stage": "sfm", "done": 1, "total": 4, "time": 130.0,
                "detail": "matching (exhaustive)"})
    assert st["fraction"] == 0.25 and st["eta_seconds"] == 90.0 and "matching" in st["detail"]
    _apply(st, {"kind": "train_step", "step": 10, "total_steps": 40, "loss": 0.5, "eta_seconds": 33.0,
                "time": 200.0})
    assert st["stage"] == "train" and st["fraction"] == 0.25 and st["eta_seconds"] == 33.0


def test_queue_waits_from_measured_run_times(tmp_path):
    """Each queued job's wait: the running jobs' time left (their preset's median run time less
    what they ran), then the queue in fair order on the first free slot; unknown (None) when
    every slot is behind a preset that never finished."""
    from splatkit.serve.jobs import queue_waits
    from splatkit.serve.store import Store

    st = Store(tmp_path / "db")
    a, _ = st.join("a", None)
    b, _ = st.join("b", None)
    c, _ = st.join("c", None)
    for _ in range(3):  # three finished quick jobs of 100 s, 120 s, 140 s
        j = st.add_job(a["id"], "quick", "p", tmp_path)
        st.mark_running(j["id"])
        st.finish(j["id"], "done")
    with st._lock:
        st._db.execute("UPDATE jobs SET run_seconds = 80 + 20 * id")
    run = st.add_job(a["id"], "quick", "p", tmp_path)
    st.mark_running(run["id"])
    qb, qc = st.add_job(b["id"], "quick", "p", tmp_path), st.add_job(c["id"], "quick", "p", tmp_path)
    qa = st.add_job(a["id"], "standard", "p", tmp_path)
    qb2 = st.add_job(b["id"], "quick", "p", tmp_path)
    now = st.job(run["id"])["started"] + 20.0
    w = queue_waits(st, slots=2, now=now)
    assert w[qb["id"]] == 0.0  # a free slot
    assert w[qc["id"]] == 100.0  # the running one: median 120 s, ran 20 s
    assert w[qa["id"]] == 120.0  # after qb (120 s) on the first slot
    assert w[qb2["id"]] == 220.0  # after qc, on the second slot (the standard job holds the first)
    w = queue_waits(st, slots=1, now=now)
    assert [w[j["id"]] for j in (qb, qc, qa)] == [100.0, 220.0, 340.0]
    assert w[qb2["id"]] is None  # behind a standard job: no finished standard job to measure


def test_class_report_titled_with_the_students_job(tmp_path):
    """The students' copy of the report is titled with the student's job, not its folder ("out")."""
    from splatkit.serve.jobs import class_report

    out = tmp_path / "data" / "jobs" / "12" / "out"
    out.mkdir(parents=True)
    (out / "report.html").write_text("made by the run")
    job = {"id": 12, "out_dir": str(out), "student_name": "Ada <L>", "preset": "quick"}
    page = class_report(job).read_text()
    assert "<title>Ada &lt;L&gt;&#x27;s job 12 (quick)</title>" in page
    assert "<h1>Ada &lt;L&gt;&#x27;s job 12 (quick)</h1>" in page and "report: out" not in page
