"""Load: 30 simulated students submit at once to a real server on loopback (bounded, loopback only).

The jobs use the documented test hook ``SPLATKIT_SERVE_JOB_FN=splatkit.serve.testing:stub_job``: a
stand-in for training that runs inside the same Ray tasks, writes the same events and files, and
logs each finished run, so this test measures the server, the queue and Ray rather than training
(the real pipeline is exercised by test_serve_api.py and test_serve_browser.py).

Checks: every job finishes exactly once; the dispatch order is round-robin between students (a
student's extra uploads run after everyone's first); the pages answer while jobs run (latency).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from serve_util import Server, jpeg_bytes, need_serve_deps

STUDENTS = 30
GREEDY_JOBS = 5


def test_thirty_students(tmp_path):
    need_serve_deps()
    env = {
        "SPLATKIT_SERVE_JOB_FN": "splatkit.serve.testing:stub_job",
        "SPLATKIT_STUB_STEP_S": "0.05",
        "SPLATKIT_STUB_STEPS": "10",
    }
    srv = Server(tmp_path / "data", env=env, args=["--ray-cpus", "4"]).start()
    try:
        teacher = srv.teacher()
        teacher.post(
            srv.url + "/api/teacher/settings", json={"paused": 1, "jobs_per_student": GREEDY_JOBS}, timeout=10
        ).raise_for_status()
        photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
        sessions = [srv.student(f"student{i:02d}") for i in range(STUDENTS)]

        def submit(i):
            n = GREEDY_JOBS if i == 0 else 1  # student00 uploads 5 sets, everyone else one
            out = []
            for _ in range(n):
                r = sessions[i].post(srv.url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=60)
                assert r.status_code == 201, r.text
                out.append(r.json()["id"])
            return out

        t0 = time.time()
        with ThreadPoolExecutor(8) as ex:
            ids_per_student = list(ex.map(submit, range(STUDENTS)))
        submit_s = time.time() - t0
        all_ids = [j for ids in ids_per_student for j in ids]
        assert len(all_ids) == STUDENTS + GREEDY_JOBS - 1

        # measure page latency while the jobs run
        lat: list[float] = []
        stop = threading.Event()

        def probe():
            s = sessions[1]
            while not stop.is_set():
                for path in ("/", "/api/me"):
                    t = time.perf_counter()
                    assert s.get(srv.url + path, timeout=10).status_code == 200
                    lat.append(time.perf_counter() - t)
                time.sleep(0.05)

        th = threading.Thread(target=probe)
        th.start()
        t_run = time.time()
        teacher.post(srv.url + "/api/teacher/settings", json={"paused": 0}, timeout=10).raise_for_status()
        try:
            jobs = srv.wait_jobs(teacher, all_ids, timeout=150)
        finally:
            stop.set()
            th.join()
        run_s = time.time() - t_run
        assert all(j["state"] == "done" for j in jobs.values()), jobs
        # exactly once
        runs = [json.loads(x) for x in (srv.data / "executions.log").read_text().splitlines()]
        assert sorted(r["job"] for r in runs) == sorted(all_ids)
        # round robin: everybody's first job before student00's second
        order = sorted(all_ids, key=lambda i: jobs[i]["dispatch_seq"])
        greedy_extra = ids_per_student[0][1:]
        assert set(order[-(GREEDY_JOBS - 1) :]) == set(greedy_extra), order
        lat.sort()
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        print(
            f"\n{len(all_ids)} jobs from {STUDENTS} students: submit {submit_s:.1f}s, run {run_s:.1f}s "
            f"({len(all_ids) / run_s * 3600:.0f} jobs/h with stub jobs); page latency under load "
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms (n={len(lat)})"
        )
        assert p95 < 2.0
    finally:
        srv.stop()
