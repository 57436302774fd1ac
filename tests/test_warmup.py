"""The CPU kernel warm-up (splatkit/train/warmup.py) compiles what training uses, nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import dataclasses, sys, tempfile
    from pathlib import Path
    import numba.core.registry as reg
    from splatkit.render import fused, raster
    from splatkit.train import adam, ssim, warmup

    def signatures():
        out = {}
        for mod in (fused, raster, adam, ssim):
            for name, obj in vars(mod).items():
                if isinstance(obj, reg.CPUDispatcher):
                    out[mod.__name__ + "." + name] = sorted(map(str, obj.signatures))
        return out

    warmup.start().join()
    after_warmup = signatures()
    sys.path.insert(0, sys.argv[1])
    from tiny_project import make_project
    from splatkit.config import preset_config
    from splatkit.sfm import load_scene
    from splatkit.train.loop import train
    root = Path(tempfile.mkdtemp())
    scene = load_scene(make_project(root / "p"))
    cfg = dataclasses.replace(preset_config("quick").train, steps=3, eval_every=3)
    train(scene, cfg, root / "out", "cpu")
    after_training = signatures()
    used = sum(1 for v in after_warmup.values() if v)
    print("compiled by the warm-up:", used, "of", len(after_warmup))
    new = {k: sorted(set(v) - set(after_warmup[k])) for k, v in after_training.items()}
    new = {k: v for k, v in new.items() if v}
    print("compiled later by training:", new)
    sys.exit(1 if new or used < 10 else 0)
""")


def test_training_finds_every_cpu_kernel_compiled_by_the_warm_up():
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(TESTS)], capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "compiled later by training: {}" in r.stdout
