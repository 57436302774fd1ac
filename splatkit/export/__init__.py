"""Exporters: INRIA PLY, other splat formats, and the Unreal Engine hand-off."""

from splatkit.export.farfield import far_field_mask

__all__ = ["far_field_mask"]
