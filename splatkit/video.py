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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pycolmap
from PIL import Image

from .ingest.checks import laplacian_variance

SAMPLES_PER_KEPT = 3
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
