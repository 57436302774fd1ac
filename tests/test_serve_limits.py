"""Limits of the classroom server (splatkit/serve/limits.py, the job limit of store.py) against a
real ``splatkit serve`` on loopback: the per-student job limit holds under parallel uploads, presets
are offered by hardware, and the default time limit of a job depends on preset and hardware."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from serve_util import jpeg_bytes

from splatkit.serve.limits import job_time_limit_s, offered_presets

PHOTOS = [("files", (f"{i}.jpg", jpeg_bytes(color=(i * 60, 80, 80)))) for i in range(3)]


def test_parallel_uploads_cannot_pass_the_limit(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    r = t.post(url + "/api/teacher/settings", json={"paused": 1, "jobs_per_student": 3}, timeout=10)
    r.raise_for_status()
    try:
        s = stub_server.student("eight-tabs")
        cookie = s.cookies.get("splatkit_student")

        def upload(_):
            return requests.post(url + "/api/jobs", data={"preset": "tiny"}, files=PHOTOS,
                                 cookies={"splatkit_student": cookie}, timeout=30).status_code

        with ThreadPoolExecutor(8) as ex:
            codes = sorted(ex.map(upload, range(8)))
        assert codes == [201] * 3 + [429] * 5, codes
        jobs = s.get(url + "/api/me", timeout=10).json()["jobs"]
        assert len(jobs) == 3 and {j["state"] for j in jobs} == {"queued"}
        # re-joining from a fresh browser under the same name gives no second seat (and no more jobs)
        r = requests.post(url + "/api/join", json={"class_code": "CLASS1", "name": "Eight-Tabs"}, timeout=10)
        assert r.status_code == 409
        for j in jobs:
            s.post(f"{url}/api/jobs/{j['id']}/cancel", timeout=10)
    finally:
        t.post(url + "/api/teacher/settings", json={"paused": 0, "jobs_per_student": 3}, timeout=10)


def test_presets_offered_by_hardware(stub_server):
    url, t = stub_server.url, stub_server.teacher()
    assert t.get(url + "/api/teacher/overview", timeout=10).json()["hardware"] == "cpu"
    info = requests.get(url + "/api/info", timeout=10).json()
    assert "full" not in info["presets"] and {"tiny", "quick", "standard"} <= set(info["presets"])
    assert all(info["preset_help"][p] for p in info["presets"])
    s = stub_server.student("wants-full")
    r = s.post(url + "/api/jobs", data={"preset": "full"}, files=PHOTOS, timeout=30)
    assert r.status_code == 400 and "not offered" in r.json()["detail"]
    assert not [d for d in (stub_server.data / "uploads").glob("*") if not any(d.iterdir())]
    try:
        t.post(url + "/api/teacher/settings", json={"allow_full_on_cpu": 1}, timeout=10).raise_for_status()
        assert "full" in requests.get(url + "/api/info", timeout=10).json()["presets"]
    finally:
        t.post(url + "/api/teacher/settings", json={"allow_full_on_cpu": 0}, timeout=10)
    assert "full" not in requests.get(url + "/api/info", timeout=10).json()["presets"]


def test_default_time_limits():
    cpu, gpu = {"gpus": 0, "cpus": 8}, {"gpus": 2, "cpus": 8}
    assert job_time_limit_s("full", cpu, 0) > job_time_limit_s("full", gpu, 0)
    tiny, quick, std = (job_time_limit_s(p, cpu, 0) for p in ("tiny", "quick", "standard"))
    assert tiny < quick < std
    assert job_time_limit_s("full", gpu, 2.5) == 150.0  # the teacher's setting wins
    assert "full" in offered_presets(gpu, False) and "full" not in offered_presets(cpu, False)
    assert "full" in offered_presets(cpu, True)


def test_every_preset_has_plain_words_and_time_limits():
    """A new preset must come with its menu text and default time limits, and GPU presets are
    not offered on a CPU-only box by default."""
    from splatkit.config import PRESETS
    from splatkit.serve.limits import DEFAULT_JOB_MINUTES, GPU_PRESETS, PRESET_HELP

    for name in PRESETS:
        assert PRESET_HELP.get(name), name
        assert all(name in DEFAULT_JOB_MINUTES[hw] for hw in ("cpu", "gpu")), name
    cpu = {"gpus": 0, "cpus": 8}
    assert not set(GPU_PRESETS) & set(offered_presets(cpu, False))
