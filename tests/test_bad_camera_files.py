"""Issue 12, class 4: corrupt or inconsistent camera files given as input, through the real CLI.

Every case runs ``splatkit sfm`` on a small copy of real data: the first 8 fox frames at 1/10 size
(108 x 192) with their ``transforms.json``, and a COLMAP project made from it (a PINHOLE model
with 3D points, binary or text, and its images). A bad file ends in two plain lines naming the
file and the field, exit code 2, no traceback, the input untouched (sha256 and mtime) and nothing
in the output folder but logs; a fixable one (sizes a uniform scale of the images, NeRF-synthetic
files, missing images) is used and the fix is said.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from input_util import FOX, cut_in_line, error_lines, fox_subset, outputs_left, run_cli
from PIL import Image

from splatkit.cli import main
from splatkit.sfm import load_scene, load_transforms_json
from splatkit.sfm.transforms import MAX_BYTES

SCALE, FRAMES = 0.1, 8
W, H = 108, 192
pytestmark = pytest.mark.skipif(not FOX.is_dir(), reason="no fox dataset")


@pytest.fixture(scope="module")
def fox(tmp_path_factory) -> Path:
    """``fox/transforms.json`` + ``fox/images``: 8 frames at 108 x 192, intrinsics scaled alike."""
    return fox_subset(tmp_path_factory.mktemp("fox") / "fox", FRAMES, SCALE)


@pytest.fixture(scope="module")
def project(tmp_path_factory, fox) -> Path:
    """A COLMAP project: ``sparse/0`` (binary PINHOLE model with points) + ``images`` (flat)."""
    tmp = tmp_path_factory.mktemp("project")
    assert main(["sfm", str(fox), "-o", str(tmp / "import"), "--quiet"]) == 0
    rec = pycolmap.Reconstruction(str(tmp / "import" / "sparse" / "0"))
    for im in rec.images.values():
        im.name = im.name.split("/")[-1]
    proj = tmp / "project"
    (proj / "sparse" / "0").mkdir(parents=True)
    rec.write_binary(str(proj / "sparse" / "0"))
    shutil.copytree(tmp / "import" / "images" / "images", proj / "images")
    return proj


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _refused(capsys, src: Path, out: Path, *want: str) -> list[str]:
    rc, text = run_cli(capsys, ["sfm", src, "-o", out], watched=src.parent if src.is_file() else src)
    assert rc == 2, text
    err = error_lines(text)
    assert len(err) == 2, err
    for w in want:
        assert w in err[0], (w, err)
    assert not outputs_left(out), outputs_left(out)  # nothing half-written for the next run
    return err


# ---- COLMAP projects --------------------------------------------------------------------------


def _sparse(p: Path) -> Path:
    return p / "sparse" / "0"


def _patch(path: Path, offset: int, fmt: str, *values) -> None:
    b = bytearray(path.read_bytes())
    struct.pack_into(fmt, b, offset, *values)
    path.write_bytes(bytes(b))


def _cameras(p: Path, field: int, value: float, fmt: str = "<d") -> None:
    """Set one field of every PINHOLE camera in cameras.bin (records of 56 bytes after the count):
    +8 width, +16 height, +24 fx, +32 fy, +40 cx, +48 cy."""
    f = _sparse(p) / "cameras.bin"
    for k in range(struct.unpack_from("<Q", f.read_bytes())[0]):
        _patch(f, 8 + 56 * k + field, fmt, value)


def _turn(p: Path) -> None:
    rec = pycolmap.Reconstruction(str(_sparse(p)))
    w, h = rec.cameras[1].width, rec.cameras[1].height
    _cameras(p, 8, h, "<Q")
    _cameras(p, 16, w, "<Q")


def _legacy(p: Path) -> Path:
    """The layout of COLMAP <= 3.11 (no rigs.bin / frames.bin: the poses are those in images.bin)."""
    for n in ("rigs.bin", "frames.bin"):
        (_sparse(p) / n).unlink()
    return _sparse(p) / "images.bin"


def _text(p: Path) -> Path:
    rec = pycolmap.Reconstruction(str(_sparse(p)))
    for f in _sparse(p).iterdir():
        f.unlink()
    rec.write_text(str(_sparse(p)))
    return _sparse(p)


def _cut(f: Path, size: int | float) -> None:
    """Keep the first ``size`` bytes (a fraction of the file when under 1; negative: drop bytes)."""
    n = f.stat().st_size
    keep = int(n * size) if 0 < size < 1 else (n + size if size < 0 else size)
    f.write_bytes(f.read_bytes()[:keep])


def _cut_text(f: Path) -> None:
    f.write_bytes(cut_in_line(f.read_bytes(), 0.5, keep_fields=4))  # too few for a header or a triple


def _garbage(f: Path) -> None:
    f.write_bytes(np.random.default_rng(1).integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())


def _edit_text(f: Path, old: str, new: str, count: int = 1) -> None:
    s = f.read_text()
    assert old in s
    f.write_text(s.replace(old, new, count))


def _first_data_token(f: Path, k: int, new: str) -> None:
    lines = f.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    t = lines[i].split()
    t[k] = new
    lines[i] = " ".join(t)
    f.write_text("\n".join(lines) + "\n")


def _rename_second_to_first(p: Path) -> None:
    images = _text(p) / "images.txt"
    _edit_text(images, " 0002.jpg", " 0001.jpg")


def _deregister_all(p: Path) -> None:
    rec = pycolmap.Reconstruction(str(_sparse(p)))
    for fid in list(rec.frames):
        rec.deregister_frame(fid)
    rec.write_binary(str(_sparse(p)))


def _outside(p: Path) -> None:
    rec = pycolmap.Reconstruction(str(_sparse(p)))
    next(iter(rec.images.values())).name = "../0001.jpg"
    rec.write_binary(str(_sparse(p)))


def _drop_images(p: Path, keep: int) -> None:
    for f in sorted((p / "images").iterdir())[keep:]:
        f.unlink()


COLMAP_CASES = {
    "cameras.bin one byte short": (
        lambda p: _cut(_sparse(p) / "cameras.bin", -1),
        ["cameras.bin is damaged", "ends in the middle of the parameters of camera 8"],
    ),
    "images.bin cut in half": (
        lambda p: _cut(_sparse(p) / "images.bin", 0.5),
        ["images.bin is damaged", "ends in the middle of"],
    ),
    "points3D.bin cut to 8 bytes": (
        lambda p: _cut(_sparse(p) / "points3D.bin", 8),
        ["points3D.bin is damaged", "too short for the"],
    ),
    "images.bin garbage": (lambda p: _garbage(_sparse(p) / "images.bin"), ["images.bin is damaged"]),
    "points3D.bin garbage": (lambda p: _garbage(_sparse(p) / "points3D.bin"), ["points3D.bin is damaged"]),
    "frames.bin garbage": (lambda p: _garbage(_sparse(p) / "frames.bin"), ["frames.bin is damaged"]),
    "no points3D.bin": (lambda p: (_sparse(p) / "points3D.bin").unlink(), ["incomplete", "no points3D.bin"]),
    "cameras.txt letters for digits": (
        lambda p: _first_data_token(_text(p) / "cameras.txt", 2, "2l2"),
        ["cameras.txt is damaged: line 4: the width is '2l2', not a whole number"],
    ),
    "images.txt cut short": (
        lambda p: _cut_text(_text(p) / "images.txt"),
        ["images.txt is damaged: line"],
    ),
    "points3D.txt with text": (
        lambda p: _first_data_token(_text(p) / "points3D.txt", 2, "abc"),
        ["points3D.txt is damaged: line 4: Y is 'abc', not a number"],
    ),
    "focal length 0": (
        lambda p: _cameras(p, 24, 0.0),
        ["image 0001.jpg: the focal length of camera 1 in cameras.bin is 0", "positive"],
    ),
    "focal length negative": (lambda p: _cameras(p, 32, -275.0), ["the focal length of camera 1", "is -275"]),
    "focal length NaN": (lambda p: _cameras(p, 24, math.nan), ["the focal length of camera 1", "is nan"]),
    "principal point far outside": (
        lambda p: _cameras(p, 40, 5000.0),
        ["the principal point of camera 1 in cameras.bin is 5000, far outside the {pw}x{ph} image"],
    ),
    "sizes do not match the images": (
        lambda p: _cameras(p, 8, 300, "<Q"),
        [
            "the size of camera 1 in cameras.bin is 300x{ph} but the image file is "
            "{pw}x{ph} (not the same shape)"
        ],
    ),
    "sizes turned by 90 degrees": (
        lambda p: _turn(p),
        ["is {ph}x{pw} but the image file is {pw}x{ph} (turned by 90 degrees)"],
    ),
    "NaN pose": (lambda p: _patch(_legacy(p), 44, "<d", math.nan), ["its pose in images.bin holds NaN"]),
    "infinite pose": (
        lambda p: _patch(_legacy(p), 52, "<d", math.inf),
        ["its pose in images.bin holds NaN, infinite or absurdly large numbers"],
    ),
    "non-rigid pose": (
        lambda p: _patch(_legacy(p), 12, "<4d", 2.0, 0.0, 0.0, 0.0),
        ["its pose in images.bin is not a rotation", "has length 2, not 1"],
    ),
    "most images missing": (
        lambda p: _drop_images(p, 2),
        ["Only 2 of the 8 photos of the COLMAP model", "(0003.jpg is missing, and 5 more)"],
    ),
    "two images of one name": (_rename_second_to_first, ["0001.jpg is listed twice (entries 1 and 2)"]),
    "no registered images": (_deregister_all, ["images.bin lists 0 image(s) and none has a pose"]),
    "image outside the folder": (_outside, ["image ../0001.jpg is a path outside the images folder"]),
}


@pytest.mark.parametrize("case", list(COLMAP_CASES))
def test_bad_colmap_project(tmp_path, capsys, project, case):
    proj = _copy(project, tmp_path)
    mutate, want = COLMAP_CASES[case]
    mutate(proj)
    cam = pycolmap.Reconstruction(str(_sparse(project))).cameras[1]
    out = tmp_path / "out"
    err = _refused(capsys, proj, out, *(w.format(pw=cam.width, ph=cam.height) for w in want))
    if "photos of the COLMAP model" not in err[0]:  # the way out: SfM on the photos alone
        assert "splatkit train" in err[1] and str(proj / "images") in err[1]
    # the next run, with a good project, is not confused by what the refused one left
    rc, text = run_cli(capsys, ["sfm", project, "-o", out], watched=project)
    assert rc == 0, text
    assert len(load_scene(out).cameras) == FRAMES


def test_colmap_images_downscaled_and_some_unusable(tmp_path, capsys, project):
    """Images at half the model's size: the cameras are scaled (and it is said). One image missing
    and one truncated: both are named and left out, the other six used."""
    proj = _copy(project, tmp_path)
    cam = pycolmap.Reconstruction(str(_sparse(project))).cameras[1]
    half = (cam.width // 2, round(cam.height / 2))
    for f in (proj / "images").iterdir():
        with Image.open(f) as im:
            im.resize(half, Image.Resampling.LANCZOS).save(f, quality=92)
    (proj / "images" / "0003.jpg").unlink()
    data = (proj / "images" / "0006.jpg").read_bytes()
    (proj / "images" / "0006.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", proj, "-o", out], watched=proj)
    assert rc == 0, text
    assert (
        f"The images are 0.5 times the size of their camera in cameras.bin ({cam.width}x{cam.height} -> "
        f"{half[0]}x{half[1]} pixels; 6 cameras): the cameras are scaled to match"
    ) in text
    assert (
        "2 photo(s) of the COLMAP model are not usable and are left out (0003.jpg is missing, and 1 more)"
        in text
    )
    scene = load_scene(out)
    assert scene.cameras.names == ["0001.jpg", "0002.jpg", "0004.jpg", "0007.jpg", "0008.jpg", "0009.jpg"]
    assert scene.cameras.width.tolist() == [half[0]] * 6
    ref = load_scene(project.parent / "import")  # the full-size import the project was made from
    K, K0 = scene.cameras.K[0].double(), ref.cameras.K[0].double()
    assert np.allclose(K[:2].numpy(), 0.5 * K0[:2].numpy(), rtol=1e-2), (K, K0)


# ---- transforms.json --------------------------------------------------------------------------


def _meta(d: Path) -> dict:
    return json.loads((d / "transforms.json").read_text())


def _write(d: Path, meta) -> None:
    (d / "transforms.json").write_text(json.dumps(meta))


def _frames(fn):
    def mutate(d: Path) -> None:
        m = _meta(d)
        fn(m["frames"])
        _write(d, m)

    return mutate


def _top(**kv):
    def mutate(d: Path) -> None:
        m = _meta(d)
        for k, v in kv.items():
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
        _write(d, m)

    return mutate


def _set(i: int, key: str, value):
    def fn(frames):
        if value is None:
            frames[i].pop(key)
        else:
            frames[i][key] = value

    return _frames(fn)


def _scaled_pose(frames):
    m = np.asarray(frames[2]["transform_matrix"])
    m[:3, :3] *= 2.0
    frames[2]["transform_matrix"] = m.tolist()


def _same_pose(frames):
    for fr in frames:
        fr["transform_matrix"] = frames[0]["transform_matrix"]


def _huge(d: Path) -> None:
    with open(d / "transforms.json", "r+b") as f:
        f.truncate(MAX_BYTES + 1)


TRANSFORMS_CASES = {
    "invalid JSON": (lambda d: _cut(d / "transforms.json", 300), ["is not valid JSON (line 1, column"]),
    "empty file": (lambda d: _cut(d / "transforms.json", 0), ["transforms.json is empty"]),
    "not UTF-8": (
        lambda d: (d / "transforms.json").write_bytes(b'{"frames": [], "note": "caf\xe9"}'),
        ["is not UTF-8 text (byte 27)"],
    ),
    "a list at the top": (lambda d: _write(d, _meta(d)["frames"]), ["holds a list at the top"]),
    "no frames": (_top(frames=None), ['has no "frames" list']),
    "frames not a list": (_top(frames={"a": 1}), ['"frames" is an object, not a list']),
    "frame without file_path": (_set(2, "file_path", None), ["frame 3: file_path is missing"]),
    "frame without transform_matrix": (
        _set(2, "transform_matrix", None),
        ["frame 3 (images/0003.jpg): transform_matrix is missing"],
    ),
    "2x3 matrix": (_set(2, "transform_matrix", [[1, 0, 0], [0, 1, 0]]), ["transform_matrix is 2x3, not 4x4"]),
    "matrix of words": (_set(2, "transform_matrix", [["a"] * 4] * 4), ["is not a 4x4 table of numbers"]),
    "NaN in a matrix": (
        _frames(lambda f: f[2]["transform_matrix"][0].__setitem__(3, float("nan"))),
        ["frame 3 (images/0003.jpg): transform_matrix holds NaN"],
    ),
    "non-rigid matrix": (_frames(_scaled_pose), ["transform_matrix is not a rotation and a translation"]),
    "all poses the same": (_frames(_same_pose), ["all 8 cameras are at the same place"]),
    "focal length 0": (
        _top(fl_x=0, fl_y=0),
        ["frame 1 (images/0001.jpg): fl_x is 0: a focal length is a positive"],
    ),
    "focal length negative": (_top(fl_x=-275.1), ["fl_x is -275.1"]),
    "focal length as words": (_top(fl_x="large"), ["fl_x is 'large', not a number"]),
    "focal length true": (_top(fl_x=True), ["fl_x is true/false, not a number"]),
    "no focal length": (
        _top(fl_x=None, fl_y=None, camera_angle_x=None),
        ["fl_x is missing, and so is camera_angle_x"],
    ),
    "field of view out of range": (
        _top(fl_x=None, fl_y=None, camera_angle_x=4.0),
        ["camera_angle_x is 4: a field of view is between 0 and pi"],
    ),
    "principal point far outside": (_top(cx=-800.0), [f"cx is -800, far outside the {W}x{H} image"]),
    "w/h not the images'": (_top(w=W, h=H + 16), [f"w/h is {W}x{H + 16} but the image file is {W}x{H}"]),
    "fisheye camera": (_top(camera_model="OPENCV_FISHEYE"), ["camera_model is OPENCV_FISHEYE: only pinhole"]),
    "360 camera": (
        _top(camera_model="EQUIRECTANGULAR"),
        ["camera_model is EQUIRECTANGULAR: a 360-degree camera", "the folder of its equirectangular frames"],
    ),
    "path outside the folder": (
        _set(1, "file_path", "../elsewhere/0002.jpg"),
        ["file_path lies outside the folder"],
    ),
    "absolute path elsewhere": (_set(1, "file_path", "/etc/hostname"), ["file_path lies outside the folder"]),
    "one image twice": (
        _set(4, "file_path", "images/0001.jpg"),
        ["images/0001.jpg is listed twice (frames 1 and 5)"],
    ),
    "most images missing": (
        lambda d: [f.unlink() for f in sorted((d / "images").iterdir())[3:]],
        ["Only 3 of the 8 images listed in", "(images/0004.jpg is missing, and 4 more)"],
    ),
    "huge file": (_huge, ["transforms.json is 100 MB: far larger than any camera file"]),
    "NaN focal length after a UTF-8 byte-order mark": (
        lambda d: (d / "transforms.json").write_bytes(
            b"\xef\xbb\xbf" + json.dumps({**_meta(d), "fl_x": float("nan")}).encode()
        ),
        ["frame 1 (images/0001.jpg): fl_x is nan: a focal length is a positive number"],
    ),
}


@pytest.mark.parametrize("case", list(TRANSFORMS_CASES))
def test_bad_transforms_json(tmp_path, capsys, fox, case):
    d = _copy(fox, tmp_path)
    mutate, want = TRANSFORMS_CASES[case]
    mutate(d)
    _refused(capsys, d / "transforms.json", tmp_path / "out", *want)


def test_refused_file_after_a_good_run_keeps_it_and_the_next_run_reuses_it(tmp_path, capsys, fox):
    d = _copy(fox, tmp_path)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", d, "-o", out], watched=d)
    assert rc == 0, text
    good = (d / "transforms.json").read_bytes()
    _top(fl_x=float("nan"))(d)
    rc, text = run_cli(capsys, ["sfm", d, "-o", out], watched=d)
    assert rc == 2 and "fl_x is nan" in error_lines(text)[0]
    assert (out / "sparse" / "0" / "cameras.bin").is_file()  # the earlier result is still there
    (d / "transforms.json").write_bytes(good)
    rc, text = run_cli(capsys, ["sfm", d, "-o", out], watched=d)
    assert rc == 0, text
    assert len(load_scene(out).cameras) == FRAMES


def _nerf_synthetic(d: Path) -> None:
    """As NeRF-synthetic files are: camera_angle_x only, no w/h, paths without extension, 3x4."""
    m = _meta(d)
    angle = 2 * math.atan(0.5 * m["w"] / m["fl_x"])
    for fr in m["frames"]:
        fr["file_path"] = "./" + fr["file_path"].rsplit(".", 1)[0]
        fr["transform_matrix"] = fr["transform_matrix"][:3]
    _write(d, {"camera_angle_x": angle, "frames": m["frames"]})


def _windows(d: Path) -> None:
    """As Windows tools may write it: UTF-16 (PowerShell's default), backslashes, an absolute path
    inside the folder, numbers as text."""
    m = _meta(d)
    for k, fr in enumerate(m["frames"]):
        fr["file_path"] = fr["file_path"].replace("/", "\\")
        if k == 0:
            fr["file_path"] = str(d / "images" / "0001.jpg")
    m["fl_x"] = str(m["fl_x"])
    (d / "transforms.json").write_bytes(json.dumps(m).encode("utf-16"))  # with its byte-order mark


def _downscaled(d: Path) -> None:
    """The images were halved after the file was written (w, h and the intrinsics are twice theirs)."""
    m = _meta(d)
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        m[key] = m[key] * 2
    _write(d, m)


FIXABLE = {
    "NeRF synthetic": (
        _nerf_synthetic,
        [
            f"gives no image size (w, h): read from the images ({W}x{H} pixels)",
            "computed from camera_angle_x",
            "have no extension: the .jpg files of those names are used",
        ],
    ),
    "Windows": (_windows, []),
    "images downscaled": (
        _downscaled,
        [
            "The images are 0.5 times the size given in transforms.json "
            f"({2 * W}x{2 * H} -> {W}x{H} pixels): the cameras are scaled to match"
        ],
    ),
}


@pytest.mark.parametrize("case", list(FIXABLE))
def test_fixable_transforms_json(tmp_path, capsys, fox, project, case):
    d = _copy(fox, tmp_path)
    mutate, said = FIXABLE[case]
    mutate(d)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", d / "transforms.json", "-o", out], watched=d)
    assert rc == 0, text
    for s in said:
        assert s in text
    scene = load_scene(out)
    # the same cameras as the original file gives: read as it is (NeRF synthetic has no lens
    # distortion), or imported (undistorted) as the project fixture did
    ref = load_transforms_json(fox) if case == "NeRF synthetic" else load_scene(project.parent / "import")
    assert scene.cameras.names == ref.cameras.names
    assert np.allclose(scene.cameras.world_to_cam.numpy(), ref.cameras.world_to_cam.numpy(), atol=1e-4)
    assert scene.cameras.width.tolist() == ref.cameras.width.tolist()
    K, K0 = scene.cameras.K.numpy(), ref.cameras.K.numpy()
    if case == "NeRF synthetic":  # fx from the angle, the principal point in the middle
        assert np.allclose(K[:, 0, 0], K0[:, 0, 0], rtol=1e-4) and np.allclose(K[:, 0, 2], W / 2)
    else:
        assert np.allclose(K, K0, rtol=1e-4)
    assert scene.points.shape[0] > 50


def test_some_images_missing_are_left_out(tmp_path, capsys, fox):
    d = _copy(fox, tmp_path)
    (d / "images" / "0004.jpg").unlink()
    os.truncate(d / "images" / "0007.jpg", 100)
    out = tmp_path / "out"
    rc, text = run_cli(capsys, ["sfm", d, "-o", out], watched=d)
    assert rc == 0, text
    assert (
        "2 frame(s) of transforms.json have no usable image and are left out: images/0004.jpg (is missing), "
        "images/0007.jpg (is damaged or truncated" in text
    )
    assert len(load_scene(out).cameras) == FRAMES - 2
