"""Faults: the server is killed (SIGKILL) while jobs are queued and running; its Ray helper processes
end with it (the reaper); after a restart on the same data folder every job completes, exactly once,
the interrupted ones first (they keep their place) and resuming from their last checkpoint; an
upload folder left by the crash is removed; a clean stop leaves no process behind. Jobs use the stub
of ``splatkit.serve.testing`` (test hook ``SPLATKIT_SERVE_JOB_FN``), which checkpoints every step
like training does; the real pipeline's resume is ``run_train(resume=True)``.
"""

from __future__ import annotations

import json
import os
import signal
import time

from serve_util import Server, descendants, jpeg_bytes, need_serve_deps, still_running


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
        helpers = descendants(srv.proc.pid)
        orphan = data / "uploads" / "left-by-a-crash"
        orphan.mkdir()
        (orphan / "0000_a.jpg").write_bytes(jpeg_bytes())
        os.kill(srv.proc.pid, signal.SIGKILL)  # the server process only, no clean shutdown
        srv.proc.wait(10)
        assert still_running(helpers, timeout=20) == []  # Ray's processes ended with it

        srv2 = Server(data, env=env, args=["--ray-cpus", "2"])
        srv2.start()
        try:
            assert not orphan.exists()
            jobs = srv2.wait_jobs(srv2.teacher(), ids, timeout=120)
            helpers2 = descendants(srv2.proc.pid)
        finally:
            srv2.stop(kill_group=False)
        assert still_running(helpers2, timeout=20) == []  # a clean stop leaves nothing either
        # the interrupted jobs kept their place: they started again before any job that waited
        waited = [i for i in ids if states[i] == "queued"]
        seq = {i: jobs[i]["dispatch_seq"] for i in ids}
        assert max(seq[i] for i in interrupted) < min(seq[i] for i in waited), (seq, interrupted)
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
