"""The GPU session's plan (``python scripts/bench_gpu.py session``): jobs in priority order, a
time guard, and one results table written after every job.

Each job is a subprocess with its own time limit (what is left of the budget), so a job that
overruns is killed and recorded, and the table on disk is always complete up to the last job:

- ``splatkit``: ``bench_gpu.py run DATA --preset P --steps N --resolution R --json ...``;
- ``simple_trainer``: gsplat v1.5.3's ``examples/simple_trainer.py default`` (copied and patched
  by ``bench_gpu.py prepare-trainer``) on the same packed COLMAP folder, ``--data_factor 1``, the
  same held-out split (``--test_every 8``), its stats JSON read back;
- ``pytest``: the tests marked ``gpu``.

The guard: before a job, its estimate (the a-priori seconds of :data:`PLAN`, times the ratio of
measured to estimated time of the jobs already run by that trainer) is compared with what is
left; a job that would not finish is skipped and says so. ``--dry-run`` runs nothing: each job
"takes" its estimate on a simulated clock, which exercises the guard and the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(".device/data")
EXAMPLES = Path(".device/gsplat_examples")
GPU_TEST_FILES = ["tests/test_render_gsplat.py", "tests/test_render_golden.py", "tests/test_gpu.py",
                  "tests/test_train_gpu.py", "tests/test_serve_gpu.py", "tests/test_train_sky.py"]
#: Longest side of the carried photos (the 64 MiB carry limit): every job trains at this size.
RESOLUTION = 800


@dataclass
class Job:
    name: str
    trainer: str  # splatkit | simple_trainer | pytest
    data: str = ""  # folder under .device/data
    preset: str = "full"
    steps: int = 30_000
    est_s: float = 60.0  # a-priori seconds on the H200 (from the 3000-step rows of docs/benchmarks.md)
    args: list[str] = field(default_factory=list)
    why: str = ""
    group: str = ""  # jobs of one group (a side-by-side pair) run all or none


def _pair(data: str, steps: int, est_splatkit: float, est_st: float, why: str) -> list[Job]:
    tag = f"{data}_{steps // 1000}k"
    return [
        Job(f"{tag}_splatkit", "splatkit", data, "full", steps, est_splatkit, ["--refine-stop", "15000"], why,
            tag),
        Job(f"{tag}_simple_trainer", "simple_trainer", data, "full", steps, est_st, [], why, tag),
    ]


#: Priority order. 30k-step estimates: 9x the measured 3000-step times (densification keeps
#: growing the splats until step 15000); the guard corrects them once a job has run.
PLAN: list[Job] = [
    *_pair("fox_800", 30_000, 230, 270, "full vs simple_trainer at 30k"),
    *_pair("south_building_128_800", 30_000, 300, 360, "full vs simple_trainer at 30k (exposure varies)"),
    # What moves the splat count and the fountain gap (docs/benchmarks.md, "Explaining the
    # differences"): 3000 steps, each trainer with the other's densification window.
    Job("fountain_800_3k_splatkit_refine1500", "splatkit", "fountain_800", "full", 3000, 25,
        ["--refine-stop", "1500"], "the first GPU row's setting (densify 500-1500)"),
    Job("fountain_800_3k_splatkit_refine15000", "splatkit", "fountain_800", "full", 3000, 35,
        ["--refine-stop", "15000"], "densify to the end, as simple_trainer does"),
    Job("fountain_800_3k_simple_trainer", "simple_trainer", "fountain_800", "full", 3000, 35, [],
        "simple_trainer default (densify 500-3000)"),
    Job("fountain_800_3k_simple_trainer_refine1500", "simple_trainer", "fountain_800", "full", 3000, 25,
        ["--strategy.refine-stop-iter", "1500"], "simple_trainer with splatkit's window"),
    Job("fox_800_30k_splatkit_noreset", "splatkit", "fox_800", "full", 30_000, 260,
        ["--refine-stop", "15000", "--set", "reset_every=1000000000"],
        "no opacity reset, as gsplat 1.5.3's (broken) reset predicate"),
    *_pair("fountain_800", 30_000, 230, 320, "full vs simple_trainer at 30k"),
    *_pair("castle_800", 30_000, 240, 330, "full vs simple_trainer at 30k"),
    *[Job(f"{d}_fast", "splatkit", d, "fast", 10_000, e, [], "fast preset (compare with the 30k full row)")
      for d, e in (("fox_800", 40), ("south_building_128_800", 55), ("fountain_800", 40),
                   ("castle_800", 45))],
    Job("pytest_gpu", "pytest", est_s=150,
        why="tests marked gpu (gsplat backend, packed, pose, Ray num_gpus)"),
]


def add_session_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu_out")))
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole session")
    p.add_argument("--elapsed", type=float, default=0.0, help="seconds already spent (install, build)")
    p.add_argument("--only", nargs="*", default=None, help="job names (or name prefixes) to run")
    p.add_argument("--state", type=Path, default=Path("/tmp/gpu_state/done.json"),
                   help="jobs finished by an earlier call on the same (warm) machine are skipped")
    p.add_argument("--dry-run", action="store_true", help="run nothing; simulate each job's estimate")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    p.add_argument("--parallel-pairs", action="store_true",
                   help="run the two trainers of a side-by-side pair at once on the GPU (their wall "
                        "times are then marked 'shared GPU')")


def select(plan: list[Job], only: list[str] | None, done: set[str]) -> list[Job]:
    jobs = [j for j in plan if not only or any(j.name == o or j.name.startswith(o) for o in only)]
    return [j for j in jobs if j.name not in done]


class Guard:
    """Seconds left, and whether a job's (corrected) estimate fits in them."""

    def __init__(self, budget: float, elapsed: float, clock=time.monotonic) -> None:
        self.clock, self.t0 = clock, clock() - elapsed
        self.budget = budget
        self.ratio: dict[str, list[float]] = {}

    def left(self) -> float:
        return self.budget - (self.clock() - self.t0)

    def estimate(self, job: Job) -> float:
        r = self.ratio.get(job.trainer)
        return job.est_s * (sum(r) / len(r) if r else 1.0)

    def need(self, jobs: list[Job], parallel: bool = False) -> float:
        est = [self.estimate(j) for j in jobs]
        return max(est) * 1.15 if parallel else sum(est)  # 15 %: two trainers share one GPU

    def fits(self, jobs: list[Job], parallel: bool = False) -> bool:
        return self.need(jobs, parallel) <= self.left() - 5.0

    def record(self, job: Job, seconds: float) -> None:
        self.ratio.setdefault(job.trainer, []).append(seconds / max(job.est_s, 1e-6))


def session(a: argparse.Namespace) -> int:
    if a.list:
        for j in PLAN:
            print(f"{j.name:50s} {j.trainer:15s} ~{j.est_s:4.0f} s  {j.why}")
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    done = set() if a.dry_run or not a.state.exists() else set(json.loads(a.state.read_text()))
    sim = {"t": 0.0}
    guard = Guard(a.budget, a.elapsed, (lambda: sim["t"]) if a.dry_run else time.monotonic)
    rows: list[dict] = []
    header = machine_header(a)
    jobs = select(PLAN, a.only, done)
    dropped: set[str] = set()  # groups given up (a member skipped or failed)
    i = 0
    while i < len(jobs):
        group = [j for j in jobs[i:] if jobs[i].group and j.group == jobs[i].group] or [jobs[i]]
        parallel = a.parallel_pairs and len(group) > 1
        batch = group if parallel else [jobs[i]]
        rest = group if not parallel else batch
        if jobs[i].group and jobs[i].group in dropped:
            new = [row(j, "skipped", "its pair did not run") for j in batch]
        elif not guard.fits(rest, parallel):
            dropped.add(jobs[i].group)
            pair = " with its pair" if len(rest) > 1 else ""
            note = f"needs ~{guard.need(rest, parallel):.0f} s{pair}, {guard.left():.0f} s left"
            new = [row(j, "skipped", note) for j in batch]
        elif a.dry_run:
            sim["t"] += guard.need(batch, parallel)
            new = [row(j, "dry-run", f"simulated {guard.estimate(j):.0f} s") for j in batch]
            for j in batch:
                guard.record(j, guard.estimate(j))
        else:
            new = _run_batch(batch, parallel, guard, a, done, dropped)
        rows.extend(new)
        write_tables(a.out, header, rows)
        for r in new:
            print(f"[{guard.budget - guard.left():5.0f} s] {r['name']}: {r['status']} {r['note']}",
                  flush=True)
        i += len(batch)
    write_tables(a.out, header, rows)
    return 0


def _run_batch(batch: list[Job], parallel: bool, guard: Guard, a, done: set, dropped: set) -> list[dict]:
    t = time.monotonic()
    new = run_jobs(batch, a.out, timeout=guard.left() - 3.0)
    for j in batch:
        guard.record(j, (time.monotonic() - t) / (1.15 if parallel else 1.0))
    for j, r in zip(batch, new, strict=True):
        if r["status"] != "ok":
            dropped.add(j.group)
        else:
            done.add(j.name)
            r["note"] += " (shared GPU)" if parallel else ""
    a.state.parent.mkdir(parents=True, exist_ok=True)
    a.state.write_text(json.dumps(sorted(done)))
    return new


def machine_header(a: argparse.Namespace) -> dict:
    h = {"command": " ".join([Path(sys.executable).name] + sys.argv), "dry_run": bool(a.dry_run),
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "budget_s": a.budget}
    try:
        import torch

        h["torch"] = torch.__version__
        h["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    except Exception as e:  # noqa: BLE001 - the header must never stop the session
        h["device"] = f"unknown ({e})"
    return h


def row(job: Job, status: str, note: str = "", **m) -> dict:
    return {"name": job.name, "trainer": job.trainer, "data": job.data, "preset": job.preset,
            "steps": job.steps, "args": " ".join(job.args), "status": status, "note": note,
            "psnr": m.get("psnr"), "ssim": m.get("ssim"), "splats": m.get("splats"),
            "train_seconds": m.get("train_seconds"), "peak_gpu_mem_gib": m.get("peak_gpu_mem_gib"),
            "why": job.why}


def run_jobs(jobs: list[Job], out: Path, timeout: float) -> list[dict]:
    """Run ``jobs`` at once (one subprocess each, output in ``jobs.log``), kill them at
    ``timeout``, and return their rows."""
    t = time.monotonic()
    started = []
    for job in jobs:
        cmd, parse = command(job, out)
        log = open(out / f"jobs_{job.name}.log", "w")  # noqa: SIM115 - closed below
        log.write(f"=== {job.name}: {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        started.append((job, parse, log, proc))
    rows = []
    for job, parse, log, proc in started:
        try:
            rc = proc.wait(timeout=max(timeout - (time.monotonic() - t), 1.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        log.close()
        with open(out / "jobs.log", "a") as f:
            f.write((out / f"jobs_{job.name}.log").read_text())
        (out / f"jobs_{job.name}.log").unlink()
        if rc is None:
            rows.append(row(job, "timed out", f"killed after {time.monotonic() - t:.0f} s"))
        elif rc != 0:
            rows.append(row(job, "failed", f"exit code {rc} (see jobs.log)"))
        else:
            try:
                rows.append(row(job, "ok", f"{time.monotonic() - t:.0f} s with start-up", **parse()))
            except (OSError, ValueError, KeyError) as e:
                rows.append(row(job, "failed", f"no figures: {e}"))
    return rows


def command(job: Job, out: Path):
    py = sys.executable
    if job.trainer == "splatkit":
        res = out / "json" / f"{job.name}.json"
        res.parent.mkdir(parents=True, exist_ok=True)
        cmd = [py, "scripts/bench_gpu.py", "run", str(DATA / job.data), "--preset", job.preset,
               "--steps", str(job.steps), "--resolution", str(RESOLUTION), "--json", str(res), *job.args]
        return cmd, lambda: json.loads(res.read_text())
    if job.trainer == "simple_trainer":
        result_dir = Path("/tmp/st_results") / job.name
        cmd = [py, str(EXAMPLES / "simple_trainer.py"), "default", "--data_dir", str(REPO / DATA / job.data),
               "--data_factor", "1", "--result_dir", str(result_dir), "--max_steps", str(job.steps),
               "--eval_steps", str(job.steps), "--save_steps", str(job.steps), "--test_every", "8",
               "--disable_viewer", "--disable_video", "--tb_every", "1000000000", *job.args]
        return cmd, lambda: simple_trainer_figures(result_dir, job.steps)
    if job.trainer == "pytest":
        # the files that hold gpu tests, named: collecting every module would import splatkit.sfm,
        # and the GPU machine's pycolmap is the pure-Python one simple_trainer reads COLMAP with
        cmd = ["env", f"SPLATKIT_GPU_SCENE={DATA / 'fountain_800'}", py, "-m", "pytest", "-q", "-p",
               "no:cacheprovider", "-m", "gpu", "-rs", *GPU_TEST_FILES]
        return cmd, lambda: {}
    raise ValueError(f"unknown trainer {job.trainer!r}")


def simple_trainer_figures(result_dir: Path, steps: int) -> dict:
    """PSNR/SSIM/splats from ``stats/val_stepNNNN.json``, wall time and memory from the
    ``train_stepNNNN_rank0.json`` that simple_trainer writes at its last step."""
    stats = Path(result_dir) / "stats"
    val = json.loads((stats / f"val_step{steps - 1:04d}.json").read_text())
    train = json.loads((stats / f"train_step{steps - 1:04d}_rank0.json").read_text())
    return {"psnr": round(val["psnr"], 3), "ssim": round(val["ssim"], 4), "splats": int(val["num_GS"]),
            "train_seconds": round(train["ellipse_time"], 1), "peak_gpu_mem_gib": round(train["mem"], 2)}


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def write_tables(out: Path, header: dict, rows: list[dict]) -> None:
    """``results.json`` (header + rows) and ``results.md`` (one markdown table), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{k}: {v}" for k, v in header.items()] + [
        "", "| job | trainer | steps | held-out PSNR | SSIM | splats | train wall | peak GPU mem | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['trainer']} | {r['steps']:,} | {_fmt(r['psnr'], '.2f')} | "
            f"{_fmt(r['ssim'], '.3f')} | {_fmt(r['splats'], ',')} | {_fmt(r['train_seconds'], '.1f')} | "
            f"{_fmt(r['peak_gpu_mem_gib'], '.2f')} | {r['status']}{': ' + r['note'] if r['note'] else ''} |")
    for name, text in (("results.json", json.dumps({"header": header, "rows": rows}, indent=1)),
                       ("results.md", "\n".join(lines) + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


# -- simple_trainer, patched to run offline -------------------------------------------------------

#: (pattern, replacement) applied to gsplat v1.5.3's examples/simple_trainer.py. Each must match
#: exactly once, so a different gsplat version fails here, not on the GPU machine.
TRAINER_PATCHES = [
    # viewer packages (viser, nerfview) are not on the GPU machine and the viewer is disabled
    (r"^import viser\n", ""),
    (r"^from gsplat_viewer import GsplatViewer, GsplatRenderTabState\n", ""),
    (r"^from nerfview import CameraState, RenderTabState, apply_float_colormap\n",
     "CameraState = RenderTabState = GsplatRenderTabState = object\n"),
    # fused_ssim (a CUDA build from git) -> pytorch_msssim, splatkit's own training SSIM (valid
    # convolution, window 11, sigma 1.5, as fused_ssim's padding="valid"): the same loss in both
    (r"^from fused_ssim import fused_ssim\n",
     "from pytorch_msssim import ssim as _ms_ssim\n\n\ndef fused_ssim(a, b, padding='valid'):\n"
     "    return _ms_ssim(a, b, data_range=1.0, size_average=True, win_size=11, win_sigma=1.5)\n"),
    # LPIPS downloads AlexNet weights at start; offline it cannot: LPIPS is not reported
    (r"            self\.lpips = LearnedPerceptualImagePatchSimilarity\(\n"
     r"                net_type=\"alex\", normalize=True\n            \)\.to\(self\.device\)",
     "            self.lpips = lambda a, b: torch.tensor(float('nan'), device=a.device)"),
]


def patch_trainer(text: str) -> str:
    for pattern, repl in TRAINER_PATCHES:
        text, n = re.subn(pattern, repl.replace("\\", "\\\\"), text, flags=re.M)
        if n != 1:
            raise ValueError(f"simple_trainer.py: expected one match of {pattern!r}, found {n}")
    return text


def prepare_trainer(checkout: Path, dst: Path, tag: str = "v1.5.3") -> None:
    """Copy ``examples/{simple_trainer.py, utils.py, datasets/*}`` at ``tag`` from a gsplat git
    checkout (or bare repository) into ``dst``, patched by :data:`TRAINER_PATCHES`."""
    def show(path: str) -> str:
        return subprocess.run(["git", "--git-dir", str(_git_dir(checkout)), "show", f"{tag}:{path}"],
                              check=True, capture_output=True, text=True).stdout

    (dst / "datasets").mkdir(parents=True, exist_ok=True)
    (dst / "simple_trainer.py").write_text(patch_trainer(show("examples/simple_trainer.py")))
    for name in ("utils.py", "lib_bilagrid.py", "datasets/__init__.py", "datasets/colmap.py",
                 "datasets/normalize.py", "datasets/traj.py"):
        try:
            (dst / name).write_text(show(f"examples/{name}"))
        except subprocess.CalledProcessError:
            (dst / name).write_text("")  # gsplat has no datasets/__init__.py: a namespace package
    print(f"simple_trainer ({tag}) patched into {dst}")


def _git_dir(checkout: Path) -> Path:
    return checkout / ".git" if (checkout / ".git").exists() else checkout


if __name__ == "__main__":  # for `python scripts/bench_gpu_plan.py --list`
    ap = argparse.ArgumentParser()
    add_session_args(ap)
    sys.exit(session(ap.parse_args()))
