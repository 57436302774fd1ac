"""splatkit.sfm.model_files: COLMAP model files walked before pycolmap reads them.

pycolmap 4.2 loops for minutes on a cut-short images.bin, points3D.bin or frames.bin and reads a
cameras.bin one byte short without a word; here every such file must end in a UserError that
names it, at once. Models come from pycolmap's synthetic dataset generator (rigs of two cameras,
so that sensor poses are in the files), written in both formats.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pycolmap
import pytest
from input_util import cut_in_line

from splatkit.errors import UserError
from splatkit.sfm.model_files import read_model

FILES = ["cameras", "images", "points3D", "rigs", "frames"]


@pytest.fixture(scope="module", params=[".bin", ".txt"])
def model(request, tmp_path_factory):
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs, opts.num_cameras_per_rig, opts.num_frames_per_rig = 2, 2, 3
    opts.num_points3D = 150
    opts.camera_model_id = pycolmap.CameraModelId.OPENCV
    opts.camera_params = [300.0, 300.0, 320.0, 240.0, 0.01, -0.01, 0.001, 0.001]
    rec = pycolmap.synthesize_dataset(opts)
    d = tmp_path_factory.mktemp("model" + request.param[1:])
    (rec.write_binary if request.param == ".bin" else rec.write_text)(str(d))
    return d, request.param, rec


def _copy(model, tmp_path):
    d, ext, rec = model
    out = tmp_path / "sparse"
    out.mkdir()
    for f in d.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out, ext, rec


def test_a_sound_model_is_read_unchanged(model, tmp_path):
    d, ext, rec = _copy(model, tmp_path)
    got = read_model(d)
    assert (got.num_rigs(), got.num_cameras(), got.num_images(), got.num_points3D()) == (
        rec.num_rigs(),
        rec.num_cameras(),
        rec.num_images(),
        rec.num_points3D(),
    )
    a, b = got.cameras[1].params, rec.cameras[1].params
    assert np.allclose(a, b)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("cut", [0, 3, 8, 0.5, -1, "garbage"])
def test_damaged_files_are_named_never_read_into_garbage(model, tmp_path, name, cut):
    d, ext, _ = _copy(model, tmp_path)
    f = d / f"{name}{ext}"
    data = f.read_bytes()
    if cut == "garbage":
        data = np.random.default_rng(len(data)).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    elif ext == ".txt" and isinstance(cut, float):  # inside a line: a text file has no count to check
        data = cut_in_line(data, cut, keep_fields=4 if name == "images" else 3)
    else:
        data = data[
            : int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) + cut)
        ]
    f.write_bytes(data)
    if ext == ".txt" and cut == -1:  # the last newline: still a sound text file
        read_model(d)
        return
    if ext == ".txt" and name == "points3D" and cut in (0, 3, 8):  # only a header left: no points,
        assert read_model(d).num_points3D() == 0  # which is sound (they are triangulated later)
        return
    with pytest.raises(UserError) as e:
        read_model(d)
    what = e.value.what
    assert f"{name}{ext} is damaged" in what or "do not fit together" in what, what
    assert "\n" not in what and len(str(e.value).splitlines()) == 2


def test_an_unknown_camera_model_is_named(model, tmp_path):
    d, ext, _ = _copy(model, tmp_path)
    if ext == ".bin":
        b = bytearray((d / "cameras.bin").read_bytes())
        struct.pack_into("<i", b, 8 + 4, 4242)  # the model id of the first camera
        (d / "cameras.bin").write_bytes(bytes(b))
        want = "camera 1 has an unknown camera model (number 4242)"
    else:
        s = (d / "cameras.txt").read_text().replace(" OPENCV ", " FANCY ", 1)
        (d / "cameras.txt").write_text(s)
        want = "'FANCY' is not a COLMAP camera model"
    with pytest.raises(UserError, match=re.escape(want)):
        read_model(d)


def test_an_incomplete_model_says_what_is_missing(model, tmp_path):
    d, ext, _ = _copy(model, tmp_path)
    (d / f"points3D{ext}").unlink()
    with pytest.raises(UserError, match=f"incomplete: no points3D{ext}"):
        read_model(d)
