"""Equirectangular frame conventions and the pinhole views cut from them (splatkit.pano.equirect)."""

from __future__ import annotations

import numpy as np
import pytest

from splatkit.pano.equirect import (
    LAYOUTS,
    cut_view,
    is_equirect_size,
    lowest_pitch_deg,
    pixels_from_rays,
    rays_from_pixels,
    view_intrinsics,
    view_rays,
    view_rotation,
)
from splatkit.pano.views import feature_masks

W, H = 512, 256


def test_convention_equirect_pixel_axes():
    """Centre column looks along +z, 3/4 of the width along +x (right), row 0 straight up (-y),
    column 0 backwards (-z); pixel centres at +0.5 (as COLMAP's panorama_sfm.py)."""
    uv = np.array([[W / 2, H / 2], [3 * W / 4, H / 2], [W / 2, 0.0], [0.0, H / 2], [W / 4, H / 2]])
    want = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0], [0, 0, -1], [-1, 0, 0]], float)
    np.testing.assert_allclose(rays_from_pixels(uv, W, H), want, atol=1e-12)


def test_pixels_and_rays_round_trip():
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 1], [W, H - 1], (1000, 2))
    np.testing.assert_allclose(pixels_from_rays(rays_from_pixels(uv, W, H), W, H), uv, atol=1e-9)
    r = rng.normal(size=(1000, 3))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    np.testing.assert_allclose(rays_from_pixels(pixels_from_rays(r, W, H), W, H), r, atol=1e-9)


def test_convention_view_rotation_yaw_right_pitch_up():
    """``view_rotation(yaw, pitch)`` is cam_from_pano: its third row (the view's forward axis)
    is the ray at that yaw and pitch; its x axis stays horizontal (no roll)."""
    for yaw, pitch in ((0, 0), (90, 0), (-135, 0), (30, 45), (200, -20)):
        R = view_rotation(yaw, pitch)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        uv = pixels_from_rays(R[2], W, H)
        assert ((uv[0] / W * 2 - 1) * 180 - yaw + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)
        assert (1 - 2 * uv[1] / H) * 90 == pytest.approx(pitch, abs=1e-9)
        assert R[0, 1] == pytest.approx(0.0, abs=1e-12)


def _direction_image(w: int, h: int) -> np.ndarray:
    """A float panorama whose pixel holds its own ray (a smooth image: bilinear is exact-ish)."""
    v, u = np.mgrid[0:h, 0:w] + 0.5
    return rays_from_pixels(np.stack([u, v], -1), w, h).astype(np.float32)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_cut_views_rays_match_the_panorama_pixels(layout):
    """Every pixel of every cut view holds the panorama's value along that pixel's ray:
    ``ray_pano = R^T ray_view`` for the view's PINHOLE camera (pixel centres at +0.5)."""
    pano = _direction_image(1024, 512)
    size, focal = view_intrinsics(512, LAYOUTS[layout].fov_deg)
    assert size == 256 and focal == pytest.approx(128.0)
    rays = view_rays(size, focal)
    for R in LAYOUTS[layout].rotations():
        got = cut_view(pano, R, size, focal)
        want = rays @ R  # R^T r, row vectors
        err = np.degrees(np.arccos(np.clip((got * want).sum(-1) / np.linalg.norm(got, axis=-1), -1, 1)))
        assert np.percentile(err, 99) < 0.2, (layout, np.percentile(err, 99))


def test_cut_view_pixel_by_pixel_against_a_projected_point():
    """A single bright pixel of the panorama lands where the view's K projects its ray."""
    pano = np.zeros((H, W, 3), np.uint8)
    pano[100, 300] = 255
    R = view_rotation(50, 10)
    size, focal = view_intrinsics(H, 90)
    ray = R @ rays_from_pixels(np.array([300.5, 100.5]), W, H)
    x = focal * ray[0] / ray[2] + size / 2
    y = focal * ray[1] / ray[2] + size / 2
    img = cut_view(pano, R, size, focal).sum(-1)
    i, j = np.unravel_index(np.argmax(img), img.shape)
    assert abs(j + 0.5 - x) <= 1.0 and abs(i + 0.5 - y) <= 1.0


def test_seam_wraps_around():
    """A view looking backwards (yaw 180) straddles the seam at column 0 without a gap."""
    pano = _direction_image(W, H)
    size, focal = view_intrinsics(H, 90)
    R = view_rotation(180, 0)
    got = cut_view(pano, R, size, focal)
    assert got[:, :, 2].max() < -0.5  # everything it sees is behind (z < 0)
    want = view_rays(size, focal) @ R
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0  # the seam column included


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_view_sees_the_bottom_of_the_sphere(layout):
    """The tripod, pole and operator below the camera stay out of every view."""
    low = lowest_pitch_deg(LAYOUTS[layout])
    assert low >= LAYOUTS[layout].min_pitch_deg
    assert low == pytest.approx(-45.0, abs=1e-6)  # the bottom edge of the horizontal 90-degree views


def test_feature_masks_give_each_direction_to_one_view():
    """With overlapping views, each direction seen is white in exactly one view's mask."""
    lay = LAYOUTS["ring8"]
    size, focal = view_intrinsics(256, lay.fov_deg)
    masks = feature_masks(lay, size, focal)
    rng = np.random.default_rng(2)
    r = rng.normal(size=(3000, 3))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    r = r[r[:, 1] < -0.1]  # above the horizon: every ring8 direction there is seen
    dots = np.sort(r @ np.stack([R[2] for R in lay.rotations()]).T, axis=1)
    r = r[dots[:, -1] - dots[:, -2] > 0.02]  # not on a boundary between two views (pixel ties)
    count = np.zeros(len(r), int)
    seen = np.zeros(len(r), int)
    for R, m in zip(lay.rotations(), masks, strict=True):
        c = r @ R.T
        ok = c[:, 2] > 1e-6
        x = np.floor(focal * c[:, 0] / np.where(ok, c[:, 2], 1) + size / 2).astype(int)
        y = np.floor(focal * c[:, 1] / np.where(ok, c[:, 2], 1) + size / 2).astype(int)
        inside = ok & (x >= 0) & (x < size) & (y >= 0) & (y < size)
        seen += inside
        count[inside] += m[y[inside], x[inside]] > 0
    assert (seen >= 1).all()
    assert (count == 1).all()


def test_equirect_size():
    assert is_equirect_size(5760, 2880) and is_equirect_size(3840, 1920) and is_equirect_size(2001, 1000)
    assert not any(is_equirect_size(w, h) for w, h in ((4032, 3024), (1920, 1080), (4000, 1000)))
