"""Pair selection: retrieval (a vocabulary tree built from the photos' own features) against
exhaustive matching on the same features, and the automatic choice.

The case: 32 consecutive photos of South Building (the 15th to the 46th: a walk along two sides
of the building) at 320 px, 1024 features. Exhaustive matching tries all 496 pairs; retrieval
(each photo with its 6 most similar photos, then the transitive rounds: about half as many
pairs) must find at least 95 % of the pairs that exhaustive matching verifies and place the
same photos.
"""

from __future__ import annotations

import shutil

import numpy as np
import pycolmap
import pytest
from PIL import Image
from sfm_util import SOUTH, small_copies

from splatkit.config import IngestConfig, SfmConfig
from splatkit.ingest import Photo, PhotoSet, ingest
from splatkit.sfm import read_sfm_record, run_sfm
from splatkit.sfm.database import image_ids, verified_pairs
from splatkit.sfm.pairs import EXHAUSTIVE_MAX, pair_method, sequential_pairs

SIZE = 320
N = 32


@pytest.mark.skipif(not SOUTH.is_dir(), reason="no south_building_128")
def test_retrieval_finds_the_verified_pairs_of_exhaustive_matching(tmp_path):
    names = sorted(f.name for f in (SOUTH / "images").iterdir())[14 : 14 + N]
    src = small_copies(SOUTH / "images", tmp_path / "photos", SIZE, names=names)
    photos = ingest(src, tmp_path / "work", IngestConfig(max_image_size=SIZE))
    base = dict(max_image_size=SIZE, max_features=1024, num_threads=2)
    ex = run_sfm(photos, tmp_path / "ex", SfmConfig(matcher="exhaustive", **base))
    # the same features: the retrieval run continues from a copy of the database
    (tmp_path / "re" / "sfm_work").mkdir(parents=True)
    for f in ("database.db", "database.json"):
        shutil.copy(tmp_path / "ex" / "sfm_work" / f, tmp_path / "re" / "sfm_work" / f)
    re_ = run_sfm(photos, tmp_path / "re", SfmConfig(matcher="retrieval", retrieval_neighbours=6, **base))
    rec_ex, rec_re = read_sfm_record(tmp_path / "ex"), read_sfm_record(tmp_path / "re")
    assert rec_ex["pairs"]["matched"] == N * (N - 1) // 2
    assert rec_re["matcher"] == "retrieval" and rec_re["pairs"]["matched"] < 0.6 * rec_ex["pairs"]["matched"]
    want = verified_pairs(tmp_path / "ex" / "sfm_work" / "database.db")
    got = verified_pairs(tmp_path / "re" / "sfm_work" / "database.db")
    assert len(set(got) & set(want)) >= 0.95 * len(want), (len(got), len(want))
    assert re_.cameras.names == ex.cameras.names and len(ex.cameras) >= 30


def _photos(n: int, kind: str = "photos") -> PhotoSet:
    ps = [Photo(name=f"{k:03d}.jpg", source=None, path=None, width=8, height=8, orig_width=8,
                orig_height=8) for k in range(n)]  # fmt: skip
    return PhotoSet(src=None, image_dir=None, photos=ps, source_kind=kind)


def test_automatic_choice():
    auto = SfmConfig()
    assert pair_method(_photos(EXHAUSTIVE_MAX), auto) == "exhaustive"
    assert pair_method(_photos(EXHAUSTIVE_MAX + 1), auto) == "retrieval"
    assert pair_method(_photos(20, "video"), auto) == "sequential"
    assert pair_method(_photos(20), SfmConfig(matcher="spatial")) == "exhaustive"  # no GPS


def test_sequential_pairs_in_capture_order(tmp_path):
    names = [f"{k:03d}.jpg" for k in range(40)]
    (tmp_path / "imgs").mkdir()
    for n in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / n)
    db = tmp_path / "db.db"
    pycolmap.Database.open(str(db)).close()
    pycolmap.import_images(str(db), str(tmp_path / "imgs"), camera_mode=pycolmap.CameraMode.SINGLE,
                           image_names=names[::-1])  # ids in another order than the names  # fmt: skip
    ids = image_ids(db)
    pairs = sequential_pairs(db, names, overlap=3)

    def has(a, b):
        return (min(ids[names[a]], ids[names[b]]), max(ids[names[a]], ids[names[b]])) in pairs

    assert has(0, 1) and has(0, 3) and has(0, 4) and has(0, 8) and has(0, 32) and has(7, 39)
    assert not has(0, 5) and not has(0, 9) and not has(0, 33)
