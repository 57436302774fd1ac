"""The second chance places a photo that the first pass dropped.

The case: fountain-P11 at 400 px with at most 256 SIFT features per photo, one photo with 60 % of
it covered by a coarse random texture (like foliage or clutter in front of the scene). Its 256
strongest features all land on the texture, so the first pass cannot place it; the second chance
(8192 features on the whole working copy, guided matching against the placed photos,
registration into the model) does.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sfm_util import FOUNTAIN, small_copies

from splatkit.config import IngestConfig, SfmConfig
from splatkit.ingest import ingest
from splatkit.sfm import read_sfm_record, run_sfm
from splatkit.sfm.align import read_strecha_cameras, scene_errors

SIZE = 400
CLUTTERED = 5


def _clutter(k: int, im: Image.Image):
    if k != CLUTTERED:
        return im, None
    a = np.asarray(im).copy()
    h, w = a.shape[:2]
    cw = int(0.6 * w)
    noise = np.random.default_rng(0).integers(0, 256, (h // 8 + 1, cw // 8 + 1, 3), dtype=np.uint8)
    a[:, :cw] = np.asarray(Image.fromarray(noise).resize((cw, h), Image.Resampling.BILINEAR))
    return Image.fromarray(a), None


@pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no strecha_fountain_p11")
def test_second_chance_places_a_photo_the_first_pass_dropped(tmp_path):
    src = small_copies(FOUNTAIN / "images", tmp_path / "photos", SIZE, edit=_clutter)
    photos = ingest(src, tmp_path / "work", IngestConfig(max_image_size=SIZE))
    cluttered = photos.names[CLUTTERED]
    scene = run_sfm(photos, tmp_path / "out", SfmConfig(max_image_size=SIZE, max_features=256, num_threads=2))
    rec = read_sfm_record(tmp_path / "out")
    assert rec["first_pass_models"][0] == 10  # the first pass left the cluttered photo out
    assert rec["second_chance"]["placed"] == [cluttered]
    assert rec["registered"] == 11 and cluttered in scene.cameras.names
    # and it is placed where it belongs: as close to the ground truth as the others (with 256
    # features at 400 px the whole model is off by about 2 degrees)
    err = scene_errors(scene, read_strecha_cameras(FOUNTAIN / "gt_dense_cameras"))
    i = scene.cameras.names.index(cluttered)
    assert err.rot_deg[i] < err.median_rot_deg + 0.5, err.rot_deg
    assert err.center[i] < 2 * np.median(err.center) + 0.01 * err.extent, err.center
