"""Ingest: find the photos in a folder and write upright, downscaled working copies."""

from .photos import Photo, PhotoSet, Skipped, ingest, safe_name

__all__ = ["ingest", "Photo", "PhotoSet", "Skipped", "safe_name"]
