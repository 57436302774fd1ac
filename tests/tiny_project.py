"""A tiny COLMAP project (``images/`` + ``sparse/0``) for whole-command tests in seconds.

Eight ring cameras (160 x 120, PINHOLE) looking at coloured blobs, the photos rendered by splatkit's
own renderer (tests/fake_run.py), the blobs' centres as the sparse points. ``splatkit train
PROJECT`` reads the cameras as they are (SfM skipped), so the whole job (run folder, resume,
training, evaluation, scene.ply, report) runs in seconds with the ``tiny`` preset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from fake_run import N_CAMS, blob_splats, intrinsics, render_view, ring_cameras, write_colmap
from PIL import Image


def make_project(root: Path) -> Path:
    """Write the project into ``root`` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    K, w2cs, splats = intrinsics(), ring_cameras(), blob_splats()
    (root / "images").mkdir(exist_ok=True)
    for i, w2c in enumerate(w2cs):
        Image.fromarray(render_view(splats, w2c, K)).save(root / "images" / f"{i + 1:04d}.jpg", quality=95)
    pts = splats.means.numpy().astype(np.float64)
    cols = (np.clip(0.5 + 0.28209479 * splats.sh0[:, 0].numpy(), 0, 1) * 255).astype(np.uint8)
    write_colmap(root / "sparse" / "0", w2cs, K, pts, cols)
    assert len(list((root / "images").iterdir())) == N_CAMS
    return root


def hashes(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below ``folder`` (to show nothing was touched)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def cli(capsys, *argv: str) -> tuple[int, str]:
    """``splatkit ARGV`` in this process: (exit code, everything printed); never a traceback."""
    from splatkit.cli import main

    rc = main(list(argv))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    return rc, cap.out + cap.err


def stopped_run(project: Path, out: Path, at: int = 15) -> list[int]:
    """A tiny-preset run stopped at step ``at`` as Ctrl-C would stop it; its checkpoint steps."""
    from splatkit.config import preset_config
    from splatkit.events import EventBus
    from splatkit.job import JobRequest, run_job
    from splatkit.train import checkpoint as ck

    polls = {"n": 0}

    def stop() -> bool:
        polls["n"] += 1
        return polls["n"] >= at

    res = run_job(JobRequest(source=project, out_dir=out, cfg=preset_config("tiny")), EventBus(),
                  stop_flag=stop)
    assert res.interrupted
    return [s for s, _ in ck.list_checkpoints(out)]


def signal_when(cmd: list[str], events: Path, needle: str, sig: int, timeout: float = 180.0):
    """Start ``cmd``; once ``needle`` appears in ``events``, send ``sig``; (code, stdout, stderr)."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while time.time() - t0 < timeout and proc.poll() is None:
            if events.exists() and needle in events.read_text(encoding="utf-8"):
                proc.send_signal(sig)
                break
            time.sleep(0.05)
        so, se = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, so, se
