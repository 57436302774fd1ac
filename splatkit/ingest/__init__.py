"""Ingest: find the photos in a folder and write upright, downscaled working copies."""

from .photos import Photo, PhotoSet, Skipped, ingest, safe_name
from .source_kind import SourceKind

__all__ = ["ingest", "Photo", "PhotoSet", "Skipped", "SourceKind", "safe_name"]
