"""Frame changes: plugin mappings, SH rotation, similarity transforms of splats."""

from __future__ import annotations

import math

import pytest
import torch

from splatkit import frames as F
from splatkit.export.plugins import PLUGINS
from splatkit.frames import Similarity, rotate_sh, transform_splats


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    q = q / q.norm()
    w, x, y, z = q
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )


def eval_sh_bands(sh: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """sum over bands 1..3 of coefficients [K-1, 3] at dirs [M, 3] -> [M, 3]."""
    out = torch.zeros(d.shape[0], 3, dtype=torch.float64)
    deg = math.isqrt(sh.shape[0] + 1) - 1
    for l in range(1, deg + 1):  # noqa: E741
        a, b = l * l - 1, (l + 1) ** 2 - 1
        out += F.sh_band(l, d) @ sh[a:b]
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_rotation_property(seed, degree):
    R = random_rotation(seed)
    g = torch.Generator().manual_seed(100 + seed)
    sh = torch.randn(1, (degree + 1) ** 2 - 1, 3, generator=g, dtype=torch.float64)
    d = torch.randn(200, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    rot = rotate_sh(sh, R)
    assert torch.allclose(eval_sh_bands(rot[0], d @ R.T), eval_sh_bands(sh[0], d), atol=1e-10)


def test_sh_basis_matches_renderer():
    sh = pytest.importorskip("splatkit.render.sh")
    d = torch.randn(50, 3, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    full = sh.sh_bases(3, d)
    for l in range(1, 4):  # noqa: E741
        assert torch.allclose(F.sh_band(l, d), full[:, l * l : (l + 1) ** 2], atol=1e-12)


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_plugin_frames_upright(plugin):
    R = F.upright_to_ply(PLUGINS[plugin].ply_axes)
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64))
    assert abs(torch.linalg.det(R) - 1) < 1e-12
    # Upright +Z (up) and +X (forward) land on UE +Z and +X after the plugin's own mapping.
    for v, ue in [((0, 0, 1.0), (0, 0, 100.0)), ((1.0, 0, 0), (100.0, 0, 0)),
                  ((0, 1.0, 0), (0, -100.0, 0))]:  # fmt: skip
        p = R @ torch.tensor(v, dtype=torch.float64)
        assert torch.allclose(
            F.ply_to_ue(p[None], PLUGINS[plugin].ply_axes)[0], torch.tensor(ue, dtype=torch.float64)
        )
        assert torch.allclose(F.upright_to_ue(torch.tensor([v])).double()[0],
                              torch.tensor(ue, dtype=torch.float64))  # fmt: skip


def test_documented_mappings():
    p = torch.tensor([[1.0, 2.0, 3.0]])
    assert F.ply_to_ue(p, PLUGINS["nanogs"].ply_axes).tolist() == [[300.0, 100.0, -200.0]]  # (z, x, -y)
    assert F.ply_to_ue(p, PLUGINS["italink"].ply_axes).tolist() == [[100.0, -300.0, -200.0]]  # (x, -z, -y)


def test_quat_conversion_and_similarity():
    R = random_rotation(3)
    q = F.rotmat_to_quat(R)
    from splatkit.render.projection import quat_to_rotmat  # noqa: PLC0415

    assert torch.allclose(quat_to_rotmat(q[None])[0], R, atol=1e-12)
    a = Similarity(R, torch.tensor([1.0, 2, 3], dtype=torch.float64), 2.5)
    b = Similarity(random_rotation(4), torch.tensor([-1.0, 0, 5], dtype=torch.float64), 0.3)
    x = torch.randn(10, 3, dtype=torch.float64)
    assert torch.allclose(a.then(b).apply(x), b.apply(a.apply(x)))
    xh = torch.cat([x, torch.ones(10, 1, dtype=torch.float64)], 1)
    assert torch.allclose((xh @ a.matrix().T)[:, :3], a.apply(x))
    assert torch.allclose(
        F.rotation_between(torch.tensor([0, 0, 1.0]), torch.tensor([0, 0, -1.0]))
        @ torch.tensor([0, 0, 1.0], dtype=torch.float64),
        torch.tensor([0, 0, -1.0], dtype=torch.float64),
    )


def test_transform_splats_rejects_reflection():
    from splatkit.splats import Splats

    s = Splats(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]),
               torch.zeros(1), torch.zeros(1, 1, 3), torch.zeros(1, 0, 3))  # fmt: skip
    with pytest.raises(ValueError):
        transform_splats(s, Similarity(torch.diag(torch.tensor([1.0, -1, 1]).double()),
                                       torch.zeros(3, dtype=torch.float64)))  # fmt: skip


def test_camera_axes_opencv_opengl_flip_y_and_z_and_are_their_own_inverse():
    import numpy as np

    assert np.array_equal(F.CV_TO_GL @ F.GL_TO_CV, np.eye(4))
    c2w_cv = np.eye(4)
    c2w_gl = c2w_cv @ F.CV_TO_GL  # OpenGL looks down -z: the OpenCV camera's +z
    assert np.array_equal(-c2w_gl[:3, 2], c2w_cv[:3, 2]) and np.array_equal(-c2w_gl[:3, 1], c2w_cv[:3, 1])


def test_no_other_module_spells_a_frame_change():
    """Axis flips and plugin axes are data of splatkit/frames.py alone."""
    import re
    from pathlib import Path

    root = Path(F.__file__).parent
    one, minus = r"\s*1(\.0)?\s*", r"\s*-1(\.0)?\s*"
    flip = re.compile(rf"diag\(\s*\[?{one},{minus},{minus}|\[{one},{minus},{minus}\]")
    found = [f"{f.relative_to(root)}:{i}" for f in root.rglob("*.py") if f.name != "frames.py"
             for i, line in enumerate(f.read_text().splitlines(), 1) if flip.search(line)]
    assert not found, found


def test_rub_sh_signs_are_the_rotation():
    import numpy as np

    for lvl in (1, 2, 3):
        D = F.sh_rotation(F.RDF_TO_RUB, lvl).numpy()
        a, b = lvl * lvl - 1, (lvl + 1) ** 2 - 1
        assert np.allclose(D, np.diag(F.RUB_SH_SIGNS[a:b]), atol=1e-9)
