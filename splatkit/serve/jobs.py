"""What the pages show about a job: live progress from ``OUT/events.jsonl``, queue position,
result files, the classroom copy of the report, and the Unreal export zip (made on demand with
:func:`export_unreal`, with a README on importing it). Students never see server paths: every text
they get passes :func:`scrub`."""

from __future__ import annotations

import heapq
import html
import io
import re
import threading
import time
import zipfile
from pathlib import Path

from ..events import EvalResult, Event, Message, StageProgress, StageStarted, TrainStep, parse_lines
from ..rundir import RunDir
from .store import fair_order

_progress_cache: dict[str, tuple[int, dict]] = {}
_cache_lock = threading.Lock()
_export_locks: dict[tuple[int, str], threading.Lock] = {}


def progress(out_dir: Path) -> dict:
    """Stage, training step, loss, latest held-out PSNR and the time of the first event, read
    incrementally from the job's ``events.jsonl`` (the pipeline's own event stream)."""
    path = RunDir(out_dir).events
    key = str(path)
    try:
        size = path.stat().st_size
    except OSError:
        return {}
    with _cache_lock:
        offset, state = _progress_cache.get(key, (0, {}))
        if size < offset:  # file replaced
            offset, state = 0, {}
        if size == offset:
            return dict(state)
        state = dict(state)
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size - offset)
        end = data.rfind(b"\n") + 1  # only whole lines; a half-written one is read next time
        for ev in parse_lines(data[:end]):
            _apply(state, ev)
        _progress_cache[key] = (offset + end, state)
        return dict(state)


def _apply(state: dict, ev: Event) -> None:
    t = ev.time
    state.setdefault("first_event", t)
    state["last_event"] = t
    if isinstance(ev, StageStarted) or isinstance(ev, StageProgress) and ev.stage != state.get("stage"):
        state.update(stage=ev.stage, detail=ev.detail, stage_started=t)
        for k in ("fraction", "eta_seconds", "step", "total_steps"):
            state.pop(k, None)
    if isinstance(ev, StageProgress):
        done, total = ev.done or 0, ev.total or 0
        state["detail"] = f"{done}/{total} {ev.detail}".strip()
        if total > 0:
            state["fraction"] = round(min(1.0, done / total), 4)
            spent = (t or 0) - (state.get("stage_started") or t or 0)
            # the stage's pace so far: a first estimate, replaced as it goes on
            state["eta_seconds"] = round(spent * (total - done) / done, 1) if done and spent > 0 else None
    elif isinstance(ev, TrainStep):
        state.update(stage="train", step=ev.step, total_steps=ev.total_steps,
                     loss=round(float(ev.loss), 5), eta_seconds=round(float(ev.eta_seconds), 1),
                     fraction=round(ev.step / max(1, ev.total_steps), 4))
    elif isinstance(ev, EvalResult):
        state["psnr"] = round(float(ev.psnr), 2)
    elif isinstance(ev, Message):
        if ev.stage == "done":
            state["stage"] = "done"
        state["message"] = ev.text


def queue_positions(store) -> dict[int, int]:
    """1-based position of every queued job in the fair (round-robin) order."""
    queued = store.jobs(states=("queued",))
    return {jid: i + 1 for i, jid in enumerate(fair_order(queued, store.last_dispatch()))}


def typical_seconds(store, preset: str, cache: dict) -> float | None:
    """The median run time of the last finished jobs of ``preset`` (None: none finished yet)."""
    if preset not in cache:
        times = sorted(store.run_times(preset))
        cache[preset] = times[len(times) // 2] if times else None
    return cache[preset]


def queue_waits(store, slots: int, now: float | None = None) -> dict[int, float | None]:
    """Estimated seconds until each queued job starts, from measured run times: the running jobs'
    remaining time (training's own estimate once they train, else their preset's median run time
    less what they ran), then the queue in fair order, each job on the first slot that frees
    (``slots``: jobs the cluster runs at once). A job's wait is None when every slot is behind a
    job of a preset with no finished job."""
    now = time.time() if now is None else now
    cache: dict = {}
    free: list[float | None] = []
    for j in store.jobs(states=("running",)):
        prog = progress(Path(j["out_dir"]))
        if prog.get("stage") == "train" and prog.get("eta_seconds") is not None:
            free.append(float(prog["eta_seconds"]))  # training's own estimate
            continue
        typ = typical_seconds(store, j["preset"], cache)
        ran = (j["run_seconds"] or 0) + max(0.0, now - (j["started"] or now))
        free.append(None if typ is None else max(typ - ran, 0.1 * typ))
    free = [f if f is not None else float("inf") for f in free] + [0.0] * max(0, slots - len(free))
    heapq.heapify(free)
    queued = {j["id"]: j for j in store.jobs(states=("queued",))}
    waits: dict[int, float | None] = {}
    for jid in fair_order(list(queued.values()), store.last_dispatch()):
        start = heapq.heappop(free)
        typ = typical_seconds(store, queued[jid]["preset"], cache)
        waits[jid] = None if start == float("inf") else round(start, 1)
        heapq.heappush(free, start + typ if typ is not None else float("inf"))
    return waits


def previews(out_dir: Path) -> list[str]:
    d = RunDir(out_dir).previews
    return sorted(p.name for p in d.glob("*.png")) if d.is_dir() else []


def scrub(text, data: Path | None):
    """``text`` without the server's paths: anything under the data folder (or another absolute
    path) becomes its last part."""
    if not isinstance(text, str) or data is None:
        return text
    text = text.replace(str(data) + "/", "").replace(str(data), "")
    return re.sub(r"(?<![\w.])/(?:[\w.@+-]+/)+([\w.@+-]+)", r"\1", text)


#: who cancelled a job, in plain words: (to the student, to the teacher)
CANCELLED_BY = {
    "student": ("You cancelled this job.", "Cancelled by the student."),
    "teacher": ("Your teacher cancelled this job.", "Cancelled by you (the teacher)."),
    "seat": ("Your teacher removed your seat, which cancelled this job.",
             "Cancelled when its seat was removed."),
}


def job_error(job: dict, teacher: bool, data: Path | None) -> str | None:
    """The job's error, or for a cancelled one who cancelled it, in plain words."""
    if job["state"] == "cancelled" and job.get("cancel_by") in CANCELLED_BY:
        return CANCELLED_BY[job["cancel_by"]][1 if teacher else 0]
    return scrub(job["error"], data)


def elapsed_s(job: dict) -> float:
    """Seconds the job has run, all attempts, the current one so far."""
    now = time.time() - job["started"] if job["state"] == "running" and job["started"] else 0.0
    return round((job.get("run_seconds") or 0) + max(0.0, now), 1)


def job_view(job: dict, positions: dict[int, int] | None = None, teacher: bool = False,
             data: Path | None = None, waits: dict | None = None) -> dict:
    """The public fields of a job (no server paths: students' texts pass :func:`scrub` with the
    data folder ``data``); ``waits``: :func:`queue_waits`."""
    out = Path(job["out_dir"])
    done = job["state"] == "done" and not job.get("purged")
    prog = progress(out) if job["state"] != "queued" or job["attempts"] else {}
    v = {
        "id": job["id"], "state": job["state"], "preset": job["preset"], "created": job["created"],
        "started": job["started"], "finished": job["finished"], "note": job["upload_note"],
        "error": job_error(job, teacher, data), "attempts": job["attempts"], "student": job["student_name"],
        "queue_position": (positions or {}).get(job["id"]) if job["state"] == "queued" else None,
        "queue_wait_s": (waits or {}).get(job["id"]) if job["state"] == "queued" else None,
        "elapsed_s": elapsed_s(job),
        "progress": {k: scrub(x, data) for k, x in prog.items()},
        "previews": previews(out) if not job.get("purged") else [],
        "has_report": done and RunDir(out).report.exists(),
        "has_ply": done and RunDir(out).scene_ply.exists(),
        "purged": bool(job.get("purged")), "run_seconds": round(job.get("run_seconds") or 0, 1),
    }
    if teacher:
        v.update(student_id=job["student_id"], node_id=job["node_id"], dispatch_seq=job["dispatch_seq"],
                 rerun_of=job["rerun_of"], video_fps=job.get("video_fps"))
    return v


CLASS_NEXT_STEP = (
    "<p>Everything is on the class page, beside this job:</p><ul>"
    "<li><b>Open the viewer</b> to look around the scene in your web browser (click a camera to see "
    "through it).</li>"
    "<li><b>Unreal export (zip)</b>: choose your Unreal plugin, download, unzip, and follow "
    "<code>README.txt</code> inside.</li>"
    "<li><b>3D scene file (.ply)</b>: the splats themselves, for other splat viewers.</li></ul>"
    "<p>For better detail, upload again with more photos (30-60, all around the object, sharp, "
    "overlapping) or a slower preset.</p>")


def report_title(job: dict) -> str:
    """What the class report is called: the student's job, not the output folder."""
    return f"{job['student_name']}'s job {job['id']} ({job['preset']})"


def class_report(job: dict) -> Path:
    """``OUT/report_student.html``: the report as students see it: titled with the student's job,
    the next step points at the class page's downloads, and no server paths are shown. Made
    again when the report is newer."""
    from ..fileio import write_text_atomic
    from ..report import render_html

    out = Path(job["out_dir"])
    target = RunDir(out).student_report
    if target.exists() and target.stat().st_mtime >= RunDir(out).report.stat().st_mtime:
        return target
    page = render_html(out, next_step=CLASS_NEXT_STEP, shown_path=f"job {job['id']}")
    # the report is titled after its folder ("out" here): the class knows it as the student's job
    page = re.sub(r"(<title>|<h1>)[^<]*(</title>|</h1>)",
                  lambda m: m[1] + html.escape(report_title(job)) + m[2], page, count=2)
    data = out.parents[2]  # DATA/jobs/<id>/out
    page = page.replace(html.escape(str(data)), "").replace(str(data), "")
    write_text_atomic(target, page)
    return target


#: the Unreal plugins as the student page's menu names them (what a student looks for in
#: Unreal's Plugins window or on the marketplace, not the source repositories' names)
PLUGIN_NAMES = {
    "nanogs": "NanoGS",
    "italink": "Gaussian Splatting for Unreal Engine (Italink)",
    "picosplat": "PICO Splat",
    "xv3dgs": "XVERSE XScene",
    "luma": "Luma AI",
    "uefn": "Unreal's own Gaussian splats (UEFN)",
    "generic": "Another splat viewer (plain PLY)",
}


def plugin_names() -> dict[str, str]:
    """Plugin key -> plain name, for every plugin splatkit exports to."""
    from ..export.plugins import PLUGINS

    return {k: PLUGIN_NAMES.get(k) or re.sub(r"\s*\(.*\)", "", v.title) for k, v in PLUGINS.items()}


def unreal_zip(job: dict, plugin: str) -> Path:
    """``OUT/exports/<plugin>.zip``: the Unreal export for ``plugin``, made once, then reused."""
    from ..export.plugins import preset

    preset(plugin)  # an unknown plugin: a UserError naming the known ones
    out = Path(job["out_dir"])
    target = RunDir(out).export_zip(plugin)
    with _cache_lock:
        lock = _export_locks.setdefault((job["id"], plugin), threading.Lock())
    with lock:
        if target.exists():
            return target
        from ..export.run_folder import export_run
        from ..export.unreal import UnrealExportOptions

        name = f"splatkit_job{job['id']}"
        folder = RunDir(out).exports / plugin
        # the same run-folder export as `splatkit export` (GPS scale, limits, tiles, messages)
        paths = export_run(out, UnrealExportOptions(plugin=plugin, name=name), dest=folder).paths
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in paths:
                zf.write(p, f"{name}/{p.relative_to(folder).as_posix()}")
            zf.writestr(f"{name}/README.txt", unreal_readme(plugin, name, [p.name for p in paths]))
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)
        return target


def unreal_readme(plugin: str, name: str, files: list[str]) -> str:
    """The short import guide inside the Unreal zip."""
    from ..export.plugins import PLUGINS

    p = PLUGINS[plugin]
    ply = next((f for f in files if f.endswith(".ply")), f"{name}.ply")
    manifest = next((f for f in files if f.endswith(".unreal.json")), f"{name}.unreal.json")
    how = ("Drag the .ply file into the Content Browser: the plugin imports it as a splat asset."
           if p.factory_import else "Import the .ply with the plugin's own import button "
           "(or drag it into the editor).")
    return f"""Your Gaussian splat scene for Unreal Engine ({p.title})
{'=' * 60}

Files:
  {ply:<40} the splats (upright, metres, origin on the floor)
  {manifest:<40} how it was made (scale, up axis, transform)

Import:
  1. In your Unreal project, enable the plugin "{p.title}"
     (Edit > Plugins), then restart the editor.
  2. Unzip this folder to a path with plain letters only (no accents or
     special characters: some importers fail otherwise).
  3. {how}
  4. Drag the new asset into the level. It needs no rotation: +Z is up.

The size is an estimate (photos have no scale): if the scene is too big
or too small, scale the actor. About this plugin: {p.note}

Automatic import (optional): splatkit's unreal_export/import_splat.py,
run in the editor (Tools > Execute Python Script) with the path of
{manifest}, imports it and places it for you.
"""
