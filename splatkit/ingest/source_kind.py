"""What kind of input the user gave: one enum that every branch on it reads.

:func:`splatkit.sources.detect_source` names the kind; a kind either brings its own cameras
(``has_cameras``: SfM is skipped, :func:`splatkit.sources.import_cameras`) or gives pictures for
the ingest and SfM (:func:`splatkit.sources.ingest_source`). Each of those dispatches on a table
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

    def __str__(self) -> str:  # "video", not "SourceKind.VIDEO", in f-strings on every Python
        return self.value

    @property
    def has_cameras(self) -> bool:
        """The input carries camera poses: they are imported and SfM is skipped."""
        return self in (SourceKind.COLMAP, SourceKind.TRANSFORMS)

    @property
    def sequential(self) -> bool:
        """Pictures in capture order (neighbours overlap): SfM matches them sequentially."""
        return self is SourceKind.VIDEO
