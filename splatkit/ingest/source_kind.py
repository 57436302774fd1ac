"""What kind of input the user gave: one enum that every branch on it reads.

:func:`splatkit.sources.detect_source` names the kind; a kind either brings its own cameras
(``has_cameras``: SfM is skipped, :func:`splatkit.sources.import_cameras`), gives pictures for
the ingest and SfM (:func:`splatkit.sources.ingest_source`), or gives 360 frames placed by their
own SfM as a rig (``rig``: :func:`splatkit.sources.place_rig`). Each of those dispatches on a table
keyed by this enum, so a new kind without its handler is an error, never another kind's branch.
"""

from __future__ import annotations

from enum import Enum


class SourceKind(str, Enum):
    """The kinds of input; the values are what ``config.json`` and messages show."""

    PHOTOS = "photos"  # a folder of photos
    VIDEO = "video"  # a video file: frames chosen by sharpness and motion
    COLMAP = "colmap"  # a COLMAP project (sparse/ + images/)
    TRANSFORMS = "transforms"  # a nerfstudio/instant-ngp transforms.json with its images
    PANO = "pano"  # a folder of 360-degree (equirectangular) photos: views placed as a rig
    PANO_VIDEO = "pano_video"  # a 360-degree video: frames chosen, then as PANO
    POLYCAM = "polycam"  # a Polycam raw data export (keyframes, poses, depth)
    RECORD3D = "record3d"  # a Record3D export (rgb/, metadata.json with poses, depth)

    def __str__(self) -> str:  # "video", not "SourceKind.VIDEO", in f-strings on every Python
        return self.value

    @property
    def has_cameras(self) -> bool:
        """The input carries camera poses: they are imported and SfM is skipped."""
        return self in (SourceKind.COLMAP, SourceKind.TRANSFORMS, SourceKind.POLYCAM, SourceKind.RECORD3D)

    @property
    def rig(self) -> bool:
        """360 frames: cut into views that their own SfM places as a rig (:mod:`splatkit.pano`)."""
        return self in (SourceKind.PANO, SourceKind.PANO_VIDEO)

    @property
    def sequential(self) -> bool:
        """Pictures in capture order (neighbours overlap): SfM matches them sequentially."""
        return self in (SourceKind.VIDEO, SourceKind.PANO_VIDEO)
