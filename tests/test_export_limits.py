"""Plugin storage limits (splatkit/export/limits.py) against the transcribed plugin imports."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from splatkit import frames as F
from splatkit.export import limits as L
from splatkit.export.plugins import PLUGINS
from splatkit.export.ply import read_ply, write_ply
from splatkit.export.unreal import UnrealExportOptions, export_unreal
from splatkit.splats import Splats
from tests import plugin_imports as P
from tests.unreal_util import look_dir


def facade_with_background(n: int = 2000, seed: int = 0) -> Splats:
    """A 1 m facade patch of 2 cm splats (z up, metres) and 20 big splats 40 m away."""
    g = torch.Generator().manual_seed(seed)
    s = Splats.random(n + 20, 0, seed)
    patch = torch.stack(
        [
            torch.rand(n, generator=g) - 0.5,
            0.01 * torch.randn(n, generator=g),
            torch.rand(n, generator=g) + 0.5,
        ],
        1,
    )
    far = torch.stack([torch.full((20,), 40.0), torch.full((20,), 30.0), torch.rand(20, generator=g) * 10], 1)
    s.means[:] = torch.cat([patch, far])
    s.log_scales[:n] = math.log(0.02)
    s.log_scales[n:] = math.log(0.5)
    s.opacity_logits[:] = 2.0
    return s


def _export(s: Splats, tmp, plugin: str, tiles: str) -> dict:
    opts = UnrealExportOptions(plugin=plugin, up="keep", scale="1", tiles=tiles, crop="none")
    return json.loads(export_unreal(s, None, tmp, opts)[-1].read_text())


def _decoded(m: dict, tmp, plugin: str, decode) -> tuple[np.ndarray, np.ndarray, list, Splats]:
    """(exact UE cm, as the plugin stores them UE cm, per-tile checks, the splats) over all tiles."""
    exact, stored, checks, parts = [], [], [], []
    for t in m["tiles"]:
        path = tmp / t["files"][0]["path"]
        loc = np.array(t["location_cm"])
        sp = read_ply(path)
        exact.append(F.ply_to_ue(sp.means, PLUGINS[plugin].ply_axes).numpy() + loc)
        stored.append(decode(path) + loc)
        checks.append(t["limits"])
        parts.append(sp)
    s = Splats(**{k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].as_dict()})
    return np.concatenate(exact), np.concatenate(stored), checks, s


def test_picosplat_box_quantisation_predicted_and_fixed_by_tiles(tmp_path):
    s = facade_with_background()
    m = _export(s, tmp_path / "one", "picosplat", "none")
    exact, stored, (chk,), sp = _decoded(m, tmp_path / "one", "picosplat", P.picosplat_positions_cm)
    err = np.abs(stored - exact).max()
    assert chk["costs_quality"] and any("--tiles auto" in x for x in m["messages"])
    assert 0.5 * chk["position_error_m"] * 100 < err <= chk["position_error_m"] * 100 * 1.001
    m = _export(s, tmp_path / "tiled", "picosplat", "auto")
    assert len(m["tiles"]) > 1 and m["num_splats"]["written"] == len(s)
    exact_t, stored_t, checks, sp_t = _decoded(m, tmp_path / "tiled", "picosplat", P.picosplat_positions_cm)
    assert not any(c["costs_quality"] for c in checks)
    assert np.isfinite(stored_t).all()  # the background tile is flat along x: opened, not NaN
    assert np.abs(stored_t - exact_t).max() <= max(c["position_error_m"] for c in checks) * 100 * 1.001
    # what it costs in the picture: the patch seen from 1.5 m, stored positions against exact
    assert _patch_psnr(sp, exact, stored) < 35.0 < 45.0 < _patch_psnr(sp_t, exact_t, stored_t)


def _patch_psnr(s: Splats, exact_ue: np.ndarray, stored_ue: np.ndarray) -> float:
    """PSNR of the facade patch rendered with the stored positions against the exact ones."""
    from splatkit.render import RenderSettings, View
    from splatkit.render.cpu import render

    M = F.ply_to_ue_matrix(PLUGINS["picosplat"].ply_axes)
    to_ply = lambda ue: (torch.tensor(ue, dtype=torch.float64) / 100.0) @ M  # noqa: E731  (M^-1 = M^T)
    patch = s.log_scales.max(1).values < math.log(0.1)
    R_p = F.upright_to_ply(PLUGINS["picosplat"].ply_axes)
    exact = to_ply(exact_ue)
    centre = exact[patch].mean(0)
    n, top = R_p @ torch.tensor([0, 1.0, 0]).double(), R_p @ torch.tensor([0, 0, 1.0]).double()
    view = View(
        look_dir(centre - 1.5 * n, n, top).float(),
        torch.tensor([[60.0, 0, 40], [0, 60.0, 40], [0, 0, 1]]),
        80,
        80,
    )
    imgs = []
    for means in (exact, to_ply(stored_ue)):
        sp = Splats(**{**s.as_dict(), "means": means.float()}).index(torch.where(patch)[0])
        imgs.append(render(sp, view, RenderSettings(sh_degree=0)).image)
    assert float(imgs[0].std()) > 0.02  # the patch is in view
    return 10 * math.log10(1.0 / max(float(((imgs[0] - imgs[1]) ** 2).mean()), 1e-12))


def test_picosplat_sigma_limit(tmp_path):
    s = Splats.random(3, 0, 1)
    s.log_scales[:] = torch.log(torch.tensor([[4.0, 0.3, 0.2], [0.1, 0.1, 0.1], [3.0, 3.0, 0.01]]))
    s.quats[:] = torch.tensor([1.0, 0, 0, 0])
    chk = L.check(s, "picosplat")
    assert chk.oversized == 2 and any("shrunk" in x for x in chk.lines)
    raw = P.picosplat_covariances_cm2(write_ply(s, tmp_path / "raw.ply", sh_degree=0))
    true_cm2 = (100 * s.scales.double()) ** 2  # axis-aligned: the diagonal, PLY axes
    ue_diag = raw[:, [0, 1, 2], [0, 1, 2]]  # UE axes (z, x, -y) of PLY
    assert abs(ue_diag[0, 1] / true_cm2[0, 0].item() - 1) > 0.4  # 4 m wraps to a wrong size
    fixed = P.picosplat_covariances_cm2(
        write_ply(L.apply(s, "picosplat"), tmp_path / "fixed.ply", sh_degree=0)
    )
    limit_cm2 = (100 * PLUGINS["picosplat"].storage.max_sigma_m) ** 2
    assert abs(fixed[0, 1, 1] / limit_cm2 - 1) < 0.04  # shrunk to the limit, stored right
    assert abs(fixed[1, 1, 1] / true_cm2[1, 0].item() - 1) < 0.04  # a normal splat untouched


def test_nanogs_float16_range_and_precision(tmp_path):
    s = facade_with_background(500)
    s.means[500:, 0] = 900.0  # background beyond float16 centimetres (655 m)
    R_p = F.upright_to_ply(PLUGINS["nanogs"].ply_axes).float()
    chk = L.check(Splats(**{**s.as_dict(), "means": s.means @ R_p.T}), "nanogs")
    assert chk.out_of_range == 20 and chk.costs_quality
    m = _export(s, tmp_path / "one", "nanogs", "none")
    assert m["num_splats"]["written"] == 500 and any("beyond nanogs" in x for x in m["messages"])
    m = _export(s, tmp_path / "tiled", "nanogs", "auto")
    assert m["num_splats"]["written"] == 520 and len(m["tiles"]) == 2
    exact, stored, checks, _ = _decoded(m, tmp_path / "tiled", "nanogs", P.nanogs_positions_cm)
    assert np.abs(stored - exact).max() <= max(c["position_error_m"] for c in checks) * 100 * 1.001
    assert not any(c["out_of_range"] for c in checks)


def test_nanogs_scale_range(tmp_path):
    s = Splats.random(2, 0, 2)
    s.log_scales[:] = torch.tensor([[math.log(2e4), -3.0, -3.0], [-15.0, -3.0, -3.0]])  # 20 km; 3e-7 m
    stored = P.nanogs_scales_cm(write_ply(L.apply(s, "nanogs"), tmp_path / "a.ply", sh_degree=0))
    applied = 100 * L.apply(s, "nanogs").scales.double().numpy()[:, [2, 0, 1]]
    assert np.allclose(stored, applied, rtol=0.05)  # within the plugin's range: stored as given


def test_italink_fixed_point(tmp_path):
    s = facade_with_background(200)
    italink = PLUGINS["italink"].ply_axes
    ply = Splats(**{**s.as_dict(), "means": s.means @ F.upright_to_ply(italink).float().T})
    path = write_ply(ply, tmp_path / "a.ply", sh_degree=0)
    exact = F.ply_to_ue(read_ply(path).means, italink).numpy()
    assert np.abs(P.italink_positions_cm(path) - exact).max() <= L.position_error(ply, "italink") * 100 * 1.01
    far = Splats(**{**ply.as_dict(), "means": ply.means + 3000.0})
    assert L.check(far, "italink").out_of_range == len(far)
    wrapped = P.italink_positions_cm(write_ply(far, tmp_path / "far.ply", sh_degree=0))
    assert np.abs(wrapped - F.ply_to_ue(far.means, italink).numpy()).max() > 1e5  # 24 bits wrap
