"""metrics.json as one typed record (splatkit/metrics.py): written and read back the same, each
field checked on reading (a wrong type reads as missing), unknown keys kept."""

from __future__ import annotations

import json
import math

from splatkit.metrics import CleanupSummary, CoachSummary, PhotoCounts, Resolution, RunMetrics, SkippedPhoto
from splatkit.scores import ViewScore


def _full() -> RunMetrics:
    return RunMetrics(
        psnr=24.5, ssim=0.81, per_image=(ViewScore("a.jpg", 24.0, 0.8), ViewScore("b.jpg", 25.0, 0.82)),
        steps=3000, num_splats=120_000, device="cpu", backend="cpu", preset="quick", resolution=640,
        resolution_detail=Resolution(800, 640, 640),
        images=PhotoCounts(20, 19, (SkippedPhoto("x.heic", "could not read"),), 18, ("c.jpg",), 16, 2),
        seconds={"sfm": 30.5, "total": 400.0}, cpu_count=2, versions={"splatkit": "0.9"},
        cleanup=CleanupSummary({"unseen": 10}, 10, 119_990, {"unseen": 0.01}, 24.5, 24.49, 2, []),
        coach=CoachSummary("Fair result", ("Shoot more",), {"findings": []}),
    )  # fmt: skip


def test_round_trip_through_json(tmp_path):
    m = _full()
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(m.to_json(), indent=2))
    back = RunMetrics.read(path)
    assert back == m and back.finished


def test_the_file_keeps_its_layout():
    """Other tools and earlier runs read these keys: the layout is the module doc's."""
    d = _full().to_json()
    assert d["images"]["skipped"] == [{"name": "x.heic", "reason": "could not read"}]
    assert d["per_image"][0] == {"name": "a.jpg", "psnr": 24.0, "ssim": 0.8}
    assert d["resolution_detail"] == {"requested": 800, "trained": 640, "evaluated": 640}
    assert d["cleanup"]["psnr_delta"] == d["cleanup"]["psnr_after"] - d["cleanup"]["psnr_before"]
    assert d["coach"] == {"diagnosis": "Fair result", "advice": ["Shoot more"], "findings": []}


def test_wrong_types_read_as_missing_and_unknown_keys_are_kept():
    d = _full().to_json()
    d.update(psnr="high", num_splats=True, images=[1, 2], seconds={"sfm": "long", "total": 3},
             cleanup={"kept": "all"}, coach="fine", per_image={"z.jpg": {"psnr": 20.0, "ssim": 0.7}},
             later_key={"x": 1})  # fmt: skip
    m = RunMetrics.from_json(d)
    assert m.psnr is None and m.num_splats is None and m.images is None and not m.finished
    assert m.seconds == {"total": 3.0} and m.cleanup is None and m.coach is None
    assert m.per_image == (ViewScore("z.jpg", 20.0, 0.7),)  # the {name: scores} form is read too
    assert m.ssim == 0.81 and m.to_json()["later_key"] == {"x": 1}


def test_nan_means_no_held_out_photo_and_damaged_files_read_as_none(tmp_path):
    m = RunMetrics.from_json(json.loads(json.dumps({"psnr": float("nan"), "images": {}})))
    assert math.isnan(m.psnr) and m.images == PhotoCounts()
    for text in ("[1, 2]", "{not json", ""):
        (tmp_path / "metrics.json").write_text(text)
        assert RunMetrics.read(tmp_path / "metrics.json") is None
    assert RunMetrics.read(tmp_path / "missing.json") is None
