"""Photos are grouped into cameras by EXIF make, model, focal length and size (COLMAP's rule).

The case: fountain-P11 at 400 px where every other photo is "zoomed": its central two thirds
cropped and resized back to the full size (the same pixel size, 1.5 x the focal length, the same
pose), with EXIF focal lengths of 10 mm and 15 mm. Forced into one camera, such photos come out
with wrong poses; grouped, each camera gets its own focal length and the poses match the
ground truth.
"""

from __future__ import annotations

import pytest
from PIL import Image
from sfm_util import FOUNTAIN, small_copies

from splatkit.config import IngestConfig, SfmConfig
from splatkit.ingest import Photo, PhotoSet, ingest
from splatkit.sfm import read_sfm_record, run_sfm
from splatkit.sfm.align import read_strecha_cameras, scene_errors
from splatkit.sfm.cameras import camera_groups

SIZE = 400
ZOOM = 1.5
#: fountain-P11's focal length (K.txt, 2759.5 px at 3072 px wide) as a 35 mm equivalent
F35 = 2759.48 / 3072 * 36


def _exif(focal_mm: float, f35: float) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "TestCam", "T1"
    sub = exif.get_ifd(0x8769)
    sub[0x920A], sub[0xA405] = focal_mm, int(round(f35))
    return exif.tobytes()


def _zoom_odd(k: int, im: Image.Image):
    if k % 2 == 0:
        return im, _exif(10.0, F35)
    w, h = im.size
    cw, ch = w / ZOOM, h / ZOOM
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return im.resize((w, h), Image.Resampling.LANCZOS, box=box), _exif(10.0 * ZOOM, F35 * ZOOM)


def _photo(name, make="", model="", focal=None, w=400, h=300) -> Photo:
    return Photo(name=name, source=None, path=None, width=w, height=h, orig_width=w, orig_height=h,
                 make=make, model=model, focal_mm=focal, focal_35mm=None)  # fmt: skip


def test_grouping_rule():
    ps = [
        _photo("a.jpg", "Acme", "X1", 5.0),
        _photo("b.jpg", "Acme", "X1", 5.0),
        _photo("c.jpg", "Acme", "X1", 7.5),  # zoomed: another camera
        _photo("d.jpg", "Acme", "X2", 5.0),  # another model
        _photo("e.jpg", "Acme", "X1", 5.0, w=300, h=400),  # another size
        _photo("f.jpg"), _photo("g.jpg"),  # no EXIF: one camera
    ]  # fmt: skip
    groups = camera_groups(PhotoSet(src=None, image_dir=None, photos=ps))
    assert sorted(g.names for g in groups) == [
        ["a.jpg", "b.jpg"], ["c.jpg"], ["d.jpg"], ["e.jpg"], ["f.jpg", "g.jpg"]
    ]  # fmt: skip
    assert groups[0].label in ("Acme X1 at 5 mm, 400x300", "camera without EXIF, 400x300")
    per_photo = camera_groups(PhotoSet(src=None, image_dir=None, photos=ps), single_camera=False)
    assert len(per_photo) == len(ps)


@pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no strecha_fountain_p11")
def test_two_zoom_settings_give_two_cameras_and_right_poses(tmp_path):
    src = small_copies(FOUNTAIN / "images", tmp_path / "photos", SIZE, edit=_zoom_odd)
    photos = ingest(src, tmp_path / "work", IngestConfig(max_image_size=SIZE))
    scene = run_sfm(photos, tmp_path / "out", SfmConfig(max_image_size=SIZE, num_threads=2))
    rec = read_sfm_record(tmp_path / "out")
    assert sorted(c["photos"] for c in rec["cameras"]) == [5, 6], rec["cameras"]
    assert rec["registered"] == 11
    err = scene_errors(scene, read_strecha_cameras(FOUNTAIN / "gt_dense_cameras"))
    assert err.median_rot_deg < 0.5 and err.max_rot_deg < 1.0, err.rot_deg
    assert err.median_center_frac < 0.01, err.center
    f = {n: float(scene.cameras.K[i, 0, 0]) for i, n in enumerate(scene.cameras.names)}
    wide = [f[n] for k, n in enumerate(photos.names) if k % 2 == 0]
    zoomed = [f[n] for k, n in enumerate(photos.names) if k % 2]
    assert max(zoomed) / min(zoomed) < 1.001 and max(wide) / min(wide) < 1.001  # one per camera
    assert abs(zoomed[0] / wide[0] - ZOOM) < 0.03, (zoomed[0], wide[0])
