"""What the pages show about a job: live progress from ``OUT/events.jsonl``, queue position,
result files, and the Unreal export zip (made on demand with :func:`export_unreal`)."""

from __future__ import annotations

import io
import json
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


def job_view(job: dict, positions: dict[int, int] | None = None, teacher: bool = False) -> dict:
    """The public fields of a job (no server paths)."""
    out = Path(job["out_dir"])
    done = job["state"] == "done"
    v = {
        "id": job["id"], "state": job["state"], "preset": job["preset"], "created": job["created"],
        "started": job["started"], "finished": job["finished"], "note": job["upload_note"],
        "error": job["error"], "attempts": job["attempts"], "student": job["student_name"],
        "queue_position": (positions or {}).get(job["id"]) if job["state"] == "queued" else None,
        "progress": progress(out) if job["state"] != "queued" or job["attempts"] else {},
        "previews": previews(out),
        "has_report": done and (out / "report.html").exists(),
        "has_ply": done and (out / "scene.ply").exists(),
    }
    if teacher:
        v.update(student_id=job["student_id"], node_id=job["node_id"], dispatch_seq=job["dispatch_seq"],
                 rerun_of=job["rerun_of"])
    return v


def unreal_zip(job: dict, plugin: str) -> Path:
    """``OUT/exports/<plugin>.zip``: the Unreal export for ``plugin``, made once, then reused."""
    from ..errors import UserError
    from ..export.unreal import PLUGINS

    if plugin not in PLUGINS:
        raise UserError(f"Unknown plugin {plugin!r}.", f"Use one of {', '.join(PLUGINS)}.")
    out = Path(job["out_dir"])
    target = out / "exports" / f"{plugin}.zip"
    with _cache_lock:
        lock = _export_locks.setdefault((job["id"], plugin), threading.Lock())
    with lock:
        if target.exists():
            return target
        from ..export.ply import read_ply
        from ..export.unreal import UnrealExportOptions, export_unreal

        splats = read_ply(out / "scene.ply")
        scene = None
        if (out / "sparse" / "0").exists():
            from ..sfm.loaders import load_scene

            scene = load_scene(out)
        name = f"splatkit_job{job['id']}"
        folder = out / "exports" / plugin
        paths = export_unreal(splats, scene, folder, UnrealExportOptions(plugin=plugin, name=name))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in paths:
                zf.write(p, f"{name}/{p.name}")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)
        return target
