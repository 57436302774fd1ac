"""Browser: headless Chromium (tests/browser_util.py) joins the class as a student on the student
page, uploads 8 real photos (strecha fountain, downscaled to 300 px), waits for the job (the real
pipeline, tiny preset) to finish, downloads the Unreal export; then the teacher page shows the result.
With stub jobs (the shared ``stub_server``): the teacher page's controls keep their values across
its refreshes, a page on another port cannot act with the teacher's cookie, and the student page
says when the queue is held, in plain words. ``$SPLATKIT_SCREENSHOTS`` (a folder) keeps the
screenshots of both pages."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import pytest
from browser_util import browser
from serve_util import CODE, TEACHER, Server, jpeg_bytes, need_serve_deps, small_photos


def test_student_uploads_and_downloads(tmp_path, shared_datasets):
    need_serve_deps()
    src = shared_datasets / "strecha_fountain_p11" / "images"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    files = []
    for name, data in small_photos(src, 8, 300):
        p = tmp_path / "photos" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        files.append(str(p))
    with browser() as ctx:
        srv = Server(tmp_path / "data").start()
        try:
            page = ctx.new_page()
            page.goto(srv.url + "/")
            page.fill("#join-code", CODE)
            page.fill("#join-name", "Ada")
            page.click("#join-btn")
            page.wait_for_selector("#main:not(.hidden)")
            page.set_input_files("#files", files)
            page.select_option("#preset", "tiny")
            # every message the page shows, kept: "Job N is in the line" is cleared as soon as the
            # job starts, which an idle server does within the page's next refresh
            page.evaluate("""() => { window.said = [];
                new MutationObserver(() => window.said.push([document.querySelector('#msg').className,
                    document.querySelector('#msg').textContent]))
                  .observe(document.querySelector('#msg'), {childList: true, characterData: true,
                                                             subtree: true, attributes: true}); }""")
            page.click("#upload-btn")
            page.wait_for_selector(".job[data-state=done]", timeout=180_000)
            said = page.evaluate("window.said")
            assert any(cls == "ok" and "is in the line" in text for cls, text in said), said
            assert "likeness" in page.inner_text(".job .progress")
            assert page.locator(".job .previews img").count() >= 1
            with page.expect_download(timeout=120_000) as dl:
                page.click(".job a.dl-unreal")
            path = dl.value.path()
            names = zipfile.ZipFile(path).namelist()
            assert any(n.endswith(".ply") for n in names) and any(n.endswith(".unreal.json") for n in names)
            # the teacher's overview shows the student's thumbnail
            t = ctx.new_page()
            t.goto(srv.url + "/teacher")
            t.fill("#token", TEACHER)
            t.click("#login-btn")
            t.wait_for_selector(".gallery figure.thumb img", timeout=20_000)
            assert "Ada" in t.inner_text("#gallery")
            assert t.locator("#class-code").inner_text() == CODE
        finally:
            srv.stop()


def _stub_jobs(srv, name: str, n: int) -> tuple[object, list[int]]:
    s = srv.student(name)
    photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
    ids = [s.post(srv.url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=30).json()["id"]
           for _ in range(n)]
    return s, ids


def test_teacher_controls_keep_their_values(stub_server, tmp_path):
    """The re-run menu and a typed (unsaved) limit survive the page's 3-second refreshes while the
    job table changes; the class-code field changes the code and signs the old students out."""
    url, api = stub_server.url, stub_server.teacher()
    api.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10).raise_for_status()
    back = {"class_code": CODE, "jobs_per_student": 3, "paused": 0}
    with _settings_back(api, url, back), browser() as ctx:
        s, ids = _stub_jobs(stub_server, "Browser Kid", 2)  # they wait until the menu is set
        shots = Path(os.environ.get("SPLATKIT_SCREENSHOTS", tmp_path))
        t = ctx.new_page()
        t.goto(url + "/teacher")
        t.fill("#token", TEACHER)
        t.click("#login-btn")
        menu = f"#jobs tr[data-id='{ids[0]}'] select.rerun-preset"
        t.wait_for_selector(menu)
        t.select_option(menu, "standard")
        t.fill("#jobs_per_student", "7")  # typed, not saved
        t.click("h1")
        before = t.inner_text("#jobs")
        assert f"{ids[0]}\tBrowser Kid\ttiny\tqueued" in before
        api.post(url + "/api/teacher/settings", json={"paused": 0}, timeout=10).raise_for_status()
        # the jobs run to the end now: the table is rebuilt several times
        t.wait_for_selector(f"#jobs tr[data-id='{ids[1]}'][data-state=done]", timeout=60_000)
        t.wait_for_timeout(3500)
        assert t.inner_text("#jobs") != before
        assert t.input_value(menu) == "standard"
        assert t.input_value("#jobs_per_student") == "7"
        assert "Browser Kid" in t.inner_text("#students")
        t.screenshot(path=str(shots / "teacher.png"), full_page=True)
        t.click(f"#jobs tr[data-id='{ids[0]}'] button.rerun")
        t.wait_for_selector("#msg.ok >> text=Re-run queued")
        rerun = [j for j in api.get(url + "/api/teacher/overview", timeout=10).json()["jobs"]
                 if j["rerun_of"] == ids[0]]
        assert [j["preset"] for j in rerun] == ["standard"]
        api.post(f"{url}/api/teacher/jobs/{rerun[0]['id']}/cancel", timeout=10)
        t.click("#save-settings")
        t.wait_for_selector("#msg.ok >> text=Saved")
        assert api.get(url + "/api/teacher/overview", timeout=10).json()["settings"]["jobs_per_student"] == 7
        t.on("dialog", lambda d: d.accept())
        t.fill("#new-code", "room42")
        t.click("#change-code")
        t.wait_for_selector("#class-code >> text=ROOM42")
        assert s.get(url + "/api/me", timeout=10).status_code == 401


def test_page_on_another_port_cannot_act(stub_server):
    """A page served from another port of the same host (same site: the SameSite=Strict cookie is
    sent) posts a form to the teacher's settings and a fetch to cancel a job: both refused."""
    url, api = stub_server.url, stub_server.teacher()
    api.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10).raise_for_status()
    try:
        s, ids = _stub_jobs(stub_server, "victim", 1)
        evil = (f"<form id=f method=post action='{url}/api/teacher/settings'>"
                f"<input name=paused value=0><input name=class_code value=PWNED1></form>"
                f"<script>fetch('{url}/api/jobs/{ids[0]}/cancel', {{method: 'POST', mode: 'no-cors', "
                f"credentials: 'include'}}).finally(() => document.getElementById('f').submit());</script>")
        with _serve_html(evil) as evil_url, browser() as ctx:
            t = ctx.new_page()
            t.goto(url + "/teacher")
            t.fill("#token", TEACHER)
            t.click("#login-btn")
            t.wait_for_selector("#main:not(.hidden)")
            t.goto(evil_url)
            t.wait_for_selector("text=another web page", timeout=15_000)
        o = api.get(url + "/api/teacher/overview", timeout=10).json()
        assert o["settings"]["paused"] == 1 and o["class_code"] == CODE
        assert s.get(f"{url}/api/jobs/{ids[0]}", timeout=10).json()["state"] == "queued"
        s.post(f"{url}/api/jobs/{ids[0]}/cancel", timeout=10)
    finally:
        api.post(url + "/api/teacher/settings", json={"paused": 0}, timeout=10)


def test_student_page_shows_held_queue_and_plain_words(stub_server, tmp_path):
    url, api = stub_server.url, stub_server.teacher()
    shots = Path(os.environ.get("SPLATKIT_SCREENSHOTS", tmp_path))
    with browser() as ctx:
        page = ctx.new_page()
        page.goto(url + "/")
        page.fill("#join-code", CODE)
        page.fill("#join-name", "Page Reader")
        page.click("#join-btn")
        page.wait_for_selector("#main:not(.hidden)")
        assert "full" not in page.locator("#preset option").all_inner_texts()  # no GPU here
        assert page.inner_text("#preset-help")
        files = []
        for i in range(3):
            p = tmp_path / f"{i}.jpg"
            p.write_bytes(jpeg_bytes(color=(i * 70, 90, 40)))
            files.append(str(p))
        page.set_input_files("#files", files)
        page.select_option("#preset", "tiny")
        page.click("#upload-btn")
        page.wait_for_selector(".job[data-state=done]", timeout=60_000)
        text = page.inner_text("#jobs")
        assert "likeness" in text and "PSNR" not in text
        try:
            api.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10)
            page.wait_for_selector("#banner-held:not(.hidden)", timeout=10_000)
            page.screenshot(path=str(shots / "student.png"), full_page=True)
        finally:
            api.post(url + "/api/teacher/settings", json={"paused": 0}, timeout=10)
        page.wait_for_selector("#banner-held", state="hidden", timeout=10_000)
        # the server stops answering (requests cut off): the page says so, and recovers
        page.route("**/api/me", lambda route: route.abort())
        page.wait_for_selector("#banner-down:not(.hidden)", timeout=10_000)
        page.unroute("**/api/me")
        page.wait_for_selector("#banner-down", state="hidden", timeout=10_000)


@contextlib.contextmanager
def _settings_back(api, url: str, settings: dict):
    """Put the teacher settings back at the end, whatever happens."""
    try:
        yield
    finally:
        api.post(url + "/api/teacher/settings", json=settings, timeout=10)


@contextlib.contextmanager
def _serve_html(body: str):
    """One page on 127.0.0.1:<free port> (another origin than the server)."""

    class One(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = f"<!doctype html><html><body>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), One)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/attack.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_student_sees_time_reasons_and_keeps_seat(stub_server, tmp_path):
    """One job at a time (CPUs per job = the cluster's): a finished tiny job gives the measured
    time; a long job shows a bar with the time left; one behind it shows its place and its wait;
    the upload message goes once that job moved on; a cancelled job says who cancelled it. Then
    the teacher changes the class code: the page says why the student is out (not in red, no
    stale error), and joining with the new code brings back the seat and its results."""
    url, api = stub_server.url, stub_server.teacher()
    shots = Path(os.environ.get("SPLATKIT_SCREENSHOTS", tmp_path))
    files = []
    for i in range(3):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(jpeg_bytes(color=(i * 70, 20, 140)))
        files.append(str(p))
    back = {"class_code": CODE, "cpus_per_job": 1, "paused": 0}
    with _settings_back(api, url, back), browser() as ctx:
        api.post(url + "/api/teacher/settings", json={"cpus_per_job": 2}, timeout=10).raise_for_status()
        page = ctx.new_page()
        page.goto(url + "/")
        page.fill("#join-code", CODE)
        page.fill("#join-name", "Time Keeper")
        page.click("#join-btn")
        page.wait_for_selector("#main:not(.hidden)")

        def upload(preset):  # the new job's id (the newest card comes first)
            n = page.locator(".job").count()
            page.set_input_files("#files", files)
            page.select_option("#preset", preset)
            page.click("#upload-btn")
            page.wait_for_function(f"document.querySelectorAll('.job').length > {n}", timeout=30_000)
            return int(page.get_attribute(".job", "data-id"))

        first = upload("tiny")
        page.wait_for_selector(f".job[data-id='{first}'][data-state=done]", timeout=60_000)
        long = upload("standard")
        card = f".job[data-id='{long}']"
        page.wait_for_selector(f"{card}[data-state=running] .bar[role=progressbar]", timeout=60_000)
        page.wait_for_selector(f"{card} .progress >> text=left", timeout=20_000)
        behind = upload("tiny")
        assert page.inner_text("#msg") == f"Job {behind} is in the line (3 photos)."
        qpos = page.wait_for_selector(f".job[data-id='{behind}'] .qpos >> text=starts in", timeout=20_000)
        assert qpos.inner_text().startswith("Place in the line: 1")
        page.screenshot(path=str(shots / "student_times.png"), full_page=True)
        api.post(f"{url}/api/teacher/jobs/{long}/cancel", timeout=10).raise_for_status()
        page.wait_for_selector(f"{card}[data-state=cancelled] >> text=Your teacher cancelled this job.",
                               timeout=30_000)
        page.wait_for_selector(f".job[data-id='{behind}'][data-state=done]", timeout=60_000)
        page.wait_for_function("document.querySelector('#msg').textContent === ''", timeout=10_000)
        # the class code changes: out, told why, and back to the same seat with the results
        api.post(url + "/api/teacher/settings", json={"class_code": "ROOM77"}, timeout=10).raise_for_status()
        page.wait_for_selector("#join:not(.hidden)", timeout=10_000)
        msg = page.wait_for_selector("#msg.info >> text=changed the class code", timeout=10_000)
        assert "kept" in msg.inner_text()
        page.screenshot(path=str(shots / "student_signed_out.png"), full_page=True)
        page.fill("#join-code", "room77")
        page.fill("#join-name", "time keeper")
        page.click("#join-btn")
        page.wait_for_selector("#main:not(.hidden)")
        page.wait_for_selector(f".job[data-id='{first}'][data-state=done] a.dl-ply", timeout=10_000)
        assert page.locator(".job").count() == 3
        assert "err" not in (page.get_attribute("#msg", "class") or "")


def test_teacher_page_banner_paging_seats_and_hold(stub_server, tmp_path):
    """The teacher page: a banner while the server does not answer, gone when it does (no stale
    "Failed to fetch"); the queue held and released with one click; seats paged, one removed and
    one merged from the list; a running job's time; signing out ends the session on the server."""
    url, api = stub_server.url, stub_server.teacher()
    shots = Path(os.environ.get("SPLATKIT_SCREENSHOTS", tmp_path))
    for i in range(31):
        stub_server.student(f"Seat {i:02d}")
    dup, real = stub_server.student("Dup Ada"), stub_server.student("Real Ada")
    dup_id, real_id = dup.get(url + "/api/me").json()["id"], real.get(url + "/api/me").json()["id"]
    gone_id = stub_server.student("Remove Me").get(url + "/api/me").json()["id"]
    photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
    with _settings_back(api, url, {"paused": 0}), browser() as ctx:
        jid = dup.post(url + "/api/jobs", data={"preset": "standard"}, files=photos, timeout=30).json()["id"]
        t = ctx.new_page()
        t.on("dialog", lambda d: d.accept())
        t.goto(url + "/teacher")
        t.fill("#token", TEACHER)
        t.click("#login-btn")
        t.wait_for_selector("#main:not(.hidden)")
        # a running job shows its time
        t.wait_for_selector(f"#jobs tr[data-id='{jid}'][data-state=running] td.elapsed >> text=running",
                            timeout=60_000)
        # hold the queue: one click, no Save
        t.click("#hold")
        t.wait_for_selector("#hold >> text=Release the queue")
        assert api.get(url + "/api/teacher/overview", timeout=10).json()["settings"]["paused"] == 1
        t.click("#hold")
        t.wait_for_selector("#hold >> text=Hold the queue")
        assert api.get(url + "/api/teacher/overview", timeout=10).json()["settings"]["paused"] == 0
        # the server stops answering, then answers again
        t.route("**/api/teacher/overview*", lambda route: route.abort())
        t.wait_for_selector("#banner-down:not(.hidden)", timeout=10_000)
        t.screenshot(path=str(shots / "teacher_down.png"), full_page=True)
        t.unroute("**/api/teacher/overview*")
        t.wait_for_selector("#banner-down", state="hidden", timeout=10_000)
        assert "fetch" not in t.inner_text("#msg").lower()
        # seats, paged: the new ones are on the last page
        info = t.inner_text("#seats-info")
        assert info.startswith("page 1 of ") and int(info.split(" of ")[1].split()[0]) >= 2
        assert t.locator("#students tr").count() == 30
        while not t.is_disabled("#seats-next"):
            t.click("#seats-next")
            t.wait_for_timeout(300)
        t.wait_for_selector(f"#students tr[data-student='{gone_id}']", timeout=10_000)
        t.click(f"#students tr[data-student='{gone_id}'] button.remove-seat")
        t.wait_for_selector(f"#students tr[data-student='{gone_id}']", state="detached", timeout=10_000)
        t.select_option(f"#students tr[data-student='{dup_id}'] select.merge-into", str(real_id))
        t.wait_for_selector(f"#students tr[data-student='{dup_id}']", state="detached", timeout=10_000)
        names = {s["id"] for s in api.get(url + "/api/teacher/overview", timeout=10).json()["seat_names"]}
        assert gone_id not in names and dup_id not in names and real_id in names
        assert [j["id"] for j in real.get(url + "/api/me", timeout=10).json()["jobs"]] == [jid]
        t.screenshot(path=str(shots / "teacher_seats.png"), full_page=True)
        # sign out: the session ends on the server, a copy of its cookie is worthless
        cookie = [c for c in ctx.cookies() if c["name"] == "splatkit_teacher"][0]["value"]
        t.click("#logout")
        t.wait_for_selector("#login:not(.hidden)")
        import requests

        assert requests.get(url + "/api/teacher/overview", cookies={"splatkit_teacher": cookie},
                            timeout=10).status_code == 403
        real.post(f"{url}/api/jobs/{jid}/cancel", timeout=10)
