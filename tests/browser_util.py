"""Headless Chromium for the report and viewer tests (Debian's /usr/bin/chromium via Playwright).

``scripts/install_browser.sh`` installs both. Where either is missing the tests skip with a
message saying so; nothing is downloaded at test time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import numpy as np
import pytest

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # WebGL2 in software (SwiftShader): no GPU needed
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


def chromium_path() -> str | None:
    for p in (os.environ.get("SPLATKIT_CHROMIUM"), "/usr/bin/chromium",
              shutil.which("chromium"), shutil.which("chromium-browser")):
        if p and os.path.exists(p):
            return p
    return None


@contextlib.contextmanager
def browser():
    """A Playwright Chromium browser (headless, fresh profile); skips the test if unavailable."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("python playwright is not installed: run scripts/install_browser.sh")
    exe = chromium_path()
    if exe is None:
        pytest.skip("Chromium is not installed: run scripts/install_browser.sh "
                    "(apt-get install chromium chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="splatkit-chromium-") as profile, \
            sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 800}, device_scale_factor=1)
        try:
            yield ctx
        finally:
            ctx.close()


def png_to_array(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def not_blank(img: np.ndarray) -> bool:
    """More than one colour over a visible share of the picture."""
    flat = img.reshape(-1, 3).astype(np.int32)
    mode = np.bincount((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]).argmax()
    share_other = np.mean(((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]) != mode)
    return bool(share_other > 0.02 and img.std() > 5)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
