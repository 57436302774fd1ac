"""What the pages show about a job: live progress from ``OUT/events.jsonl``, queue position,
result files, the classroom copy of the report, and the Unreal export zip (made on demand with
:func:`export_unreal`, with a README on importing it). Students never see server paths: every text
they get passes :func:`scrub`."""

from __future__ import annotations

import html
import io
import json
import re
import threading
import zipfile
from pathlib import Path

from .store import fair_order

_progress_cache: dict[str, tuple[int, dict]] = {}
_cache_lock = threading.Lock()
_export_locks: dict[tuple[int, str], threading.Lock] = {}


def progress(out_dir: Path) -> dict:
    """Stage, training step, loss, latest held-out PSNR and the time of the first event, read
    incrementally from the job's ``events.jsonl`` (the pipeline's own event stream)."""
    path = Path(out_dir) / "events.jsonl"
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
        for line in data[:end].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            _apply(state, ev)
        _progress_cache[key] = (offset + end, state)
        return dict(state)


def _apply(state: dict, ev: dict) -> None:
    kind = ev.get("kind")
    state.setdefault("first_event", ev.get("time"))
    state["last_event"] = ev.get("time")
    if kind == "stage_started":
        state["stage"] = ev.get("stage")
        state["detail"] = ev.get("detail", "")
    elif kind == "stage_progress":
        state["stage"] = ev.get("stage")
        state["detail"] = f"{ev.get('done')}/{ev.get('total')} {ev.get('detail', '')}".strip()
    elif kind == "train_step":
        state.update(stage="train", step=ev["step"], total_steps=ev["total_steps"],
                     loss=round(float(ev["loss"]), 5), eta_seconds=round(float(ev["eta_seconds"]), 1))
    elif kind == "eval":
        state["psnr"] = round(float(ev["psnr"]), 2)
    elif kind == "message":
        if ev.get("stage") == "done":
            state["stage"] = "done"
        state["message"] = ev.get("text", "")


def queue_positions(store) -> dict[int, int]:
    """1-based position of every queued job in the fair (round-robin) order."""
    queued = store.jobs(states=("queued",))
    return {jid: i + 1 for i, jid in enumerate(fair_order(queued, store.last_dispatch()))}


def previews(out_dir: Path) -> list[str]:
    d = Path(out_dir) / "previews"
    return sorted(p.name for p in d.glob("*.png")) if d.is_dir() else []


def scrub(text, data: Path | None):
    """``text`` without the server's paths: anything under the data folder (or another absolute
    path) becomes its last part."""
    if not isinstance(text, str) or data is None:
        return text
    text = text.replace(str(data) + "/", "").replace(str(data), "")
    return re.sub(r"(?<![\w.])/(?:[\w.@+-]+/)+([\w.@+-]+)", r"\1", text)


def job_view(job: dict, positions: dict[int, int] | None = None, teacher: bool = False,
             data: Path | None = None) -> dict:
    """The public fields of a job (no server paths: students' texts pass :func:`scrub` with the
    data folder ``data``)."""
    out = Path(job["out_dir"])
    done = job["state"] == "done" and not job.get("purged")
    prog = progress(out) if job["state"] != "queued" or job["attempts"] else {}
    v = {
        "id": job["id"], "state": job["state"], "preset": job["preset"], "created": job["created"],
        "started": job["started"], "finished": job["finished"], "note": job["upload_note"],
        "error": scrub(job["error"], data), "attempts": job["attempts"], "student": job["student_name"],
        "queue_position": (positions or {}).get(job["id"]) if job["state"] == "queued" else None,
        "progress": {k: scrub(x, data) for k, x in prog.items()},
        "previews": previews(out) if not job.get("purged") else [],
        "has_report": done and (out / "report.html").exists(),
        "has_ply": done and (out / "scene.ply").exists(),
        "purged": bool(job.get("purged")), "run_seconds": round(job.get("run_seconds") or 0, 1),
    }
    if teacher:
        v.update(student_id=job["student_id"], node_id=job["node_id"], dispatch_seq=job["dispatch_seq"],
                 rerun_of=job["rerun_of"])
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


def class_report(job: dict) -> Path:
    """``OUT/report_class.html``: the report as students see it: the next step points at the class
    page's downloads, and no server paths are shown. Made again when the report is newer."""
    from ..fileio import write_text_atomic
    from ..report import render_html

    out = Path(job["out_dir"])
    target = out / "report_class.html"
    if target.exists() and target.stat().st_mtime >= (out / "report.html").stat().st_mtime:
        return target
    page = render_html(out, next_step=CLASS_NEXT_STEP, shown_path=f"job {job['id']}")
    data = out.parents[2]  # DATA/jobs/<id>/out
    page = page.replace(html.escape(str(data)), "").replace(str(data), "")
    write_text_atomic(target, page)
    return target


def unreal_zip(job: dict, plugin: str) -> Path:
    """``OUT/exports/<plugin>.zip``: the Unreal export for ``plugin``, made once, then reused."""
    from ..export.plugins import preset

    preset(plugin)  # an unknown plugin: a UserError naming the known ones
    out = Path(job["out_dir"])
    target = out / "exports" / f"{plugin}.zip"
    with _cache_lock:
        lock = _export_locks.setdefault((job["id"], plugin), threading.Lock())
    with lock:
        if target.exists():
            return target
        from ..export.run_folder import export_run
        from ..export.unreal import UnrealExportOptions

        name = f"splatkit_job{job['id']}"
        folder = out / "exports" / plugin
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
