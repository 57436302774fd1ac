"""Which video frames go to SfM: chosen by sharpness and camera motion, with a cap on their rate.

Candidates are frames sampled at :data:`SAMPLES_PER_KEPT` times ``video_fps`` per second (every
frame at most). For each candidate, SIFT features (pycolmap) of a small grey copy are matched
(mutual nearest neighbours with a ratio test) against those of the last frame kept, and the
camera motion since that frame is measured from these tracks (:meth:`Tracker.motion`): the
median displacement (enough at :data:`MIN_MOTION` of the longer side), or the parallax, the
share of tracks that one homography does not explain (enough at :data:`MIN_PARALLAX`): a camera
that moves through the scene rather than only turning.

Time is cut into slots of ``1 / video_fps`` seconds, and each slot gives at most one frame (so
at most ``60 * video_fps`` frames per minute of video, however long or fast the clip): the
sharpest (variance of the Laplacian) of its candidates that moved enough since the last frame
kept. A camera that stands still gives no new frames; a blurred frame loses to a sharp one of
its slot.

:func:`extract_frames` decodes a video with PyAV (ffmpeg ships in its wheel; HDR frames converted
to SDR by :mod:`splatkit.ingest.hdr`), downscales the frames, offers them to a
:class:`FrameSelector`, then drops frames far blurrier than the clip's median (variance of the
Laplacian under :data:`VIDEO_BLUR_RATIO` of it). The frames land in the folder given (a run's
``OUT/work/frames``) with a manifest beside it that lets a second run reuse them.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image

from .config import IngestConfig
from .errors import UserError
from .events import NULL_BUS, EventBus, Message, StageProgress
from .fileio import write_text_atomic
from .ingest.checks import laplacian_variance
from .ingest.hdr import frame_colour, frame_to_image

SAMPLES_PER_KEPT = 3
#: frames whose sharpness is below this fraction of the clip's median are dropped
VIDEO_BLUR_RATIO = 0.4
FRAMES_RECIPE = 3  # 3: HDR frames converted to SDR (ingest/hdr.py)
STAGE = "ingest"
#: median feature displacement (fraction of the longer side) that makes a new frame worth keeping
MIN_MOTION = 0.04
#: ... or the share of matches off a homography (parallax) that does
MIN_PARALLAX = 0.3
#: homography residual (fraction of the longer side) under which a match counts as explained
HOMOGRAPHY_ERROR = 0.004
#: longer side, in pixels, of the grey copies tracked and measured for sharpness
TRACK_SIZE = 320
SHARP_SIZE = 512
MIN_TRACKS = 20
RATIO = 0.8


@dataclass
class Candidate:
    """A sampled frame: its time, working-size image, sharpness and tracked features."""

    time: float
    image: Image.Image | None
    sharpness: float
    xy: np.ndarray  # [N, 2] keypoint positions / longer side of the grey copy
    desc: np.ndarray  # [N, 128] float32, unit length
    motion: float = 0.0  # since the last kept frame (inf: tracking lost)


@dataclass
class Selection:
    kept: list[Candidate] = field(default_factory=list)
    still: int = 0  # candidates dropped for too little motion
    passed: int = 0  # candidates that moved enough but lost to a sharper one in their slot


def _quiet():
    """COLMAP announces each feature extractor it creates at INFO level."""
    from .sfm.calls import log_level

    return log_level(1)


class Tracker:
    """Features of small grey copies (pycolmap SIFT, one thread) and the motion between two."""

    def __init__(self) -> None:
        opts = pycolmap.FeatureExtractionOptions()
        opts.num_threads = 1
        opts.sift.max_num_features = 300
        opts.sift.first_octave = 0  # the copy is small already; no upsampling
        opts.sift.num_octaves = 3
        with _quiet():
            self._sift = pycolmap.FeatureExtractor.create(opts, pycolmap.Device.cpu)

    def candidate(self, t: float, im: Image.Image) -> Candidate:
        g = im.convert("L")
        g.thumbnail((SHARP_SIZE, SHARP_SIZE), Image.Resampling.BILINEAR)
        sharp = laplacian_variance(np.asarray(g, dtype=np.float32))
        g.thumbnail((TRACK_SIZE, TRACK_SIZE), Image.Resampling.BILINEAR)
        kp, desc = self._sift.extract_from_uint8_array(np.asarray(g, dtype=np.uint8))
        xy = pycolmap.keypoints_to_matrix(kp)[:, :2] / max(g.size)
        d = np.asarray(desc.data, np.float32)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        return Candidate(t, im, sharp, xy, d)

    @staticmethod
    def motion(a: Candidate, b: Candidate) -> float:
        """How far the camera moved from ``a`` to ``b``: from 1 on, enough for a new frame.

        The larger of the median feature displacement over :data:`MIN_MOTION` and the share of
        matches that one homography does not explain (parallax: a camera that moves through a
        3D scene, not one that only turns) over :data:`MIN_PARALLAX`; inf when tracking is lost.
        """
        if len(a.desc) < MIN_TRACKS or len(b.desc) < MIN_TRACKS:
            return float("inf")
        sim = a.desc @ b.desc.T
        best = np.argmax(sim, axis=1)
        two = np.sort(sim, axis=1)[:, -2:]
        dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * two))  # unit vectors: distance from cosine
        m = (dist[:, 1] < RATIO * dist[:, 0]) & (np.argmax(sim, axis=0)[best] == np.arange(len(best)))
        if m.sum() < MIN_TRACKS:
            return float("inf")
        p1, p2 = a.xy[m].astype(np.float64), b.xy[best[m]].astype(np.float64)
        shift = float(np.median(np.linalg.norm(p1 - p2, axis=1)))
        opts = pycolmap.RANSACOptions()
        opts.max_error = HOMOGRAPHY_ERROR
        opts.random_seed = 0
        h = pycolmap.estimate_homography_matrix(p1, p2, opts)
        parallax = 1.0 - (h["num_inliers"] / len(p1) if h else 0.0)
        return max(shift / MIN_MOTION, parallax / MIN_PARALLAX)


class FrameSelector:
    """Feed candidates in time order to :meth:`offer`; each frame chosen goes to ``on_keep``.

    Time is cut into slots of ``1 / max_fps`` seconds; each slot gives at most one frame: the
    sharpest of its candidates that moved enough since the last frame kept (any candidate in the
    first slot). ``on_keep(candidate)`` saves it; the selector then drops its image (memory stays
    bounded by one slot of frames), keeping its time, sharpness and features.
    """

    def __init__(self, max_fps: float, on_keep: Callable[[Candidate], None]) -> None:
        self.slot_s = 1.0 / max_fps
        self.on_keep = on_keep
        self.sel = Selection()
        self.window: list[Candidate] = []
        self.slot = 0

    def offer(self, c: Candidate) -> None:
        slot = int(c.time / self.slot_s + 1e-6)
        if slot != self.slot:
            self._close()
            self.slot = slot
        last = self.sel.kept[-1] if self.sel.kept else None
        if last is not None:
            c.motion = Tracker.motion(last, c)
            if c.motion < 1.0:
                self.sel.still += 1
                return
        self.window.append(c)

    def finish(self) -> Selection:
        self._close()
        return self.sel

    def _close(self) -> None:
        if not self.window:
            return
        best = max(self.window, key=lambda c: c.sharpness)
        self.sel.passed += len(self.window) - 1
        self.on_keep(best)
        best.image = None
        self.sel.kept.append(best)
        self.window = []


__all__ = ["Candidate", "FrameSelector", "Selection", "Tracker", "MIN_MOTION", "SAMPLES_PER_KEPT"]


def extract_frames(video: Path, frames_dir: Path, cfg: IngestConfig, bus: EventBus = NULL_BUS) -> Path:
    """Frames of ``video`` chosen by sharpness and camera motion (at most ``cfg.video_fps`` a second).

    Reuses the frames of an earlier run of the same file with the same settings.
    """
    import av

    video, frames_dir = Path(video), Path(frames_dir)
    if cfg.video_fps <= 0:
        raise UserError(f"--video-fps must be above 0, not {cfg.video_fps:g}.",
                        "Give the most frames to take per second of video, e.g. --video-fps 2.")
    st = video.stat()
    key = {
        "recipe": FRAMES_RECIPE,
        "video": str(video.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "fps": cfg.video_fps,
        "max_image_size": cfg.max_image_size,
    }
    manifest = frames_dir.parent / (frames_dir.name + ".json")  # beside: ingest reads the folder
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        if old.get("key") == key and all((frames_dir / n).is_file() for n in old["frames"]):
            bus.emit(Message(STAGE, f"Reusing {len(old['frames'])} frames taken from {video.name}."))
            return frames_dir
    except (OSError, ValueError, KeyError):
        pass
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    frames_dir.mkdir(parents=True)
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as e:
        raise UserError(
            f"Could not read the video {video.name} ({e}).",
            "Check that it plays; MP4 (H.264/H.265) and MOV work.",
        ) from None
    names: list[str] = []

    def save(c: Candidate) -> None:
        names.append(f"frame_{len(names) + 1:05d}.jpg")
        c.image.save(frames_dir / names[-1], "JPEG", quality=95)

    selector = FrameSelector(cfg.video_fps, save)
    with container:
        seen, duration = _offer_frames(container, video, cfg, selector, bus)
    sel = selector.finish()
    blurry = []
    if len(sel.kept) >= 4:
        med = statistics.median(c.sharpness for c in sel.kept)
        blurry = [n for n, c in zip(names, sel.kept, strict=True) if c.sharpness < VIDEO_BLUR_RATIO * med]
        for n in blurry:
            (frames_dir / n).unlink()
    times = {n: round(c.time, 3) for n, c in zip(names, sel.kept, strict=True)}
    names = [n for n in names if n not in blurry]
    bus.emit(
        Message(
            STAGE,
            f"Looked at {seen} frames of {video.name} ({duration:.0f} s); kept {len(names)}, chosen "
            f"by sharpness and camera motion (at most {cfg.video_fps:g} per second): "
            f"{sel.still} with too little motion, {sel.passed} less sharp than a neighbour "
            f"and {len(blurry)} blurry ones dropped.",
        )
    )
    if len(names) < 3:
        raise _too_few_frames(video, len(names), seen, sel.still, cfg.video_fps)
    record = {"key": key, "frames": names, "seconds": [times[n] for n in names]}
    write_text_atomic(manifest, json.dumps(record, indent=1))
    return frames_dir


def _too_few_frames(video: Path, kept: int, seen: int, still: int, fps: float) -> UserError:
    """Fewer than 3 frames: the camera stood still (no viewpoints to gain from more frames), or
    the clip is too short for ``--video-fps``."""
    if still >= seen / 2:
        return UserError(
            f"Only {kept} usable frame(s) in {video.name}: the camera hardly moved ({still} of "
            f"{seen} frames looked at showed no new viewpoint).",
            "Film again walking slowly around the object: a camera on a tripod, or turning on "
            "the spot, sees the scene from one place only.",
        )
    return UserError(
        f"Only {kept} usable frame(s) in {video.name} (at most {fps:g} per second, --video-fps).",
        f"Film for longer (10 s or more), moving slowly around the object, or take more frames "
        f"per second: --video-fps {min(60.0, fps * 3):g}.",
    )


def _offer_frames(container, video: Path, cfg: IngestConfig, selector: FrameSelector,
                  bus: EventBus) -> tuple[int, float]:  # fmt: skip
    """Decode ``container``, offer every sampled frame to ``selector``; (frames sampled, seconds)."""
    import av

    if not container.streams.video:
        raise UserError(f"{video.name} has no video track.", "Give a video file with a picture.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or 30)
    duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    step = 1.0 / (SAMPLES_PER_KEPT * cfg.video_fps)
    tracker = Tracker()
    seen, next_t, t, colour = 0, 0.0, 0.0, None
    try:
        for k, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else k / rate
            if t + 1e-6 < next_t:
                continue
            while next_t <= t + 1e-6:
                next_t += step
            seen += 1
            if colour is None:  # HDR (HLG, PQ) frames are converted to SDR: say which way
                colour = frame_colour(frame)
                bus.emit(Message(STAGE, f"{video.name}: {colour.description}."))
            im = frame_to_image(frame, colour, cfg.max_image_size)
            im = _upright(im, getattr(frame, "rotation", 0) or 0)
            im.thumbnail((cfg.max_image_size, cfg.max_image_size), Image.Resampling.LANCZOS)
            selector.offer(tracker.candidate(t, im))
            if duration:
                bus.emit(StageProgress(STAGE, min(int(t), int(duration)), int(duration), "video"))
    except av.error.FFmpegError as e:
        if not seen:
            raise UserError(
                f"Could not decode the video {video.name} ({e}).",
                "Check that it plays; MP4 (H.264/H.265) and MOV work.",
            ) from None
        bus.emit(Message(STAGE, f"The video is damaged after {t:.0f} s; using the frames before.",
                         level="warning"))  # fmt: skip
    return seen, duration or t


def _upright(im: Image.Image, rotation: float) -> Image.Image:
    """Apply the display rotation of phone videos (degrees counterclockwise)."""
    r = int(round(rotation / 90.0)) % 4
    return {1: im.transpose(Image.Transpose.ROTATE_90), 2: im.transpose(Image.Transpose.ROTATE_180),
            3: im.transpose(Image.Transpose.ROTATE_270)}.get(r, im)
