"""Training: photos + SfM scene -> optimised Gaussian splats (3DGS, Kerbl et al. 2023)."""

from .loop import TrainResult, train

__all__ = ["train", "TrainResult"]
