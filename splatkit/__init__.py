"""splatkit: a folder of photos to a Gaussian-splat scene that imports into Unreal Engine."""

__version__ = "0.1.0"
