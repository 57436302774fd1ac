"""Video input: clips made here from real photos with PyAV.

* fountain-P11's photos (320 px), each held for 3 frames at 6 fps (repeats), one photo preceded
  by a blurred copy of itself, the last frame repeated once more: extraction at 6 frames per
  second (every frame) must keep one sharp frame per photo; through ``splatkit sfm`` at the
  default 2 per second, SfM (sequential matching with loop closure, chosen for video) places
  them.
* a camera that stands still for 2 s and then pans across a South Building photo, every other
  frame slightly blurred: no frame while it stands still, sharp frames during the pan.
* one minute of video in which every frame shows another South Building photo (the fastest
  possible motion): the cap of 60 x ``video_fps`` frames per minute holds (at 480 x 270 and 4
  fps to keep the test short; the cap depends on neither).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from splatkit.cli import main
from splatkit.config import IngestConfig
from splatkit.events import EventBus
from splatkit.sources import detect_source
from splatkit.video import extract_frames

av = pytest.importorskip("av")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOUNTAIN = DATA / "strecha_fountain_p11"
SOUTH = DATA / "south_building_128"
FPS = 6
HOLD = 3
BLUR_BEFORE = 5  # photo index preceded by a blurred copy of itself


def _frames() -> list[np.ndarray]:
    photos = []
    for f in sorted((FOUNTAIN / "images").glob("*.jpg")):
        with Image.open(f) as im:
            im.draft("RGB", (640, 640))
            im = im.convert("RGB").resize((320, 214), Image.Resampling.LANCZOS)
        photos.append(im.crop((0, 0, 320, 212)))  # even size for yuv420p
    frames = []
    for k, im in enumerate(photos):
        if k == BLUR_BEFORE:
            frames.append(np.asarray(im.filter(ImageFilter.GaussianBlur(4))))
        frames += [np.asarray(im)] * HOLD
    return frames


def _write_clip(path: Path, frames, fps: int = FPS) -> None:
    with av.open(str(path), "w") as c:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "16", "preset": "ultrafast"} if codec == "libx264" else {"qscale": "2"}
        for a in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if not FOUNTAIN.is_dir():
        pytest.skip("no strecha_fountain_p11")
    d = tmp_path_factory.mktemp("video")
    frames = _frames()
    frames.append(frames[-1].copy())  # a duplicate at the end
    path = d / "walk around.mp4"
    _write_clip(path, frames)
    return path


def test_detect_source(tmp_path, clip):
    assert detect_source(clip) == "video"
    (tmp_path / "p").mkdir()
    assert detect_source(tmp_path / "p") == "photos"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "transforms.json").write_text("{}")
    assert detect_source(tmp_path / "t") == "transforms"
    assert detect_source(tmp_path / "t" / "transforms.json") == "transforms"
    (tmp_path / "c" / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "c" / "images").mkdir()
    (tmp_path / "c" / "sparse" / "0" / "cameras.bin").write_bytes(b"")
    assert detect_source(tmp_path / "c") == "colmap"


def test_extraction_drops_repeats_and_blur(tmp_path, clip):
    bus = EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    out = extract_frames(clip, tmp_path / "frames", IngestConfig(max_image_size=320, video_fps=FPS), bus)
    kept = sorted(out.glob("frame_*.jpg"))
    assert len(kept) == 11, [p.name for p in kept]
    text = next(e.text for e in seen if e.kind == "message" and e.text.startswith("Looked at"))
    assert "Looked at 35 frames" in text and "kept 11" in text and "1 blurry" in text, text
    # the frame kept for the blurred photo is the sharp one
    sharp = [float(np.asarray(Image.open(p).convert("L"), np.float32).std()) for p in kept]
    assert min(sharp) > 0.5 * float(np.median(sharp))
    # a second call reuses the frames
    seen.clear()
    extract_frames(clip, tmp_path / "frames", IngestConfig(max_image_size=320, video_fps=FPS), bus)
    assert any("Reusing 11 frames" in e.text for e in seen if e.kind == "message")


def test_video_through_sfm(tmp_path, clip, capsys):
    """At the default 2 frames per second: one frame per photo (plus the blurred one, dropped)."""
    out = tmp_path / "out"
    rc = main(["sfm", str(clip), "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err
    assert "Looked at 35 frames" in cap.out + cap.err and "kept 11" in cap.out + cap.err
    assert "Skipped" not in cap.out + cap.err  # nothing but frames in the frames folder
    rec = json.loads((out / "sfm_work" / "inputs.json").read_text())
    assert rec["matcher"] == "sequential" and rec["pairs"]["verified"] >= 10
    assert rec["registered"] >= 9 and rec["total"] == 11, rec


def _south(n: int, size: tuple[int, int]) -> list[Image.Image]:
    out = []
    for f in sorted((SOUTH / "images").glob("*.JPG"))[:n]:
        with Image.open(f) as im:
            im.draft("RGB", (size[0] * 2, size[1] * 2))
            out.append(im.convert("RGB").resize(size, Image.Resampling.BILINEAR))
    return out


def _sharpness(path: Path) -> float:
    from splatkit.ingest.checks import laplacian_variance

    return laplacian_variance(np.asarray(Image.open(path).convert("L"), np.float32))


@pytest.mark.skipif(not SOUTH.is_dir(), reason="no south_building_128")
def test_frames_follow_camera_motion_and_sharpness(tmp_path):
    """2 s standing still, then 4 s of a pan at 12 px per frame (10 fps), every other frame blurred."""
    with Image.open(sorted((SOUTH / "images").glob("*.JPG"))[0]) as im:
        photo = im.convert("RGB")
    w, h, fps = 480, 270, 10
    frames, blurred = [], []
    for k in range(60):
        x = 0 if k < 20 else 12 * (k - 20)
        crop = photo.crop((x, 300, x + w, 300 + h))
        if k >= 20 and k % 2:
            crop = crop.filter(ImageFilter.GaussianBlur(1.5))
            blurred.append(np.asarray(crop))
        frames.append(np.asarray(crop))
    _write_clip(tmp_path / "pan.mp4", frames, fps)
    cfg = IngestConfig(max_image_size=480, video_fps=2)
    out = extract_frames(tmp_path / "pan.mp4", tmp_path / "frames", cfg)
    rec = json.loads((tmp_path / "frames.json").read_text())
    times = rec["seconds"]
    assert sum(t < 2.0 for t in times) == 1, times  # standing still: the first frame only
    assert sum(t >= 2.0 for t in times) >= 4, times  # the pan: new frames as the view moves
    slots = [int(t / 0.5 + 1e-6) for t in times]
    assert len(set(slots)) == len(slots)  # at most one frame per half second
    sharp_floor = max(laplacian(a) for a in blurred)
    assert all(_sharpness(out / n) > sharp_floor for n in rec["frames"])


def laplacian(a: np.ndarray) -> float:
    from splatkit.ingest.checks import laplacian_variance

    return laplacian_variance(np.asarray(Image.fromarray(a).convert("L"), np.float32))


@pytest.mark.skipif(not SOUTH.is_dir(), reason="no south_building_128")
def test_a_minute_of_video_gives_at_most_60_frames_per_minute_per_fps(tmp_path):
    photos = [np.asarray(p) for p in _south(32, (480, 270))]
    fps = 4
    frames = [photos[k % len(photos)] for k in range(60 * fps)]  # a new view every frame
    _write_clip(tmp_path / "minute.mp4", frames, fps)
    cfg = IngestConfig(max_image_size=480, video_fps=0.5)
    out = extract_frames(tmp_path / "minute.mp4", tmp_path / "frames", cfg)
    kept = sorted(out.glob("frame_*.jpg"))
    assert 25 <= len(kept) <= 30, len(kept)  # the cap (30 a minute) binds: 240 views offered


@pytest.mark.skipif(not SOUTH.is_dir(), reason="no south_building_128")
def test_too_few_frames_names_the_cause_and_the_real_option(tmp_path):
    """A camera on a tripod is told to move (more frames would not help); a short clip is told
    to film longer or take more frames per second, naming the option that does it."""
    from splatkit.errors import UserError

    photos = [np.asarray(p) for p in _south(3, (480, 270))]
    _write_clip(tmp_path / "tripod.mp4", [photos[0]] * 40, 10)  # 4 s, no motion at all
    with pytest.raises(UserError) as e:
        extract_frames(tmp_path / "tripod.mp4", tmp_path / "f1", IngestConfig(max_image_size=480))
    assert "hardly moved" in e.value.what and "tripod" in e.value.todo
    assert "fps" not in e.value.what + e.value.todo  # more frames would not help
    _write_clip(tmp_path / "short.mp4", [photos[k // 5] for k in range(15)], 10)  # 1.5 s, 3 views
    with pytest.raises(UserError) as e:
        extract_frames(tmp_path / "short.mp4", tmp_path / "f2", IngestConfig(max_image_size=480, video_fps=1))
    assert "--video-fps 3" in e.value.todo and "video_fps" not in e.value.what + e.value.todo
