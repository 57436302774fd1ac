"""Faults: the server is killed (SIGKILL) while jobs are queued and running; after a restart on the
same data folder every job completes, exactly once, and the interrupted ones resume from their last
checkpoint. Jobs use the stub of ``splatkit.serve.testing`` (test hook ``SPLATKIT_SERVE_JOB_FN``), which
checkpoints every step like training does; the real pipeline's resume is ``run_train(resume=True)``.
"""

from __future__ import annotations

import json
import os
import signal
import time

from serve_util import Server, jpeg_bytes, need_serve_deps


def test_sigkill_and_restart(tmp_path):
    need_serve_deps()
    env = {
        "SPLATKIT_SERVE_JOB_FN": "splatkit.serve.testing:stub_job",
        "SPLATKIT_STUB_STEP_S": "0.3",
        "SPLATKIT_STUB_STEPS": "12",
    }
    data = tmp_path / "data"
    srv = Server(data, env=env, args=["--ray-cpus", "2"]).start()
    old_group = srv.proc.pid
    photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
    try:
        ids = []
        for i in range(3):
            s = srv.student(f"s{i}")
            for _ in range(2):
                r = s.post(srv.url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=30)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
        teacher = srv.teacher()
        # wait until two jobs are running and have made progress (checkpoints), others queued
        t0 = time.time()
        while time.time() - t0 < 60:
            o = teacher.get(srv.url + "/api/teacher/overview", timeout=10).json()
            running = [
                j for j in o["jobs"] if j["state"] == "running" and (j["progress"].get("step") or 0) >= 3
            ]
            if running:
                break
            time.sleep(0.2)
        assert running, o
        states = {j["id"]: j["state"] for j in o["jobs"]}
        assert "queued" in states.values()
        interrupted = {j["id"] for j in o["jobs"] if j["state"] == "running"}
        os.kill(srv.proc.pid, signal.SIGKILL)  # the server process only, no clean shutdown
        srv.proc.wait(10)
        time.sleep(1.0)

        srv2 = Server(data, env=env, args=["--ray-cpus", "2"])
        srv2.start()
        try:
            jobs = srv2.wait_jobs(srv2.teacher(), ids, timeout=120)
        finally:
            srv2.stop()
        assert all(j["state"] == "done" for j in jobs.values()), jobs
        runs = [json.loads(x) for x in (data / "executions.log").read_text().splitlines()]
        assert sorted(r["job"] for r in runs) == sorted(ids), runs  # each finished exactly once
        for r in runs:
            if r["job"] in interrupted:
                assert r["attempt"] == 2 and r["resumed_from"] >= 3, r  # resumed from its checkpoint
    finally:
        try:
            os.killpg(old_group, signal.SIGKILL)  # whatever the killed server left (its Ray)
        except (ProcessLookupError, PermissionError):
            pass
        srv.stop()
