"""The teacher's routes (splatkit/serve/routes_teacher.py) against a real ``splatkit serve`` on
loopback: the job table is paged, the students list carries each student's jobs with times and
attempts, one zip holds every student's finished results, settings are checked."""

from __future__ import annotations

import io
import time
import zipfile

import requests
from serve_util import jpeg_bytes

PHOTOS = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]


def test_paging_students_and_all_results(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    ids = {}
    for name in ("Zip Ada", "Zip Bo"):
        s = stub_server.student(name)
        ids[name] = s.post(url + "/api/jobs", data={"preset": "tiny"}, files=PHOTOS, timeout=30).json()["id"]
    stub_server.wait_jobs(t, list(ids.values()), timeout=60)
    o = t.get(url + "/api/teacher/overview", params={"per_page": 1}, timeout=10).json()
    assert o["per_page"] == 1 and o["pages"] == o["total"] >= 2 and len(o["jobs"]) == 1
    assert o["jobs"][0]["id"] == max(j for j in ids.values())  # newest first
    last = t.get(url + "/api/teacher/overview", params={"per_page": 1, "page": 10**6}, timeout=10).json()
    assert last["page"] == last["pages"] and last["jobs"][0]["id"] < o["jobs"][0]["id"]
    seats = {s["name"]: s for s in o["students"]}
    job = seats["Zip Ada"]["jobs"][0]
    assert job["id"] == ids["Zip Ada"] and job["state"] == "done" and job["attempts"] == 1
    assert job["finished"] >= job["started"] >= job["created"] and job["run_seconds"] > 0
    r = t.get(url + "/api/teacher/results.zip", timeout=60)
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    for name, jid in ids.items():
        folder = name.replace(" ", "_")
        assert any(n.startswith(folder) and f"/job{jid}_tiny/scene.ply" in n for n in names), names
    assert requests.get(url + "/api/teacher/results.zip", timeout=10).status_code == 403
    time.sleep(0.2)
    assert not list((stub_server.data / "tmp").glob("*.zip"))  # the zip was removed after sending


def test_settings_checked(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    before = t.get(url + "/api/teacher/overview", timeout=10).json()["settings"]
    for bad in ({"jobs_per_student": 0}, {"jobs_per_student": 2.5}, {"job_minutes": -1}, {"keep_days": "x"}):
        r = t.post(url + "/api/teacher/settings", json=bad, timeout=10)
        assert r.status_code == 400, bad
    assert t.get(url + "/api/teacher/overview", timeout=10).json()["settings"] == before
    assert requests.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10).status_code == 403
