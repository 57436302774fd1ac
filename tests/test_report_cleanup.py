"""The report's cleanup section (splatkit/report/cleanup.py)."""

from __future__ import annotations

import json

from PIL import Image

from splatkit.report import render_html
from splatkit.rundir import RunDir

CLEANUP = {"removed": {"unseen": 1200, "isolated": 35, "clearance": 4}, "removed_total": 1239,
           "kept": 28761, "levels": {"unseen": 0.02, "isolated": 16.0, "clearance": None},
           "psnr_before": 30.31, "psnr_after": 30.29, "psnr_delta": -0.02, "held_out_views": 7,
           "trials": []}  # fmt: skip


def _run(tmp_path, cleanup: dict | None):
    rd = RunDir(tmp_path / "out")
    rd.root.mkdir()
    m = {"psnr": 30.31, "ssim": 0.9, "num_splats": 30000, "preset": "quick", "per_image": []}
    if cleanup:
        m["cleanup"] = cleanup
        for which, colour in (("before", (200, 50, 50)), ("after", (50, 200, 50))):
            rd.cleanup_preview(which).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 32), colour).save(rd.cleanup_preview(which))
    rd.metrics.write_text(json.dumps(m))
    return rd


def test_section_says_what_was_removed_by_which_rule_and_shows_before_after(tmp_path):
    rd = _run(tmp_path, CLEANUP)
    page = render_html(rd.root)
    sec = page[page.index("<section id='cleanup'>"):]
    sec = sec[: sec.index("</section>")]
    assert "1,239</b> of 30,000 splats (4.1%)" in sec and "30.31 &rarr; 30.29 dB (-0.020 dB)" in sec
    for rule, n in (("unseen", "1,200"), ("isolated", "35"), ("clearance", "4")):
        row = sec[sec.index(f"data-rule='{rule}'"):]
        assert f"<td>{n}</td>" in row[: row.index("</tr>")]
    assert sec.count("<img src=\"data:image/png;base64,") == 2
    assert "before cleanup" in sec and "after cleanup" in sec


def test_section_without_cleanup_says_so(tmp_path):
    page = render_html(_run(tmp_path, None).root)
    sec = page[page.index("<section id='cleanup'>"):]
    assert "No cleanup in this run" in sec[: sec.index("</section>")]
