"""The learned sky on real photo sets: held-out PSNR of scene.ply (trained without the sky) against
the near field + sky rendered the way Unreal shows them, far splats before/after, training time.

    python scripts/bench_sky.py _runs/sfm/strecha_fountain_p11 [--preset quick] [--variants off,on]

``SFM_FOLDER``: a folder `splatkit sfm` (or `splatkit train`) wrote. Per variant (``--sky``
setting; the preset's photo tiers applied as `splatkit train` does), training on the folder,
then over every held-out photo (INRIA split):

- ``all``: every splat, with the sky behind them when the run has one (what training sees);
- ``near``: the splats without the far field (larger than the camera extent or farther than 10x
  it from every training camera: :mod:`splatkit.export.farfield`, the export's rule), rendered
  over black;
- ``near+sky``: the same near field, then the sky where alpha leaves room, read from the
  exported panorama (8-bit PNG in Unreal's axes, as ``export_unreal`` writes it) by each
  pixel's direction in Unreal's frame: what the level shows.

Prints one row per variant and the load; runs go to ``_runs/sky/<folder>/<variant>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from splatkit import frames as F
from splatkit import panorama as P
from splatkit.config import preset_config, tiered
from splatkit.render import RenderSettings, get_renderer
from splatkit.scores import psnr
from splatkit.sfm import load_scene
from splatkit.sky import composite, pixel_directions
from splatkit.train.loop import train
from splatkit.views import WorldNorm, load_images, make_view, scaled_cameras

REPO = Path(__file__).resolve().parents[1]


def far_field(splats, scene) -> torch.Tensor:
    """The export's far-field rule (:mod:`splatkit.export.farfield`), on the training cameras."""
    from splatkit.export.farfield import far_field_mask

    return far_field_mask(splats, scene.cameras.subset(scene.train_idx))


def unreal_sky(res_sky, scene, out: Path):
    """The sky as the export writes it (PNG, Unreal axes) and the SfM -> upright rotation."""
    from splatkit.export.sky_export import ue_panorama
    from splatkit.export.unreal import UnrealExportOptions, estimate_upright
    from splatkit.sky import to_u8

    T_up, _ = estimate_upright(scene, UnrealExportOptions())
    png = out / "sky_unreal.png"
    Image.fromarray(to_u8(ue_panorama(res_sky, T_up))).save(png)
    tex = torch.from_numpy(np.asarray(Image.open(png), dtype=np.float32) / 255.0)
    return tex, T_up.R.double()


@torch.no_grad()
def score(splats, scene, resolution, far, sky=None, tex=None, R_up=None) -> dict:
    render = get_renderer("cpu")
    cams = scaled_cameras(scene.cameras, resolution)
    idx = scene.test_idx
    photos = load_images(scene, idx, cams)
    ident = WorldNorm.identity()
    near = splats.index(torch.where(~far)[0])
    settings = RenderSettings(sh_degree=splats.sh_degree)
    rows = {"all": [], "near": [], "near+sky": []}
    for i, gt in zip(idx, photos, strict=True):
        view = make_view(cams, i, ident)
        a = render(splats, view, settings)
        img = a.image if sky is None else sky.render_behind(a.image, a.alpha, view)
        rows["all"].append(psnr(img.clamp(0, 1), gt))
        b = render(near, view, settings)
        rows["near"].append(psnr(b.image.clamp(0, 1), gt))
        if tex is not None:
            d_up = pixel_directions(view).double() @ R_up.T
            bg = P.sample(tex.double(), F.upright_to_ue_directions(d_up), y_right=True).float()
            rows["near+sky"].append(psnr(composite(b.image, b.alpha, bg).clamp(0, 1), gt))
    return {k: (sum(v) / len(v) if v else float("nan")) for k, v in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sfm_folder", type=Path)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--variants", default="off,on", help="comma-separated --sky settings")
    a = ap.parse_args()
    scene = load_scene(a.sfm_folder)
    base, changed = tiered(preset_config(a.preset), len(scene.train_idx), set())
    print(f"command: python scripts/bench_sky.py {a.sfm_folder} --preset {a.preset} --variants {a.variants}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; tier: {changed or 'none'}")
    print("sky | all PSNR | near PSNR | near+sky (Unreal) PSNR | far splats / splats | sky share | "
          "train s | load")
    for mode in a.variants.split(","):
        cfg = dataclasses.replace(base.train, sky=mode)
        out = REPO / "_runs" / "sky" / a.sfm_folder.name / mode
        if out.exists():
            shutil.rmtree(out)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        res = train(scene, cfg, out, "cpu")
        seconds = time.time() - t0
        far = far_field(res.splats, scene)
        tex = R_up = None
        if res.sky is not None:
            tex, R_up = unreal_sky(res.sky, scene, out)
        r = score(res.splats, scene, cfg.resolution, far, res.sky, tex, R_up)
        share = f"{res.sky.share:.3f}" if res.sky is not None else "-"
        print(f"{mode} | {r['all']:.2f} | {r['near']:.2f} | {r['near+sky']:.2f} | "
              f"{int(far.sum()):,} / {len(res.splats):,} | {share} | {seconds:.0f} | "
              f"{load0:.1f}-{os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
