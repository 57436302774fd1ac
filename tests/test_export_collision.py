"""Collision mesh (splatkit/export/collision.py): lies on the surface the splats show."""

from __future__ import annotations

import math

import numpy as np
import torch

from splatkit.export import collision as K
from splatkit.splats import Splats
from tests.unreal_util import cameras_from_w2c, look_dir


def test_mesh_lies_on_the_splatted_surfaces(tmp_path):
    """A floor and a wall made of splats, seen by a few cameras: the mesh is within a couple of
    voxels of the points, under budget, and written as GLB and OBJ with glTF axes."""
    g = torch.Generator().manual_seed(0)
    n = 3000
    floor = torch.cat([torch.rand(n, 2, generator=g) * 6 - 3, torch.zeros(n, 1)], 1)
    wall = torch.cat(
        [torch.rand(n, 1, generator=g) * 6 - 3, torch.full((n, 1), 3.0), torch.rand(n, 1, generator=g) * 3], 1
    )
    pts = torch.cat([floor, wall])
    s = Splats.random(len(pts), 0, 1)
    s.means[:] = pts
    s.log_scales[:] = math.log(0.06)
    s.log_scales[:n, 2] = math.log(0.005)  # flat on the floor
    s.log_scales[n:, 1] = math.log(0.005)  # flat on the wall
    s.quats[:] = torch.tensor([1.0, 0, 0, 0])
    s.opacity_logits[:] = 4.0
    w2c = torch.stack([look_dir([x, -3.0, 1.6], [0, 1.0, -0.35], [0, 0, 1.0]) for x in (-1.5, 0.0, 1.5)])
    mesh = K.build(
        s,
        cameras_from_w2c(w2c, f=120, w=160, h=120),
        K.CollisionOptions(max_triangles=3000, resolution=48, views=3, width=160),
    )
    assert 100 < len(mesh.faces) <= 3000
    d = K.median_distance(mesh, pts.numpy(), samples=50_000)
    assert d < 2 * mesh.voxel_m and d / 6.0 < 0.02  # within 2% of the scene
    for ext in ("glb", "obj"):
        path = K.write(mesh, tmp_path / f"c.{ext}")
        import trimesh

        back = trimesh.load(path, force="mesh")
        assert len(back.faces) == len(mesh.faces)
        assert np.allclose(
            np.sort(np.asarray(back.vertices)[:, 1])[-1], mesh.vertices[:, 2].max(), atol=1e-4
        )  # +Y up
