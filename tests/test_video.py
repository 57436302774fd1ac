"""Video input: a clip made here from fountain-P11's photos (320 px) with PyAV.

Each photo is held for 3 frames at 6 fps (repeats), one photo is preceded by a blurred copy of
itself and the last frame is repeated once more. Extraction at 6 frames per second (every frame)
must keep one sharp frame per photo; through ``splatkit sfm`` at the default 2 per second, SfM
(sequential matching, chosen for video) places them.
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
from splatkit.sources import detect_source, extract_frames

av = pytest.importorskip("av")

FOUNTAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "strecha_fountain_p11"
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


def _write_clip(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as c:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "16"} if codec == "libx264" else {"qscale": "2"}
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
    text = next(e.text for e in seen if e.kind == "message" and e.text.startswith("Took"))
    assert "Took 35 frames" in text and ": 11 left" in text, text
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
    assert "Took 12 frames" in cap.out + cap.err and ": 11 left" in cap.out + cap.err
    assert "Skipped" not in cap.out + cap.err  # nothing but frames in the frames folder
    rec = json.loads((out / "sfm_work" / "inputs.json").read_text())
    assert rec["matcher"] == "sequential"
    assert rec["registered"] >= 9 and rec["total"] == 11, rec
