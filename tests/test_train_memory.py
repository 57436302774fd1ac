"""GPU memory check: a scene that does not fit is refused before training, with a fix."""

from __future__ import annotations

import pytest

from splatkit.errors import UserError
from splatkit.train.memory import GIB, check_fits, estimate_bytes, out_of_memory_error


def test_estimate_counts_photos_splats_and_work():
    pixels = [1000 * 500] * 10
    assert estimate_bytes(pixels, 0) == 3 * 5_000_000 + 300 * 500_000  # uint8 photos
    assert estimate_bytes(pixels, 1000) - estimate_bytes(pixels, 0) == 944 * 1000


def test_fits_passes_quietly():
    check_fits([800 * 450] * 50, 1_000_000, 800, free_bytes=80 * GIB)


def test_too_big_says_how_much_and_what_to_do():
    pixels = [4000 * 3000] * 300  # 300 photos of 12 MP: 11 GB of uint8 photos
    with pytest.raises(UserError) as e:
        check_fits(pixels, 3_000_000, 4000, free_bytes=8 * GIB)
    msg = str(e.value)
    assert "GB of GPU memory" in msg and "8.0 GB is free" in msg
    res = int(msg.split("--resolution ")[1].split(",")[0])
    assert 64 <= res < 4000
    # The suggested resolution really fits.
    scale = (res / 4000) ** 2
    check_fits([int(4000 * 3000 * scale)] * 300, 3_000_000 // 2, res, free_bytes=8 * GIB)


def test_out_of_memory_message_names_step_and_a_smaller_setting():
    msg = str(out_of_memory_error(1234, 2_500_000, 1600))
    assert "step 1234" in msg and "2,500,000 splats" in msg and "--resolution 1200" in msg
