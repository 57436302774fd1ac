"""Train a preset with overrides on a finished SfM folder and print its held-out PSNR: the way
preset settings are compared without re-running SfM for every variant.

    python scripts/bench_train_variants.py _runs/presets/quick/strecha_fountain_p11 \
        --variant base --variant rs1000:refine_stop=1000 \
        --variant dash:resolution_schedule=dash,densify_budget=true

``SFM_FOLDER``: any folder `splatkit sfm` or `splatkit train` wrote (its ``sparse/`` and
``images/``). Each ``--variant NAME:KEY=VALUE,...`` overrides fields of the preset's
``TrainConfig`` (values parsed as JSON, else kept as text); the preset's photo tiers
(``config.PHOTO_TIERS``) are not applied, so a variant states every setting it means. Per
variant: held-out PSNR/SSIM over every held-out view (INRIA split), splats, training seconds,
the PSNR at each evaluation step and the load average (``--per-view``: each held-out photo's
PSNR too); runs go to ``_runs/variants/<folder name>/<variant>`` (replaced), with side-by-side
previews in its ``previews/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path

from splatkit.config import preset_config
from splatkit.evaluate import evaluate, write_previews
from splatkit.render import RenderSettings
from splatkit.sfm import load_scene
from splatkit.train.loop import train

REPO = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    over = {}
    for kv in filter(None, rest.split(",")):
        key, _, value = kv.partition("=")
        try:
            over[key] = json.loads(value)
        except ValueError:
            over[key] = value
    return name, over


def run_variant(scene, preset: str, name: str, over: dict, out: Path) -> dict:
    cfg = dataclasses.replace(preset_config(preset).train, **over)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    res = train(scene, cfg, out, "cpu")
    seconds = time.time() - t0
    settings = RenderSettings(sh_degree=cfg.sh_degree, antialiased=cfg.antialiased)
    ev = evaluate(res.splats, scene, cfg.resolution, "cpu", "cpu", settings)
    write_previews(ev, out / "previews")
    return {"per_view": [(v.name, round(v.psnr, 2)) for v in ev.per_image],
            "variant": name, "over": over, "psnr": ev.psnr, "ssim": ev.ssim,
            "splats": len(res.splats.means), "train_s": seconds, "load": os.getloadavg()[0],
            "evals": [(e["step"], round(e["psnr"], 2)) for e in res.evals]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sfm_folder", type=Path)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--per-view", action="store_true", help="also print each held-out photo's PSNR")
    a = ap.parse_args()
    scene = load_scene(a.sfm_folder)
    variants = [parse_variant(v) for v in a.variant] or [("base", {})]
    print(f"command: python scripts/bench_train_variants.py {a.sfm_folder} --preset {a.preset} "
          + " ".join(f"--variant {v}" for v in a.variant))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("variant | held-out PSNR | SSIM | splats | train s | load | PSNR at each evaluation")
    for name, over in variants:
        out = REPO / "_runs" / "variants" / a.sfm_folder.name / name
        r = run_variant(scene, a.preset, name, over, out)
        print(f"{name} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['splats']:,} | {r['train_s']:.0f} | "
              f"{r['load']:.1f} | " + " ".join(f"{s}:{p}" for s, p in r["evals"]), flush=True)
        if a.per_view:
            print("    per view: " + " ".join(f"{n}:{p}" for n, p in r["per_view"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
