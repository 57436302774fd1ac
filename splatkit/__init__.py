"""splatkit: a folder of photos to a Gaussian-splat scene that imports into Unreal Engine."""

import os as _os

# torch and numba's CPU kernels share OpenMP thread pools. OpenMP's default is to spin while
# waiting; with two pools (or any other busy program, common on a student's laptop) the spinning
# threads steal the cores that do the work. Measured on the 2-core dev VM under load 4-8, a CPU
# training step took 1.8-2.5 s with the default and 0.44-0.86 s with PASSIVE (/tmp/thr.py in the
# commit message). It must be set before torch loads libgomp, hence here; a user's value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
