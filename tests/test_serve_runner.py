"""The job runner of the classroom server (splatkit/serve/runner.py) against a real ``splatkit
serve`` on loopback: the local Ray listens on loopback only, a job past its time limit is stopped
(its worker process ends), and finished jobs' files go after the keep-days setting."""

from __future__ import annotations

import json
import sqlite3
import time

import psutil
from serve_util import descendants, jpeg_bytes

PHOTOS = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_ray_listens_on_loopback_only(stub_server):
    pids = {stub_server.proc.pid, *descendants(stub_server.proc.pid)}
    listening = [(c.pid, c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    names = {psutil.Process(p).name() for p, _, _ in listening}
    print("\nlistening:", sorted(names), len(listening), "sockets")
    assert any("gcs" in n or "raylet" in n for n in names), names  # Ray's services are among them
    assert listening and all(ip in LOOPBACK for _, ip, _ in listening), listening


def _wait(sess, url, jid, pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = sess.get(f"{url}/api/jobs/{jid}", timeout=10).json()
        if pred(j):
            return j
        time.sleep(0.3)
    raise AssertionError(f"job {jid}: {j}")


def test_time_limit_stops_the_job(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    t.post(url + "/api/teacher/settings", json={"job_minutes": 0.05}, timeout=10).raise_for_status()
    try:
        s = stub_server.student("too-long")
        # the stub's `standard` runs 160 steps of 0.25 s: 40 s, past the 3 s limit
        jid = s.post(url + "/api/jobs", data={"preset": "standard"}, files=PHOTOS, timeout=30).json()["id"]
        out = stub_server.data / "jobs" / str(jid) / "out"
        j = _wait(s, url, jid, lambda j: j["state"] in ("done", "failed", "cancelled"))
        assert j["state"] == "failed" and "time limit of 0.05 minutes" in j["error"], j
        worker = json.loads((out / "node.json").read_text())["pid"]
        t0 = time.time()
        while psutil.pid_exists(worker) and time.time() - t0 < 15:
            time.sleep(0.2)
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
        size = (out / "events.jsonl").stat().st_size
        time.sleep(1.0)
        assert (out / "events.jsonl").stat().st_size == size  # nothing runs on
        steps = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        assert max(e.get("step", 0) for e in steps) < 160
        assert j["run_seconds"] > 3
    finally:
        t.post(url + "/api/teacher/settings", json={"job_minutes": 0}, timeout=10)


def test_old_jobs_removed_after_keep_days(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    s = stub_server.student("old-timer")
    jid = s.post(url + "/api/jobs", data={"preset": "tiny"}, files=PHOTOS, timeout=30).json()["id"]
    _wait(s, url, jid, lambda j: j["state"] == "done")
    db = sqlite3.connect(stub_server.data / "splatkit.db", timeout=10)
    photos = db.execute("SELECT photos_dir FROM jobs WHERE id=?", (jid,)).fetchone()[0]
    with db:  # it ended three days ago
        db.execute("UPDATE jobs SET finished = finished - 3 * 86400 WHERE id=?", (jid,))
    db.close()
    assert s.get(f"{url}/api/jobs/{jid}/scene.ply", timeout=10).status_code == 200
    try:
        t.post(url + "/api/teacher/settings", json={"keep_days": 2}, timeout=10).raise_for_status()
        j = _wait(s, url, jid, lambda j: j["purged"], timeout=20)
        assert not j["has_ply"] and not j["previews"]
        assert not (stub_server.data / "jobs" / str(jid)).exists()
        assert not (stub_server.data / "uploads").joinpath(photos).exists()
        assert s.get(f"{url}/api/jobs/{jid}/scene.ply", timeout=10).status_code == 410  # gone, said
    finally:
        t.post(url + "/api/teacher/settings", json={"keep_days": 30}, timeout=10)
