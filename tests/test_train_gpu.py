"""A few hundred training steps on CUDA (gsplat backend) on a real photo set: PSNR passes a floor.

Skipped without CUDA. The scene is ``$SPLATKIT_GPU_SCENE`` (a folder packed by
``scripts/bench_gpu.py pack``, as the GPU box has no pycolmap) or, where pycolmap and
``../shared/datasets`` exist, strecha_fountain_p11 put through splatkit's SfM at 400 px.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


def _scene(tmp_path, shared):
    packed = os.environ.get("SPLATKIT_GPU_SCENE")
    if packed:
        sys.path.insert(0, str(REPO / "scripts"))
        from bench_gpu import load_packed

        return load_packed(Path(packed))
    from splatkit.config import IngestConfig, SfmConfig
    from splatkit.ingest import ingest
    from splatkit.sfm import run_sfm

    photos = ingest(shared / "strecha_fountain_p11" / "images", tmp_path / "work",
                    IngestConfig(max_image_size=400))
    return run_sfm(photos, tmp_path / "out", SfmConfig(max_image_size=400))


def test_gsplat_training_on_real_set_passes_floor(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    shared = Path(os.environ.get("SPLATKIT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    scene = _scene(tmp_path, shared)
    from splatkit.config import preset_config
    from splatkit.evaluate import evaluate
    from splatkit.train import train

    cfg = preset_config("quick").train
    cfg.steps, cfg.resolution, cfg.eval_every, cfg.checkpoint_every = 300, 400, 0, 0
    res = train(scene, cfg, tmp_path / "run", backend="gsplat", device="cuda")
    ev = evaluate(res.splats.to("cuda"), scene, cfg.resolution, "gsplat", "cuda")
    print(f"PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, {len(res.splats)} splats")
    # Same floor as the CPU end-to-end test (tests/test_e2e.py: 300 CPU steps on this scene at
    # 320 px measured 19.4 dB; the untrained SfM initialisation 10.5 dB).
    assert ev.psnr > 16.0
