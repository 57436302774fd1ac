"""Who may do what on the classroom server (splatkit/serve/auth.py, limits.py's body and attempt
limits), against a real ``splatkit serve`` on loopback: body limits with the server's memory
measured, cross-origin requests refused, no framing, seats, the teacher's session cookie, the class
code signing students out, 64-bit job ids, file modes, join attempts rate-limited."""

from __future__ import annotations

import socket
import stat
import threading
import time

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
    for name in ("Ann Lee", "  ann   LEE "):  # the same name, however typed, on another laptop
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
    seats = t.get(url + "/api/teacher/overview", timeout=10).json()["students"]
    assert [s["name"] for s in seats if s["signed_in"]].count("Ann Lee") == 1


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
    # health: students learn whether jobs run, not the server's details
    h = requests.get(url + "/api/health", timeout=10).json()
    assert h["ready"] and "cluster" not in h and "ray_error" not in h


def test_class_code_change_signs_students_out(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    old = stub_server.student("before-change")
    try:
        r = t.post(url + "/api/teacher/settings", json={"class_code": "new42"}, timeout=10)
        assert r.status_code == 200 and r.json()["class_code"] == "NEW42"
        assert old.get(url + "/api/me", timeout=10).status_code == 401
        assert requests.post(url + "/api/join", json={"class_code": CODE, "name": "x"},
                             timeout=10).status_code == 403
        r = requests.post(url + "/api/join", json={"class_code": "NEW42", "name": "before-change"},
                          timeout=10)
        assert r.status_code == 200  # a new class: the name is free again
        r = t.post(url + "/api/teacher/settings", json={"class_code": "no!"}, timeout=10)
        assert r.status_code == 400
    finally:
        t.post(url + "/api/teacher/settings", json={"class_code": CODE}, timeout=10)
    assert old.get(url + "/api/me", timeout=10).status_code == 401  # the old code back: still out


def test_job_ids_beyond_64_bits(stub_server):
    s, t = stub_server.student("big-ids"), stub_server.teacher()
    for jid in ("18446744073709551616", "9223372036854775808", "-1", "0"):
        assert s.get(f"{stub_server.url}/api/jobs/{jid}", timeout=10).status_code == 404, jid
        assert s.get(f"{stub_server.url}/jobs/{jid}/view/", timeout=10).status_code == 404, jid
        assert t.post(f"{stub_server.url}/api/teacher/jobs/{jid}/cancel", timeout=10).status_code == 404, jid
        assert t.get(f"{stub_server.url}/api/jobs/{jid}", timeout=10).status_code == 404, jid


def test_files_not_world_readable(stub_server):
    d = stub_server.data
    for p in (d, d / "splatkit.db", d / "splatkit.db-wal", d / "splatkit.db-shm", d / "teacher_token",
              d / "secret"):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
    assert (d / "splatkit.db").exists() and (d / "secret").exists()


def test_join_attempts_rate_limited_and_token_not_printed(tmp_path):
    """Its own server (the lock-out would stop other tests' joins), with a token it makes."""
    need_serve_deps()
    srv = Server(tmp_path / "data", teacher_token=False).start(wait_ray=False)
    try:
        codes = [requests.post(srv.url + "/api/join", json={"class_code": f"WRONG{i}", "name": "guess"},
                               timeout=10).status_code for i in range(12)]
        assert codes[:10] == [403] * 10 and codes[10:] == [429, 429], codes
        r = requests.post(srv.url + "/api/join", json={"class_code": CODE, "name": "late"}, timeout=10)
        assert r.status_code == 429 and "wait" in r.json()["detail"]  # even the right code waits
        token = (srv.data / "teacher_token").read_text().strip()
        logins = [requests.post(srv.url + "/api/teacher/login", json={"token": "nope"},
                                timeout=10).status_code for _ in range(6)]
        assert logins == [403] * 5 + [429]
    finally:
        srv.stop()
    log = open(srv.log.name).read()
    assert CODE in log and token not in log and "teacher_token" in log


@pytest.mark.parametrize("bad", ["x" * 300, ""])
def test_student_token_lookup_bounded(stub_server, bad):
    r = requests.get(stub_server.url + "/api/me", headers={"X-Student-Token": bad}, timeout=10)
    assert r.status_code == 401
