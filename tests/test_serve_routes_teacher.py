"""The teacher's routes (splatkit/serve/routes_teacher.py) against a real ``splatkit serve`` on
loopback: the job table, the seats and the gallery are paged, the students list carries each
student's jobs with times and attempts, running jobs their time so far, one zip holds every
student's finished results (made once per set of results: a GET changes nothing), settings are
checked, and a job's files removed by retention answer in plain words, without server paths."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

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
    seats = {}  # the seats are paged too, in name order: other tests' students may come first
    for sp in range(1, o["seats_pages"] + 1):
        page = t.get(url + "/api/teacher/overview", params={"per_page": 1, "seats_page": sp},
                     timeout=10).json()
        seats.update({s["name"]: s for s in page["students"]})
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
    # ten GETs at once (e.g. image tags on a page): one zip, made once, the same bytes each time
    made = list((stub_server.data / "cache").glob("results-*.zip"))
    assert len(made) == 1
    stamp = made[0].stat().st_mtime_ns
    with ThreadPoolExecutor(10) as ex:
        bodies = list(ex.map(lambda _: t.get(url + "/api/teacher/results.zip", timeout=60).content,
                             range(10)))
    assert all(b == r.content for b in bodies)
    assert list((stub_server.data / "cache").glob("results-*.zip")) == made
    assert made[0].stat().st_mtime_ns == stamp
    # a new result: a new zip, the old one gone
    s = stub_server.student("Zip Cy")
    new = s.post(url + "/api/jobs", data={"preset": "tiny"}, files=PHOTOS, timeout=30).json()["id"]
    stub_server.wait_jobs(t, [new], timeout=60)
    got = t.get(url + "/api/teacher/results.zip", timeout=60).content
    names = zipfile.ZipFile(io.BytesIO(got)).namelist()
    assert any(f"/job{new}_tiny/" in n for n in names)
    assert len(list((stub_server.data / "cache").glob("results-*.zip"))) == 1 and not made[0].exists()


def test_seats_and_gallery_paged_and_running_time(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    for i in range(32):
        stub_server.student(f"Pager {i:02d}")
    o = t.get(url + "/api/teacher/overview", timeout=10).json()
    assert len(o["students"]) == 30 and o["seats_pages"] >= 2 and o["seats_total"] >= 32
    last = t.get(url + "/api/teacher/overview", params={"seats_page": 10**6}, timeout=10).json()
    assert last["seats_page"] == last["seats_pages"] and 0 < len(last["students"]) <= 30
    assert not {s["id"] for s in last["students"]} & {s["id"] for s in o["students"]}
    assert len(o["gallery"]) <= 24 and o["gallery_pages"] >= 1
    assert len(o["seat_names"]) == o["seats_total"]
    # a running job shows its time so far
    s = stub_server.student("Slow Runner")
    jid = s.post(url + "/api/jobs", data={"preset": "standard"}, files=PHOTOS, timeout=30).json()["id"]
    t0 = time.time()
    while time.time() - t0 < 60:
        j = t.get(f"{url}/api/jobs/{jid}", timeout=10).json()
        if j["state"] == "running" and j["elapsed_s"] > 0.5:
            break
        time.sleep(0.3)
    assert j["state"] == "running" and j["elapsed_s"] > 0.5, j
    s.post(f"{url}/api/jobs/{jid}/cancel", timeout=10)


def test_removed_files_answer_without_paths(stub_server):
    """After the keep-days setting removed a job's files, every download of it answers 410 in plain
    words, with no server folder in any answer."""
    url, t = stub_server.url, stub_server.teacher()
    s = stub_server.student("Kept Short")
    jid = s.post(url + "/api/jobs", data={"preset": "tiny"}, files=PHOTOS, timeout=30).json()["id"]
    stub_server.wait_jobs(s, [jid], timeout=60)
    time.sleep(1.0)  # ended more than 0.1 s ago: the purge that the new setting starts removes it
    try:
        t.post(url + "/api/teacher/settings", json={"keep_days": 0.000001}, timeout=10).raise_for_status()
        t0 = time.time()
        while not s.get(f"{url}/api/jobs/{jid}", timeout=10).json()["purged"] and time.time() - t0 < 30:
            time.sleep(0.3)
    finally:
        t.post(url + "/api/teacher/settings", json={"keep_days": 30}, timeout=10)
    base = f"{url}/api/jobs/{jid}"
    for path in (base + "/report.html", base + "/scene.ply", base + "/previews/0000.png",
                 base + "/unreal/nanogs.zip", f"{url}/jobs/{jid}/view/scene.ply",
                 f"{url}/jobs/{jid}/view/cameras.json"):
        r = s.get(path, timeout=30)
        assert r.status_code == 410 and "removed" in r.json()["detail"], (path, r.status_code, r.text)
        assert str(stub_server.data) not in r.text and not re.search(r"/\w+/\w+/", r.text), r.text
    assert str(stub_server.data) not in json.dumps(s.get(url + "/api/me", timeout=10).json())


def test_settings_checked(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    before = t.get(url + "/api/teacher/overview", timeout=10).json()["settings"]
    for bad in ({"jobs_per_student": 0}, {"jobs_per_student": 2.5}, {"job_minutes": -1}, {"keep_days": "x"}):
        r = t.post(url + "/api/teacher/settings", json=bad, timeout=10)
        assert r.status_code == 400, bad
    assert t.get(url + "/api/teacher/overview", timeout=10).json()["settings"] == before
    assert requests.post(url + "/api/teacher/settings", json={"paused": 1}, timeout=10).status_code == 403
