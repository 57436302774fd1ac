"""Existing cameras as input: a COLMAP project and a transforms.json, SfM skipped.

Both end as ``OUT/sparse/0`` (PINHOLE, with 3D points) + ``OUT/images``, what training reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch
from input_util import fox_subset
from PIL import Image

from splatkit.cli import main
from splatkit.sfm import load_scene, load_transforms_json

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
FOX = DATA / "fox"
FOUNTAIN = DATA / "strecha_fountain_p11" / "images"


@pytest.mark.skipif(not FOX.is_dir(), reason="no fox dataset")
def test_transforms_json_input(tmp_path, capsys):
    src = fox_subset(tmp_path / "fox")
    out = tmp_path / "out"
    rc = main(["sfm", str(src / "transforms.json"), "-o", str(out)])
    text = "".join(capsys.readouterr())
    assert rc == 0, text
    assert "structure from motion skipped" in text
    scene = load_scene(out)
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert {c.model.name for c in rec.cameras.values()} == {"PINHOLE"}
    assert len(scene.cameras) == 8 and scene.points.shape[0] > 200
    assert rec.compute_mean_reprojection_error() < 2.0
    # poses are the file's (OpenGL c2w -> OpenCV w2c); undistortion never changes them
    plain = load_transforms_json(src)
    assert scene.cameras.names == plain.cameras.names
    assert torch.allclose(scene.cameras.world_to_cam, plain.cameras.world_to_cam, atol=1e-4)
    for i, n in enumerate(scene.cameras.names):
        with Image.open(out / "images" / n) as im:
            assert im.size == (int(scene.cameras.width[i]), int(scene.cameras.height[i]))
    # a second run reuses the import
    rc = main(["sfm", str(src), "-o", str(out)])
    text = "".join(capsys.readouterr())
    assert rc == 0 and "finding them from the known poses" not in text


@pytest.mark.skipif(not FOUNTAIN.is_dir(), reason="no fountain dataset")
def test_colmap_project_input(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(FOUNTAIN.glob("*.jpg"))[:6]:
        with Image.open(f) as im:
            im.draft("RGB", (600, 600))
            im = im.convert("RGB")
            im.thumbnail((300, 300))
            im.save(photos / f.name, quality=92)
    first = tmp_path / "first"
    assert main(["sfm", str(photos), "-o", str(first)]) == 0
    # a COLMAP project: the distorted model + the working copies, as COLMAP's GUI would leave it
    proj = tmp_path / "project"
    shutil.copytree(first / "sfm_work" / "model", proj / "sparse" / "0")
    shutil.copytree(first / "work" / "images", proj / "images")
    capsys.readouterr()
    out = tmp_path / "out"
    rc = main(["sfm", str(proj), "-o", str(out)])
    text = "".join(capsys.readouterr())
    assert rc == 0, text
    assert "Using the cameras of project (colmap)" in text
    a, b = load_scene(first), load_scene(out)
    assert a.cameras.names == b.cameras.names
    assert torch.allclose(a.cameras.world_to_cam, b.cameras.world_to_cam, atol=1e-5)
    assert b.points.shape[0] == a.points.shape[0]
    # a pinhole project without points (e.g. exported) gets points triangulated
    bare = tmp_path / "bare"
    shutil.copytree(first / "images", bare / "images")
    rec = pycolmap.Reconstruction(str(first / "sparse" / "0"))
    for pid in list(rec.points3D):
        rec.delete_point3D(pid)
    (bare / "sparse" / "0").mkdir(parents=True)
    rec.write_binary(str(bare / "sparse" / "0"))
    out2 = tmp_path / "out2"
    rc = main(["sfm", str(bare), "-o", str(out2)])
    text = "".join(capsys.readouterr())
    assert rc == 0, text
    c = load_scene(out2)
    assert c.points.shape[0] > 0.5 * a.points.shape[0]
    assert np.allclose(c.cameras.world_to_cam.numpy(), a.cameras.world_to_cam.numpy(), atol=1e-5)


def test_every_source_kind_has_exactly_one_handler():
    """A kind brings cameras (imported), pictures (ingested) or 360 frames (placed as a rig): one
    table each, never two or none, so a new kind cannot fall into another kind's branch."""
    from splatkit.ingest import SourceKind
    from splatkit.sources import IMPORTERS, INGESTERS, RIGS

    for kind in SourceKind:
        assert [kind in IMPORTERS, kind in INGESTERS, kind in RIGS].count(True) == 1, kind
        assert (kind in IMPORTERS) == kind.has_cameras, kind
        assert (kind in RIGS) == kind.rig, kind
    assert str(SourceKind.VIDEO) == f"{SourceKind.VIDEO}" == "video" == SourceKind.VIDEO


def test_a_kind_without_a_handler_is_refused_not_taken_for_another(tmp_path):
    from splatkit.config import RunConfig
    from splatkit.ingest import SourceKind
    from splatkit.sources import import_cameras, ingest_source

    with pytest.raises(ValueError, match="no cameras to import"):
        import_cameras(tmp_path, SourceKind.PHOTOS, tmp_path / "out", RunConfig())
    with pytest.raises(ValueError, match="no pictures to ingest"):
        ingest_source(tmp_path, SourceKind.TRANSFORMS, tmp_path / "out", RunConfig().ingest)
    from splatkit.sources import place_rig

    with pytest.raises(ValueError, match="no 360 frames to place"):
        place_rig(tmp_path, SourceKind.PHOTOS, tmp_path / "out", RunConfig())
    assert not (tmp_path / "out").exists()


def test_a_zip_archive_is_refused_with_the_way_out(tmp_path):
    from splatkit.errors import UserError
    from splatkit.sources import detect_source

    z = tmp_path / "scan.zip"
    z.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(UserError, match="zip archive") as e:
        detect_source(z)
    assert "Unzip it" in e.value.todo
