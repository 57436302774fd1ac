"""Benchmark of the classroom server (``splatkit serve``), on loopback only.

1. Queue throughput with the real pipeline at the ``tiny`` preset: ``--jobs`` students submit one job
   each (8 photos of strecha fountain at 300 px); jobs/hour from the first start to the last finish,
   and the time from the upload's answer to the job's first progress event (events.jsonl).
2. Page latency while 30 students' jobs run (stub jobs via the test hook
   ``SPLATKIT_SERVE_JOB_FN=splatkit.serve.testing:stub_job``, 0.5 s each): GET / and GET /api/me.

    python scripts/bench_serve.py [--jobs 4] [--datasets ../shared/datasets]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_util import Server, jpeg_bytes, small_photos  # noqa: E402


def throughput(data: Path, photos, n_jobs: int) -> dict:
    srv = Server(data).start()
    try:
        files = [("files", (n, b, "image/jpeg")) for n, b in photos]
        subs = []
        for i in range(n_jobs):
            s = srv.student(f"bench{i}")
            r = s.post(srv.url + "/api/jobs", data={"preset": "tiny"}, files=files, timeout=60)
            r.raise_for_status()
            subs.append((s, r.json()["id"], time.time()))
        first: dict[int, float] = {}
        while True:
            states = {}
            for s, jid, t_up in subs:
                j = s.get(f"{srv.url}/api/jobs/{jid}", timeout=10).json()
                states[jid] = j
                if jid not in first and j["progress"].get("first_event"):
                    first[jid] = j["progress"]["first_event"] - t_up
            if all(j["state"] in ("done", "failed", "cancelled") for j in states.values()):
                break
            time.sleep(0.5)
        ok = [j for j in states.values() if j["state"] == "done"]
        t0 = min(j["started"] for j in states.values())
        t1 = max(j["finished"] for j in states.values())
        return {"jobs": n_jobs, "done": len(ok), "wall_s": round(t1 - t0, 1),
                "jobs_per_hour": round(len(ok) / (t1 - t0) * 3600, 1),
                "upload_to_first_event_s": round(first[subs[0][1]], 2),
                "upload_to_first_event_s_all": [round(first[j], 1) for _, j, _ in subs if j in first]}
    finally:
        srv.stop()


def latency(data: Path, students: int = 30) -> dict:
    env = {"SPLATKIT_SERVE_JOB_FN": "splatkit.serve.testing:stub_job", "SPLATKIT_STUB_STEP_S": "0.05",
           "SPLATKIT_STUB_STEPS": "10"}
    srv = Server(data, env=env).start()
    try:
        files = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
        sess = [srv.student(f"s{i}") for i in range(students)]
        ids = []
        lock = threading.Lock()

        def submit(s):
            r = s.post(srv.url + "/api/jobs", data={"preset": "tiny"}, files=files, timeout=60)
            with lock:
                ids.append(r.json()["id"])

        ths = [threading.Thread(target=submit, args=(s,)) for s in sess]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        lat = {"/": [], "/api/me": []}
        teacher = srv.teacher()
        while True:
            for path in lat:
                t = time.perf_counter()
                sess[0].get(srv.url + path, timeout=10).raise_for_status()
                lat[path].append(time.perf_counter() - t)
            o = teacher.get(srv.url + "/api/teacher/overview", timeout=10).json()
            if all(j["state"] == "done" for j in o["jobs"]):
                break
            time.sleep(0.05)
        out = {}
        for path, v in lat.items():
            v.sort()
            out[path] = {"n": len(v), "p50_ms": round(statistics.median(v) * 1000, 1),
                         "p95_ms": round(v[int(0.95 * (len(v) - 1))] * 1000, 1),
                         "max_ms": round(v[-1] * 1000, 1)}
        return out
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--datasets", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = ap.parse_args()
    photos = small_photos(args.datasets / "strecha_fountain_p11" / "images", 8, 300)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        res = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                          f"{__import__('os').cpu_count()} CPUs",
               "date": time.strftime("%Y-%m-%d"),
               "throughput_tiny": throughput(Path(tmp) / "a" / "data", photos, args.jobs),
               "latency_30_students": latency(Path(tmp) / "b" / "data")}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
