"""Small reads and edits of COLMAP's matching database (``sfm_work/database.db``).

Reads go through pycolmap. Two edits have no pycolmap call and use SQLite directly on COLMAP's
documented schema (tables ``keypoints``, ``descriptors``, ``matches``, ``two_view_geometries``;
``pair_id = MAX_IMAGE_ID * min(id1, id2) + max(id1, id2)``): forgetting the features of some
photos so that the extractor runs on them again, and forgetting their matches.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pycolmap

MAX_IMAGE_ID = 2**31 - 1


def _images(db_path: Path) -> list:
    """Every image record of the database (name, image id, camera id, ...)."""
    db = pycolmap.Database.open(str(db_path))
    try:
        return db.read_all_images()
    finally:
        db.close()


def image_ids(db_path: Path) -> dict[str, int]:
    """Image name -> image id."""
    return {im.name: im.image_id for im in _images(db_path)}


def image_cameras(db_path: Path) -> dict[str, int]:
    """Image name -> camera id."""
    return {im.name: im.camera_id for im in _images(db_path)}


def verified_pairs(db_path: Path) -> dict[tuple[str, str], int]:
    """Verified pairs ``(name a, name b)`` with a < b -> inlier matches (two-view geometry)."""
    db = pycolmap.Database.open(str(db_path))
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    out = {}
    for pid, n in zip(pair_ids, counts, strict=True):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        if a in names and b in names and n > 0:
            out[tuple(sorted((names[a], names[b])))] = int(n)
    return out


#: two-view geometries that a homography explains: no parallax between the two photos
NO_PARALLAX = {int(pycolmap.TwoViewGeometryConfiguration.PANORAMIC),
               int(pycolmap.TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC)}


def no_parallax_share(db_path: Path) -> float:
    """The share of verified photo pairs whose geometry is a pure rotation (COLMAP's PANORAMIC
    or PLANAR_OR_PANORAMIC): near 1 when every photo was taken from the same spot."""
    db = pycolmap.Database.open(str(db_path))
    try:
        _, geoms = db.read_two_view_geometries()
    finally:
        db.close()
    kinds = [int(g.config) for g in geoms if len(g.inlier_matches) > 0]
    return sum(k in NO_PARALLAX for k in kinds) / len(kinds) if kinds else 0.0


def forget_features(db_path: Path, ids: list[int]) -> None:
    """Delete the keypoints, descriptors, matches and verified geometries of images ``ids``.

    The images and their cameras stay; the next extraction computes their features again.
    """
    if not ids:
        return
    marks = ",".join("?" * len(ids))
    con = sqlite3.connect(str(db_path))
    try:
        with con:
            for table in ("keypoints", "descriptors"):
                con.execute(f"DELETE FROM {table} WHERE image_id IN ({marks})", ids)
            for table in ("matches", "two_view_geometries"):
                con.execute(
                    f"DELETE FROM {table} WHERE pair_id / {MAX_IMAGE_ID} IN ({marks}) "
                    f"OR pair_id % {MAX_IMAGE_ID} IN ({marks})",
                    ids + ids,
                )
    finally:
        con.close()


__all__ = ["image_ids", "image_cameras", "verified_pairs", "forget_features"]
