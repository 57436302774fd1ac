"""The GPU session's CPU-side logic (scripts/bench_gpu.py, scripts/bench_gpu_plan.py): the time
guard, pairs run all or none, the results tables, simple_trainer's figures and its offline patch."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import bench_gpu_plan as plan  # noqa: E402


def _session(tmp_path, *args) -> dict:
    ap = argparse.ArgumentParser()
    plan.add_session_args(ap)
    assert plan.session(ap.parse_args(["--dry-run", "--out", str(tmp_path), *args])) == 0
    return json.loads((tmp_path / "results.json").read_text())


def test_dry_run_keeps_priority_order_and_the_budget(tmp_path):
    res = _session(tmp_path, "--budget", "570", "--elapsed", "75", "--parallel-pairs")
    rows = res["rows"]
    assert [r["name"] for r in rows] == [j.name for j in plan.PLAN]
    ran = [r for r in rows if r["status"] == "dry-run"]
    assert ran[0]["name"] == "fox_800_30k_splatkit" and ran[1]["name"] == "fox_800_30k_simple_trainer"
    assert sum(float(r["note"].split()[1]) for r in ran) > 0
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and "dry_run: True" in md


def test_pairs_run_all_or_none(tmp_path):
    """Without room for both trainers of a pair, neither runs: a lone half is no comparison."""
    res = _session(tmp_path, "--budget", "300", "--only", "fox_800_30k", "fountain_800_3k")
    status = {r["name"]: r["status"] for r in res["rows"]}
    assert status["fox_800_30k_splatkit"] == status["fox_800_30k_simple_trainer"] == "skipped"
    assert status["fountain_800_3k_splatkit_refine1500"] == "dry-run"  # small jobs still run


def test_guard_learns_from_measured_times():
    clock = {"t": 0.0}
    g = plan.Guard(100.0, 10.0, lambda: clock["t"])
    a = plan.Job("a", "splatkit", est_s=20)
    b = plan.Job("b", "splatkit", est_s=40)
    assert g.left() == 90.0 and g.fits([b])
    clock["t"] = 40.0
    g.record(a, 40.0)  # twice as slow as estimated: b now needs ~80 s
    assert g.estimate(b) == 80.0 and not g.fits([b]) and g.fits([plan.Job("c", "pytest", est_s=40)])


def test_simple_trainer_figures_are_read_from_its_stats(tmp_path):
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "val_step2999.json").write_text(json.dumps({"psnr": 20.4512, "ssim": 0.75612, "num_GS": 157067}))
    (stats / "train_step2999_rank0.json").write_text(json.dumps({"ellipse_time": 35.04, "mem": 0.371}))
    got = plan.simple_trainer_figures(tmp_path, 3000)
    assert got == {"psnr": 20.451, "ssim": 0.7561, "splats": 157067, "train_seconds": 35.0,
                   "peak_gpu_mem_gib": 0.37}


def test_trainer_patch_matches_once_or_fails():
    src = "\n".join([
        "import viser", "from gsplat_viewer import GsplatViewer, GsplatRenderTabState",
        "from nerfview import CameraState, RenderTabState, apply_float_colormap",
        "from fused_ssim import fused_ssim", "class R:", "    def __init__(self):", "        if True:",
        '            self.lpips = LearnedPerceptualImagePatchSimilarity(',
        '                net_type="alex", normalize=True', "            ).to(self.device)", ""])
    out = plan.patch_trainer(src)
    assert "viser" not in out and "from pytorch_msssim import ssim" in out and "float('nan')" in out
    compile(out, "simple_trainer.py", "exec")
    with pytest.raises(ValueError, match="expected one match"):
        plan.patch_trainer(src.replace("import viser\n", ""))


def test_session_runs_every_file_that_holds_gpu_tests():
    mark = re.compile(r"^(@pytest\.mark\.gpu|pytestmark = pytest\.mark\.gpu)", re.M)
    marked = {f"tests/{p.name}" for p in (REPO / "tests").glob("test_*.py") if mark.search(p.read_text())}
    assert marked and marked <= set(plan.GPU_TEST_FILES)
    assert all((REPO / f).exists() for f in plan.GPU_TEST_FILES)
