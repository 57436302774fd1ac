"""Exporters: INRIA PLY, other splat formats, and the Unreal Engine hand-off."""
