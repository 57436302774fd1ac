"""The capture coach's held-out views: each view's error is given its known cause."""

from __future__ import annotations

import numpy as np
from test_coach import blob_points, model, ring, texture, write_preview

from splatkit.report import coach_views


def test_view_causes(tmp_path):
    photo = np.asarray(texture(1), dtype=np.float32)
    cams = ring(16)
    pts = blob_points(600)
    m = model(cams, pts, [list(range(16))] * len(pts))  # every part well seen
    rel = {n: 1.0 for n in m.names}

    def cause(render, name="0002.jpg", psnr=19.0, rel_sharp=rel, mdl=m):
        p = tmp_path / f"{np.random.default_rng().integers(1 << 30)}.png"
        write_preview(p, photo.astype(np.uint8), np.clip(render, 0, 255).astype(np.uint8))
        return coach_views.view_cause(name, psnr, p, rel_sharp, mdl, typical=25.0)

    noisy = photo + np.random.default_rng(0).normal(0, 12, photo.shape)
    assert cause(photo * 0.7).key == "exposure"  # a darker exposure
    assert cause(noisy, rel_sharp={**rel, "0002.jpg": 0.2}).key == "blur"  # the photo is blurred
    moved = photo.copy()
    moved[40:80, 60:100] = 255 - moved[40:80, 60:100]  # something changed in one place
    assert cause(moved).key == "moving"
    assert cause(noisy).key == "detail"  # error spread everywhere, nothing else to blame
    assert cause(photo, psnr=30.0).key == "ok"
    # a held-out view far from every training camera: too few viewpoints near it
    lone = ring(16)[:1] + [c for c in ring(24)[8:20]]
    m_far = model(lone, pts, [list(range(len(lone)))] * len(pts))
    assert cause(noisy, name="0001.jpg", mdl=m_far).key == "few_views"
