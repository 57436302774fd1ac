"""Scale-out: a two-node Ray cluster on this machine (``ray start --head`` and a second ``ray start
--address``, each with one CPU and its own resource ``node_a`` / ``node_b``, in a separate temp dir),
``splatkit serve --ray-address`` sends jobs to it, and the jobs run on both nodes (the node id of each
job is recorded). Jobs use the stub of ``splatkit.serve.testing`` (test hook). Stopped at the
end like ``ray stop`` but only this cluster's processes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from serve_util import Server, free_port, jpeg_bytes, need_serve_deps

from splatkit.serve.runner import RAY_LOOPBACK_ENV


def _ray(args, env):
    exe = Path(sys.executable).with_name("ray")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120)


def _stop_cluster(temp: str) -> None:
    """``ray stop`` for this cluster only: plain ``ray stop`` would end every Ray on the machine
    (other users' too), so end the processes whose command line names this cluster's temp dir
    (GCS, raylets, their helpers; the workers end with their raylet)."""
    parent, cmd = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd[int(d.name)] = (d / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                pass
    pids = {p for p, c in cmd.items() if temp.encode() in c and p != os.getpid()}
    grown = True
    while grown:  # and their descendants (agents and workers rename themselves: ray::...)
        more = {p for p, pp in parent.items() if pp in pids} - pids
        pids |= more
        grown = bool(more)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


def test_jobs_run_on_both_nodes(tmp_path):
    need_serve_deps()
    if not Path(sys.executable).with_name("ray").exists():
        pytest.skip("the `ray` command is not installed beside this Python")
    temp = tempfile.mkdtemp(prefix="skray-", dir="/tmp")  # short: Ray's socket paths are limited
    port = free_port()
    # token authentication, one token for the nodes and the server (kept out of ~/.ray)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # other tests in this process may have started a loopback-only local Ray, which sets
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in os.environ: a real cluster's nodes must not inherit it
    base = {k: v for k, v in os.environ.items() if k != RAY_LOOPBACK_ENV}
    env = {**base, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    head = _ray(
        [
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            '--resources={"node_a": 1}',
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env,
    )
    try:
        assert head.returncode == 0, head.stdout + head.stderr
        worker = _ray(
            [
                "start",
                f"--address=127.0.0.1:{port}",
                "--num-cpus=1",
                '--resources={"node_b": 1}',
                "--disable-usage-stats",
            ],
            env,
        )
        assert worker.returncode == 0, worker.stdout + worker.stderr
        sv_env = {
            "SPLATKIT_SERVE_JOB_FN": "splatkit.serve.testing:stub_job",
            "SPLATKIT_STUB_STEP_S": "0.2",
            "SPLATKIT_STUB_STEPS": "8",
            **auth,
        }
        srv = Server(tmp_path / "data", env=sv_env, args=["--ray-address", f"127.0.0.1:{port}"]).start()
        try:
            photos = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]
            ids = []
            for i in range(4):
                r = srv.student(f"s{i}").post(
                    srv.url + "/api/jobs", data={"preset": "tiny"}, files=photos, timeout=30
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            teacher = srv.teacher()
            jobs = srv.wait_jobs(teacher, ids, timeout=120)
            assert all(j["state"] == "done" for j in jobs.values()), jobs
            o = teacher.get(srv.url + "/api/teacher/overview", timeout=10).json()
            assert o["cluster"]["nodes"] == 2 and o["cluster"]["cpus"] == 2
            nodes = {j["id"]: j["node_id"] for j in o["jobs"]}
            print("\nnode per job:", {k: v[:12] for k, v in nodes.items()})
            assert len(set(nodes.values())) == 2, nodes
        finally:
            srv.stop()
    finally:
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
