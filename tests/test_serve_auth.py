"""Who may do what on the classroom server (splatkit/serve/auth.py, limits.py's body and attempt
limits), against a real ``splatkit serve`` on loopback: body limits with the server's memory
measured, cross-origin requests refused, no framing, seats (look-alike names, removed, merged,
capped), the teacher's sessions (ended by signing out, all at once), the class code signing
students out but keeping their seats, 64-bit job ids, file modes (a data folder made before too),
wrong codes and tokens slowed without locking the right one out, weak tokens refused, the
addresses printed for ``--host 0.0.0.0``."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from serve_util import CODE, TEACHER, Server, jpeg_bytes, need_serve_deps, rss_kib

ATTACK_MIB = 200


def _flood(port: int, path: str, chunked: bool, total: int = ATTACK_MIB << 20) -> tuple[bytes, int]:
    """POST a ``total``-byte body to ``path`` (declared, or chunked without a length) until the
    server answers or closes; returns (status line, bytes sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n") + "\r\n")
    s.sendall(head.encode())
    block = b"[" + b"1," * (512 * 1024 - 1) + b"1"  # 1 MiB of valid-looking JSON
    sent = 0
    try:
        s.setblocking(True)
        while sent < total:
            s.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            sent += len(block)
    except OSError:  # the server closed the connection: it stopped reading
        pass
    try:
        s.settimeout(20)
        status = s.recv(4096).split(b"\r\n", 1)[0]
    except OSError:
        status = b""
    s.close()
    return status, sent


def test_body_limits_hold_memory(stub_server):
    """A huge body to the unauthenticated JSON endpoints is refused after a few KiB, by length
    and while streaming (chunked, no length): the server's memory does not follow the body."""
    pid = stub_server.proc.pid
    base = rss_kib(pid)
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(rss_kib(pid))
            time.sleep(0.01)

    th = threading.Thread(target=sample)
    th.start()
    try:
        results = [_flood(stub_server.port, path, chunked)
                   for path in ("/api/join", "/api/teacher/login") for chunked in (False, True)]
    finally:
        stop.set()
        th.join()
    for status, _ in results:
        assert b" 413 " in status, results
    growth_mib = (max(peak) - base) / 1024
    print(f"\nserver RSS {base / 1024:.0f} MiB before, +{growth_mib:.1f} MiB at most while 4 requests "
          f"sent up to {ATTACK_MIB} MiB each (sent: {[r[1] >> 20 for r in results]} MiB)")
    assert growth_mib < 40, growth_mib
    # the server is still fine, and an ordinary join still works
    assert stub_server.student("after-flood").get(stub_server.url + "/api/me", timeout=10).status_code == 200


def test_cross_origin_requests_refused(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    evil = f"http://127.0.0.1:{stub_server.port + 1}"
    s = stub_server.student("csrf-victim")
    r = s.post(url + "/api/jobs", data={"preset": "tiny"}, headers={"Origin": evil},
               files=[("files", (f"{i}.jpg", jpeg_bytes())) for i in range(3)], timeout=10)
    assert r.status_code == 403 and "another web page" in r.json()["detail"]
    assert s.get(url + "/api/me", timeout=10).json()["jobs"] == []
    before = t.get(url + "/api/teacher/overview", timeout=10).json()["settings"]
    for hdr in ({"Origin": evil}, {"Referer": evil + "/attack.html"}, {"Origin": "null"}):
        change = {"paused": 1 - before["paused"], "class_code": "EVIL99"}
        for path, body in (("/api/teacher/settings", change),
                           ("/api/join", {"class_code": CODE, "name": "csrf"}),
                           ("/api/teacher/login", {"token": TEACHER}), ("/api/jobs/1/cancel", {})):
            r = t.post(url + path, json=body, headers=hdr, timeout=10)
            assert r.status_code == 403, (path, hdr, r.status_code)
    o = t.get(url + "/api/teacher/overview", timeout=10).json()
    assert o["settings"] == before and o["class_code"] == CODE
    # the server's own pages (same origin) are fine
    r = t.post(url + "/api/teacher/settings", json={}, headers={"Origin": url}, timeout=10)
    assert r.status_code == 200


def test_pages_not_framed(stub_server):
    for path in ("/", "/teacher", "/api/info"):
        h = requests.get(stub_server.url + path, timeout=10).headers
        assert h["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"


def test_seats(stub_server):
    url = stub_server.url
    ann = stub_server.student("Ann Lee")
    me = ann.get(url + "/api/me", timeout=10).json()
    # the same name, however typed, on another laptop: case, spaces, a zero-width space, a Cyrillic
    # letter, full-width letters
    for name in ("Ann Lee", "  ann   LEE ", "An\u200bn Lee", "\u0410nn Lee", "\uff21nn Lee"):
        r = requests.post(url + "/api/join", json={"class_code": CODE, "name": name}, timeout=10)
        assert r.status_code == 409 and "already joined" in r.json()["detail"]
    # her own laptop (her cookie) gets her seat back, no new token
    r = ann.post(url + "/api/join", json={"class_code": CODE, "name": "ann lee"}, timeout=10)
    assert r.status_code == 200 and r.json()["id"] == me["id"] and "token" not in r.json()
    # the teacher lets her in on another laptop: same seat, new token, the old one signed out
    t = stub_server.teacher()
    assert t.post(f"{url}/api/teacher/students/{me['id']}/rejoin", timeout=10).status_code == 200
    other = requests.Session()
    r = other.post(url + "/api/join", json={"class_code": CODE, "name": "Ann Lee"}, timeout=10)
    assert r.status_code == 200 and r.json()["id"] == me["id"]
    assert other.get(url + "/api/me", timeout=10).json()["id"] == me["id"]
    assert ann.get(url + "/api/me", timeout=10).status_code == 401
    assert requests.post(url + "/api/join", json={"class_code": CODE, "name": "Ann Lee"},
                         timeout=10).status_code == 409  # leave is for one join only
    seats = t.get(url + "/api/teacher/overview", timeout=10).json()["seat_names"]
    assert [s["name"] for s in seats].count("Ann Lee") == 1


def test_seats_removed_merged_and_capped(stub_server):
    """The teacher merges a seat into another (the jobs move, its browser is told why) and removes
    one (its waiting job is cancelled, the name is free again); a seat cap refuses new names."""
    url, t = stub_server.url, stub_server.teacher()
    t.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10).raise_for_status()
    try:
        extra, ada = stub_server.student("Ada2 Extra"), stub_server.student("Ada Real")
        photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 9, 9)))) for i in range(3)]
        jid = extra.post(url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=30).json()["id"]
        sid = extra.get(url + "/api/me", timeout=10).json()["id"]
        ada_id = ada.get(url + "/api/me", timeout=10).json()["id"]
        r = t.post(f"{url}/api/teacher/students/{sid}/merge", json={"into": ada_id}, timeout=10)
        assert r.status_code == 200
        me = extra.get(url + "/api/me", timeout=10)
        assert me.status_code == 401 and "Ada Real" in me.json()["detail"]
        assert me.headers["X-Signed-Out"] == "merged"
        assert [j["id"] for j in ada.get(url + "/api/me", timeout=10).json()["jobs"]] == [jid]
        r = t.post(f"{url}/api/teacher/students/{sid}/merge", json={"into": ada_id}, timeout=10)
        assert r.status_code == 404
        assert t.post(f"{url}/api/teacher/students/{ada_id}/remove", timeout=10).status_code == 200
        job = t.get(f"{url}/api/jobs/{jid}", timeout=10).json()
        assert job["state"] == "cancelled" and "seat was removed" in job["error"]
        assert "removed this seat" in ada.get(url + "/api/me", timeout=10).json()["detail"]
        names = [s["name"] for s in t.get(url + "/api/teacher/overview", timeout=10).json()["seat_names"]]
        assert "Ada Real" not in names and "Ada2 Extra" not in names
        assert stub_server.student("Ada Real").get(url + "/api/me", timeout=10).status_code == 200
        # a cap on seats: new names are refused, seats that exist still join
        n = t.get(url + "/api/teacher/overview", timeout=10).json()["seats_total"]
        t.post(url + "/api/teacher/settings", json={"max_seats": n}, timeout=10).raise_for_status()
        r = requests.post(url + "/api/join", json={"class_code": CODE, "name": "One Too Many"}, timeout=10)
        assert r.status_code == 403 and "full" in r.json()["detail"]
        r = requests.post(url + "/api/join", json={"class_code": CODE, "name": "ada real"}, timeout=10)
        assert r.status_code == 409  # an existing seat: taken, not "full"
    finally:
        t.post(url + "/api/teacher/settings", json={"paused": 0, "max_seats": 0}, timeout=10)


def test_teacher_session_cookie(stub_server):
    url = stub_server.url
    s = requests.Session()
    r = s.post(url + "/api/teacher/login", json={"token": TEACHER}, timeout=10)
    assert r.status_code == 200
    cookie = s.cookies.get("splatkit_teacher")
    assert cookie and TEACHER not in cookie
    assert s.get(url + "/api/teacher/overview", timeout=10).status_code == 200
    forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
    assert requests.get(url + "/api/teacher/overview", cookies={"splatkit_teacher": forged},
                        timeout=10).status_code == 403
    assert requests.get(url + "/api/teacher/overview", cookies={"splatkit_teacher": TEACHER},
                        timeout=10).status_code == 403  # the raw token is no cookie
    # signing out ends the session on the server: a copy of the cookie is worthless after it
    copy = {"splatkit_teacher": cookie}
    assert requests.get(url + "/api/teacher/overview", cookies=copy, timeout=10).status_code == 200
    assert s.post(url + "/api/teacher/logout", timeout=10).status_code == 200
    assert requests.get(url + "/api/teacher/overview", cookies=copy, timeout=10).status_code == 403
    # the teacher ends every session at once (two browsers; scripts' token still works)
    a, b = requests.Session(), requests.Session()
    for x in (a, b):
        x.post(url + "/api/teacher/login", json={"token": TEACHER}, timeout=10).raise_for_status()
    r = a.post(url + "/api/teacher/sessions/end-all", timeout=10)
    assert r.status_code == 200 and r.json()["ended"] >= 2
    for x in (a, b):
        assert x.get(url + "/api/teacher/overview", timeout=10).status_code == 403
    assert stub_server.teacher().get(url + "/api/teacher/overview", timeout=10).status_code == 200
    # health: students learn whether jobs run, not the server's details
    h = requests.get(url + "/api/health", timeout=10).json()
    assert h["ready"] and "cluster" not in h and "ray_error" not in h


def test_class_code_change_keeps_seats_and_results(stub_server):
    """A new class code signs everyone out, saying why; the student's own browser joins with the new
    code and finds its seat and finished job; on another computer the name is still taken."""
    url, t = stub_server.url, stub_server.teacher()
    old = stub_server.student("before-change")
    photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 40, 9)))) for i in range(3)]
    jid = old.post(url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=30).json()["id"]
    stub_server.wait_jobs(old, [jid], timeout=60)
    try:
        r = t.post(url + "/api/teacher/settings", json={"class_code": "new42"}, timeout=10)
        assert r.status_code == 200 and r.json()["class_code"] == "NEW42"
        me = old.get(url + "/api/me", timeout=10)
        assert me.status_code == 401 and me.headers["X-Signed-Out"] == "code"
        assert "changed the class code" in me.json()["detail"] and "kept" in me.json()["detail"]
        assert requests.post(url + "/api/join", json={"class_code": CODE, "name": "x"},
                             timeout=10).status_code == 403
        r = requests.post(url + "/api/join", json={"class_code": "NEW42", "name": "before-change"},
                          timeout=10)
        assert r.status_code == 409  # the seat is still hers
        r = old.post(url + "/api/join", json={"class_code": "new42", "name": "Before-Change"}, timeout=10)
        assert r.status_code == 200
        jobs = old.get(url + "/api/me", timeout=10).json()["jobs"]
        assert [(j["id"], j["state"], j["has_ply"]) for j in jobs] == [(jid, "done", True)]
        r = t.post(url + "/api/teacher/settings", json={"class_code": "no!"}, timeout=10)
        assert r.status_code == 400
    finally:
        t.post(url + "/api/teacher/settings", json={"class_code": CODE}, timeout=10)
    assert old.get(url + "/api/me", timeout=10).status_code == 401  # signed out again
    r = old.post(url + "/api/join", json={"class_code": CODE, "name": "before-change"}, timeout=10)
    assert r.status_code == 200


def test_job_ids_beyond_64_bits(stub_server):
    s, t = stub_server.student("big-ids"), stub_server.teacher()
    for jid in ("18446744073709551616", "9223372036854775808", "-1", "0"):
        assert s.get(f"{stub_server.url}/api/jobs/{jid}", timeout=10).status_code == 404, jid
        assert s.get(f"{stub_server.url}/jobs/{jid}/view/", timeout=10).status_code == 404, jid
        assert t.post(f"{stub_server.url}/api/teacher/jobs/{jid}/cancel", timeout=10).status_code == 404, jid
        assert t.get(f"{stub_server.url}/api/jobs/{jid}", timeout=10).status_code == 404, jid


def test_files_not_world_readable(stub_server):
    d = stub_server.data
    for p in (d, d / "splatkit.db", d / "splatkit.db-wal", d / "splatkit.db-shm", d / "teacher_token"):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
    assert (d / "splatkit.db").exists()


def _hammer(fn, threads: int = 8, seconds: float = 3.0) -> list[int]:
    """Status codes of ``fn()`` called over and over from ``threads`` threads, those answered
    within ``seconds``."""
    stop, codes = time.time() + seconds, []

    def loop(_):
        while time.time() < stop:
            code = fn()
            if time.time() < stop:
                codes.append(code)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(loop, range(threads)))
    return codes


def test_guessing_slowed_never_locked_out(tmp_path):
    """Its own server, on every interface (``--host 0.0.0.0``), with a data folder the teacher made
    (mode 755) and a token it makes. Wrong class codes and teacher tokens (header or sign-in) from
    one address go one at a time after the first few, however many are sent in parallel; the right
    code and token still get in meanwhile. The start message warns about the open host and gives
    addresses a laptop can open, never 0.0.0.0, and not the token."""
    need_serve_deps()
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    srv = Server(data, teacher_token=False, args=["--host", "0.0.0.0"]).start(wait_ray=False)
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        url = srv.url
        codes = [requests.post(url + "/api/join", json={"class_code": f"WRONG{i}", "name": "guess"},
                               timeout=10).status_code for i in range(10)]
        assert codes == [403] * 10
        guesses = _hammer(lambda: requests.post(url + "/api/join", json={"class_code": "NOPE99", "name": "g"},
                                               timeout=60).status_code)
        print(f"\n{len(guesses)} wrong class codes answered in 3 s from 8 threads once slowed")
        assert set(guesses) <= {403} and len(guesses) <= 6  # about one a second, not hundreds
        r = requests.post(url + "/api/join", json={"class_code": CODE, "name": "late"}, timeout=60)
        assert r.status_code == 200  # the right code gets in
        token = (srv.data / "teacher_token").read_text().strip()

        def wrong():
            return requests.get(url + "/api/teacher/overview", headers={"X-Teacher-Token": "nope"},
                                timeout=60).status_code

        def right():
            time.sleep(1.0)
            return requests.get(url + "/api/teacher/overview", headers={"X-Teacher-Token": token},
                                timeout=60).status_code

        first = [wrong() for _ in range(5)]
        with ThreadPoolExecutor(1) as ex:  # the right token during a flood of wrong ones
            later = ex.submit(right)
            flood = _hammer(wrong)
            assert later.result() == 200
        print(f"{len(flood)} wrong teacher tokens answered in 3 s from 8 threads once slowed")
        assert first == [403] * 5 and set(flood) <= {403} and len(flood) <= 6
        logins = [requests.post(url + "/api/teacher/login", json={"token": "nope"}, timeout=60).status_code
                  for _ in range(3)]
        assert logins == [403] * 3
        assert requests.post(url + "/api/teacher/login", json={"token": token}, timeout=60).status_code == 200
    finally:
        srv.stop()
    log = open(srv.log.name).read()
    assert CODE in log and token not in log and "teacher_token" in log
    assert "WARNING" in log and "every network" in log and "0.0.0.0" not in log, log
    assert "data folder was readable by other accounts" in log


@pytest.mark.parametrize("weak", ["abc", "aaaaaaaaaaaaaaaa", "password1234"])
def test_weak_teacher_token_refused(tmp_path, weak):
    r = subprocess.run([sys.executable, "-m", "splatkit", "serve", "--data", str(tmp_path / "d"),
                        "--teacher-token", weak], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
    assert r.returncode != 0 and "too easy to guess" in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and not (tmp_path / "d").exists()


@pytest.mark.parametrize("bad", ["x" * 300, ""])
def test_student_token_lookup_bounded(stub_server, bad):
    r = requests.get(stub_server.url + "/api/me", headers={"X-Student-Token": bad}, timeout=10)
    assert r.status_code == 401
