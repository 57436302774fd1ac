"""Structure from motion (pycolmap) and the loaders of camera files into a Scene."""

from .colmap import inputs_key, read_sfm_record, run_sfm
from .loaders import (
    load_colmap_project,
    load_scene,
    load_transforms_json,
    scene_from_reconstruction,
    undistort_model,
)

__all__ = [
    "run_sfm",
    "load_scene",
    "load_colmap_project",
    "load_transforms_json",
    "read_sfm_record",
    "inputs_key",
    "scene_from_reconstruction",
    "undistort_model",
]
