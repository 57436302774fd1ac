"""Jobs on Ray: the server decides the order, Ray decides where.

:class:`Dispatcher` is one thread of the server. It connects to Ray (an embedded local instance by
default, or an existing cluster with ``--ray-address``), and in a loop

* submits queued jobs in round-robin order between students (:func:`~.store.fair_order`) while
  fewer jobs run than the cluster holds (GPUs x jobs per GPU, or CPUs / CPUs per job); each job is
  one Ray task asking for ``num_gpus`` (a share of one GPU) where the cluster has GPUs, else CPUs;
* collects finished tasks and records done / failed / cancelled and the node that ran them;
* passes cancels on: a ``cancel`` file in the job's output folder (the training loop's stop flag
  reads it and stops at the next step, writing a checkpoint), then ``ray.cancel``;
* stops a job that ran past its time limit (:func:`~.limits.job_time_limit_s`: the teacher's
  setting, else a default per preset and hardware; all attempts count) with ``ray.cancel(force=True)``,
  which ends the worker process wherever it is (SfM included), and records it as failed;
* every ten minutes removes the files of jobs that ended more than ``keep_days`` ago (:func:`purge_old`).

The local Ray (no ``--ray-address``) listens on 127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
before Ray is imported: Ray then takes the loopback address as the node's) and its processes end
with the server: Ctrl-C shuts Ray down, and :mod:`.reaper` ends what is left when the server is
killed.

A job is :func:`run_job` running ``splatkit.pipeline.run_train`` in the job's output folder, with
``resume=True`` when it was started before (after a server restart, a crash or a lost node): it
continues from its last checkpoint. The output folder also holds ``attempt``: a task whose attempt
number is no longer the current one stops (a task orphaned by a killed server never writes over its
successor).

Test hook: ``job_fn="module:function"`` (the server reads ``$SPLATKIT_SERVE_JOB_FN``) replaces the
training by ``function(spec, stop_flag) -> "done" | "interrupted"`` inside the same Ray task; the
load and scale-out tests use :func:`splatkit.serve.testing.stub_job` so that they measure the
server and Ray, not training. Nothing else changes.

The data folder must be at the same path on every Ray node (one machine, or a shared file system).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path

from ..rundir import RunDir
from .limits import job_time_limit_s
from .store import Store, fair_order

RETRIES_ON_LOST_WORKER = 3
PURGE_EVERY_S = 600.0
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ray_on_loopback() -> None:
    """Make a local Ray take 127.0.0.1 as its node address (so its services listen there only).
    Must run before ``ray`` is first imported (Ray reads it into a constant)."""
    os.environ[RAY_LOOPBACK_ENV] = "0"


def _stop_flag(out_dir: Path, attempt: int):
    state = {"t": 0.0, "stop": False}

    def stop() -> bool:
        now = time.monotonic()
        if not state["stop"] and now - state["t"] > 0.3:
            state["t"] = now
            if RunDir(out_dir).cancel_flag.exists():
                state["stop"] = True
            else:
                try:
                    state["stop"] = int(RunDir(out_dir).attempt.read_text() or 0) != attempt
                except (OSError, ValueError):
                    pass
        return state["stop"]

    return stop


def run_job(spec: dict) -> dict:
    """One job, inside a Ray worker: returns ``{"status", "node_id", "error"}``."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    RunDir(out_dir).attempt.write_text(str(spec["attempt"]))
    RunDir(out_dir).node.write_text(json.dumps(
        {"node_id": node_id, "host": socket.gethostname(), "pid": os.getpid(), "attempt": spec["attempt"]}))
    stop = _stop_flag(out_dir, spec["attempt"])
    if spec.get("job_fn"):
        mod, _, name = spec["job_fn"].partition(":")
        status = getattr(importlib.import_module(mod), name)(spec, stop)
        return {"status": status, "node_id": node_id, "error": None}
    from ..errors import UserError

    try:
        status = _train(spec, out_dir, stop)
    except UserError as e:
        return {"status": "failed", "node_id": node_id, "error": str(e)}
    return {"status": status, "node_id": node_id, "error": None}


def _train(spec: dict, out_dir: Path, stop) -> str:
    from ..config import preset_config
    from ..events import EventBus
    from ..job import JobRequest, run_job
    from .uploads import find_video

    photos = Path(spec["photos_dir"])
    # A video goes to the pipeline as it is: splatkit.sources extracts, de-duplicates and
    # de-blurs its frames and picks sequential matching, as for `splatkit train clip.mp4`.
    video = find_video(photos)
    if video is not None:
        photos = video
    cfg = preset_config(spec["preset"])
    cfg.device = spec.get("device", "auto")
    if spec.get("video_fps"):  # the server's cap on the frames of one video
        cfg.ingest.video_fps = min(cfg.ingest.video_fps, spec["video_fps"])
    resume = spec["attempt"] > 1 and RunDir(out_dir).config.exists()
    # The job setup of `splatkit train`: run folder rules, lock (an orphaned attempt lets go
    # within a second), resume decision, log and event stream.
    req = JobRequest(source=photos, out_dir=out_dir, cfg=cfg, resume=resume, restart=not resume,
                     command="train", shown_command=f"job {spec['job_id']}", lock_wait_s=60.0)
    result = run_job(req, EventBus(), stop_flag=stop)
    return "interrupted" if result.interrupted else "done"


class Dispatcher(threading.Thread):
    """Submits queued jobs to Ray in fair order and records what comes back."""

    def __init__(self, store: Store, ray_address: str | None = None, ray_cpus: int | None = None,
                 job_fn: str | None = None, poll_s: float = 0.2):
        super().__init__(daemon=True, name="splatkit-dispatcher")
        self.store, self.ray_address, self.ray_cpus = store, ray_address, ray_cpus
        self.job_fn = job_fn or os.environ.get("SPLATKIT_SERVE_JOB_FN") or None
        self.poll_s = poll_s
        self.inflight: dict = {}  # ObjectRef -> job id
        self.cancel_sent: dict[int, float] = {}
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._capacity = (1, {"num_cpus": 1})
        self._capacity_t = 0.0
        self._purge_t = 0.0
        self.timed_out: dict[int, str] = {}
        self.cluster: dict = {}
        self.error: str | None = None
        self.reaper = None

    # -- Ray --------------------------------------------------------------------------------
    def connect(self) -> None:
        import ray

        if self.ray_address:
            ray.init(address=self.ray_address, namespace="splatkit", log_to_driver=False)
        else:
            from .reaper import start_reaper

            self.reaper = start_reaper()
            cpus = self.ray_cpus or max(1, (os.cpu_count() or 2) - 1)
            ray.init(address=None, include_dashboard=False, num_cpus=cpus, namespace="splatkit",
                     log_to_driver=False, object_store_memory=200 * 1024 * 1024)
        self._remote = ray.remote(max_retries=0)(run_job)
        self.capacity()

    def capacity(self) -> tuple[int, dict]:
        """How many jobs may run at once on the cluster, and the Ray options of one job."""
        import ray

        if time.monotonic() - self._capacity_t > 2.0:
            res = ray.cluster_resources()
            self.cluster = {"cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
                            "nodes": sum(1 for n in ray.nodes() if n.get("Alive"))}
            gpus = res.get("GPU", 0)
            if gpus >= 1:
                per_gpu = max(1, self.store.int_setting("jobs_per_gpu"))
                self._capacity = (int(gpus) * per_gpu, {"num_gpus": 1.0 / per_gpu, "num_cpus": 1})
            else:
                cpj = max(1, self.store.int_setting("cpus_per_job"))
                self._capacity = (max(1, int(res.get("CPU", 1) // cpj)), {"num_cpus": cpj})
            self._capacity_t = time.monotonic()
        return self._capacity

    @property
    def slots(self) -> int:
        """Jobs the cluster runs at once (as last measured)."""
        return max(1, self._capacity[0])

    # -- loop -------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def refresh(self) -> None:
        """Read the teacher's settings again now (limits, retention)."""
        self._capacity_t = self._purge_t = 0.0
        self.wake()

    def run(self) -> None:
        try:
            self.connect()
        except Exception as e:  # noqa: BLE001 - shown on the teacher page and in the log
            self.error = f"Ray did not start: {e}"
            print(f"splatkit serve: {self.error}", flush=True)
            return
        while not self._halt.is_set():
            try:
                self.collect()
                self.pass_cancels()
                self.enforce_time_limits()
                self.submit()
                if time.monotonic() - self._purge_t > PURGE_EVERY_S:
                    self._purge_t = time.monotonic()
                    purge_old(self.store)
            except Exception:  # noqa: BLE001 - keep dispatching; the trace goes to the log
                traceback.print_exc()
            self._wake.wait(self.poll_s)
            self._wake.clear()
        _ray_shutdown()  # from the thread that started it: 1 s instead of 5 s from another one

    def submit(self) -> None:
        if self.store.setting("paused") == "1":
            return
        cap, opts = self.capacity()
        while len(self.inflight) < cap:
            queued = self.store.jobs(states=("queued",))
            if not queued:
                return
            job_id = fair_order(queued, self.store.last_dispatch())[0]
            job = self.store.mark_running(job_id)
            out_dir = Path(job["out_dir"])
            RunDir(out_dir).cancel_flag.unlink(missing_ok=True)
            spec = {"job_id": job_id, "preset": job["preset"], "photos_dir": job["photos_dir"],
                    "out_dir": job["out_dir"], "attempt": job["attempts"], "job_fn": self.job_fn,
                    "video_fps": job["video_fps"]}
            ref = self._remote.options(**opts).remote(spec)
            self.inflight[ref] = job_id

    def collect(self) -> None:
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        if not self.inflight:
            return
        ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        for ref in ready:
            job_id = self.inflight.pop(ref)
            self.cancel_sent.pop(job_id, None)
            job = self.store.job(job_id)
            cancelled = bool(job["cancel_requested"])
            if job_id in self.timed_out:
                self.store.finish(job_id, "failed", self.timed_out.pop(job_id))
                continue
            try:
                res = ray.get(ref)
            except TaskCancelledError:
                lost = "Stopped: the server lost this job's worker. Ask your teacher to run it again."
                self.store.finish(job_id, "cancelled" if cancelled else "failed", None if cancelled else lost)
                continue
            except RayTaskError as e:
                if cancelled:
                    self.store.finish(job_id, "cancelled")
                else:
                    last = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
                    self.store.finish(job_id, "failed", last[:500])
                continue
            except Exception as e:  # noqa: BLE001 - worker or node lost: run it again, resuming
                if cancelled:
                    self.store.finish(job_id, "cancelled")
                elif job["attempts"] < RETRIES_ON_LOST_WORKER:
                    self.store.finish(job_id, "queued", f"retrying after: {type(e).__name__}")
                else:
                    self.store.finish(job_id, "failed", f"{type(e).__name__}: {e}"[:500])
                continue
            status = res.get("status")
            if status == "done":
                self.store.finish(job_id, "done", None, res.get("node_id"))
            elif status == "interrupted":
                self.store.finish(job_id, "cancelled" if cancelled else "queued", None, res.get("node_id"))
            else:
                self.store.finish(job_id, "failed", res.get("error"), res.get("node_id"))

    def pass_cancels(self) -> None:
        import ray

        for ref, job_id in list(self.inflight.items()):
            job = self.store.job(job_id)
            if not job["cancel_requested"]:
                continue
            sent = self.cancel_sent.get(job_id)
            if sent is None:
                Path(job["out_dir"]).mkdir(parents=True, exist_ok=True)
                RunDir(job["out_dir"]).cancel_flag.write_text("cancelled\n")
                self.cancel_sent[job_id] = time.monotonic()
            elif time.monotonic() - sent > 10:  # not stopped by the flag (e.g. inside SfM)
                ray.cancel(ref, force=True)
                self.cancel_sent[job_id] = float("inf")

    def enforce_time_limits(self) -> None:
        """Stop (force) the running jobs that are past their time limit."""
        import ray

        minutes = self.store.float_setting("job_minutes")
        now = time.time()
        for ref, job_id in list(self.inflight.items()):
            if job_id in self.timed_out:
                continue
            job = self.store.job(job_id)
            limit = job_time_limit_s(job["preset"], self.cluster, minutes)
            if job["run_seconds"] + now - (job["started"] or now) > limit:
                self.timed_out[job_id] = (
                    f"Stopped: this job ran longer than the time limit of {limit / 60:g} minutes. "
                    "Try fewer photos or a quicker preset, or ask your teacher.")
                ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Stop dispatching and shut Ray down (the thread does, on its way out)."""
        self.stop()
        if self.is_alive():
            self.join(15.0)
        if self.is_alive():
            _ray_shutdown()
        if self.reaper is not None:
            self.reaper.finish()


def _ray_shutdown() -> None:
    try:
        import ray

        ray.shutdown()
    except Exception:  # noqa: BLE001 - stopping anyway
        pass


def purge_old(store: Store) -> list[int]:
    """Remove the output and photo folders of jobs that ended more than ``keep_days`` ago (0:
    keep everything); the jobs stay listed, marked ``purged``. Photos shared with a job that is
    kept (a re-run) stay."""
    days = store.float_setting("keep_days")
    if days <= 0:
        return []
    old = store.old_jobs(time.time() - days * 86400)
    in_use = store.photo_dirs_in_use(besides={j["id"] for j in old})
    for job in old:
        shutil.rmtree(Path(job["out_dir"]).parent, ignore_errors=True)  # DATA/jobs/<id>
        if job["photos_dir"] not in in_use:
            shutil.rmtree(job["photos_dir"], ignore_errors=True)
        store.mark_purged(job["id"])  # after the files: a purged job has none left
    return [j["id"] for j in old]
