"""Long pycolmap calls: quiet logging, Ctrl-C that stops them cleanly, and seeded options.

Determinism: COLMAP's RANSAC (geometric verification, image registration) and its mappers draw
random numbers. With ``random_seed`` set (here: :attr:`SfmConfig.seed`) every RANSAC call reseeds
its generator, so results depend only on the inputs, the seed and the thread count (bundle
adjustment with several threads may sum in another order on a machine with another core count).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import pycolmap

from ..config import SfmConfig
from ..signals import STOP_SIGNALS


@contextlib.contextmanager
def log_level(level: int):
    """COLMAP's minimum log level inside the block (0 info, 1 warnings, 2 errors)."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = level
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


@contextlib.contextmanager
def native_stderr_silenced():
    """Silence what C++ code writes to the process's stderr inside the block (faiss' advice)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_colmap():
    """COLMAP logs every step at INFO level; keep warnings and errors only (progress is events)."""
    return log_level(1)


def interruptible_call(fn, *args, token: bool = True, **kw):
    """Run a long pycolmap call so that Ctrl-C (or SIGTERM) stops it cleanly: KeyboardInterrupt.

    Python runs signal handlers in the main thread between bytecodes, never inside a C++ call.
    So the call runs in a worker thread while the main thread waits; Ctrl-C cancels the call's
    token (COLMAP stops between images or image pairs; what is already in the database stays).
    Calls without a token (global mapping) finish first. Outside the main thread (a server's job
    thread) the call simply runs.
    """
    tok = pycolmap.CancellationToken() if token else None
    if tok is not None:
        kw["cancellation_token"] = tok
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kw)
    hit = [False]
    box: dict = {}

    def on_sigint(signum, frame):
        hit[0] = True
        if tok is not None:
            tok.cancel()

    def work():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box["error"] = e

    old = {sig: signal.signal(sig, on_sigint) for sig in STOP_SIGNALS}  # Ctrl-C and SIGTERM
    try:
        th = threading.Thread(target=work, name="pycolmap", daemon=True)
        th.start()
        while th.is_alive():
            th.join(0.2)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if hit[0]:
        raise KeyboardInterrupt
    if "error" in box:
        raise box["error"]
    return box["value"]


def verification_options(cfg: SfmConfig) -> pycolmap.TwoViewGeometryOptions:
    """Geometric verification (RANSAC on each matched pair), seeded."""
    opts = pycolmap.TwoViewGeometryOptions()
    opts.ransac.random_seed = cfg.seed
    return opts


def matching_options(cfg: SfmConfig, guided: bool = False) -> pycolmap.FeatureMatchingOptions:
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = cfg.num_threads
    opts.guided_matching = guided
    return opts


def extraction_options(
    cfg: SfmConfig, max_image_size: int | None = None, max_features: int | None = None
) -> pycolmap.FeatureExtractionOptions:
    opts = pycolmap.FeatureExtractionOptions()
    opts.max_image_size = max_image_size or cfg.max_image_size
    opts.num_threads = cfg.num_threads
    opts.sift.max_num_features = max_features or cfg.max_features
    return opts
