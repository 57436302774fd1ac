#!/usr/bin/env python3
"""Golden renders from gsplat (CUDA) for splatkit's CPU backends to be compared against.

On a CUDA machine::

    python3 scripts/make_golden.py                    # -> tests/golden/gsplat_<name>.pt
    python3 scripts/make_golden.py --out $OUT/golden  # elsewhere

Each scene is small and seeded (64x48 to 128x96 px, a few hundred Gaussians, SH degrees 0-3,
Gaussians behind the camera, around the near plane, off-screen, huge and tiny, nearly opaque
ones that hit gsplat's 0.999 alpha clamp, non-black backgrounds, one antialiased scene, one
rendered at a lower SH degree than it holds). For each, :func:`gsplat.rasterization` renders in
float32 and the gradients of ``loss = sum(image * w_img) + sum(alpha * w_alpha)`` (fixed random
weights) w.r.t. every raw splat tensor and the screen-space means2d are saved, with the inputs,
to one ``torch.save`` file (about 0.2-0.4 MB each).

``--backend reference|cpu`` renders the same scenes with splatkit's own backends instead (a dry
run on a CPU machine; the files are then named ``<backend>_<name>.pt``).

The comparison helpers at the bottom are shared by ``tests/test_render_golden.py`` and
``tests/test_render_gsplat.py`` (which load this file by path).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from splatkit.render import RenderSettings, View, get_renderer  # noqa: E402
from splatkit.splats import Splats  # noqa: E402

GOLDEN_DIR = REPO / "tests" / "golden"
PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")
#: gsplat 1.5.3 clamps alpha at 0.999 (compiled in); the CPU backends must be told the same.
GSPLAT_MAX_ALPHA = 0.999


@dataclass
class SceneSpec:
    name: str
    seed: int
    width: int
    height: int
    n: int
    sh_degree: int  # the degree the splats hold
    render_degree: int  # settings.sh_degree
    background: tuple[float, float, float]
    antialiased: bool = False
    offscreen: float = 0.3  # x/y spread beyond the image, as a fraction of its size per side


SCENES = [
    SceneSpec("sh0_small", 1, 64, 48, 200, 0, 0, (0.0, 0.0, 0.0), offscreen=0.1),
    SceneSpec("sh1_bg", 2, 96, 64, 300, 1, 1, (0.2, 0.5, 0.8)),
    SceneSpec("sh2_offscreen", 3, 80, 60, 300, 2, 2, (1.0, 1.0, 1.0), offscreen=0.8),
    SceneSpec("sh3_mixed", 4, 128, 96, 400, 3, 3, (0.1, 0.1, 0.1)),
    SceneSpec("sh3_as1_antialiased", 5, 96, 72, 300, 3, 1, (0.6, 0.3, 0.1), antialiased=True),
]


def make_scene(spec: SceneSpec) -> tuple[Splats, View, RenderSettings, torch.Tensor, torch.Tensor]:
    """Float32 CPU tensors: splats, view, settings, image weights [H,W,3], alpha weights [H,W,1]."""
    g = torch.Generator().manual_seed(1000 + spec.seed)
    W, H, n = spec.width, spec.height, spec.n

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    fx = 0.85 * W * (1.0 + 0.2 * spec.seed / len(SCENES))
    K = torch.tensor(
        [[fx, 0.0, 0.47 * W], [0.0, 1.08 * fx, 0.53 * H], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    # Camera: rotation about a seeded oblique axis (Rodrigues), then a translation.
    axis = torch.nn.functional.normalize(rnd(3), dim=0)
    ang = 0.1 + 0.1 * spec.seed
    Kx = torch.tensor(
        [[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]],
        dtype=torch.float64,
    )
    R = torch.eye(3, dtype=torch.float64) + math.sin(ang) * Kx + (1 - math.cos(ang)) * Kx @ Kx
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = R
    w2c[:3, 3] = uni(-0.5, 0.5, 3)

    # Camera-space centres: pixels (u, v) spread past the image, depth z, then world.
    z = uni(1.0, 8.0, n)
    u = uni(-spec.offscreen * W, (1 + spec.offscreen) * W, n)
    v = uni(-spec.offscreen * H, (1 + spec.offscreen) * H, n)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    mc = torch.stack([x, y, z], dim=1)
    k = max(n // 20, 1)
    mc[:k, 2] = uni(-3.0, -0.05, k)  # behind the camera
    mc[k : 2 * k, 2] = uni(0.0, 0.03, k)  # around the near plane (0.01)
    means = (mc - w2c[:3, 3]) @ R  # R^T (mc - t)

    log_scales = torch.log(uni(0.01, 0.12, n))[:, None] + 0.5 * rnd(n, 3)  # anisotropic
    log_scales[2 * k : 3 * k] = uni(0.0, 1.0, k, 3)  # huge (cover many tiles)
    log_scales[3 * k : 4 * k] = uni(-9.0, -6.0, k, 3)  # tiny (sub-pixel: eps2d dominates)
    log_scales[4 * k : 5 * k, 2] = -10.0  # nearly flat
    quats = rnd(n, 4) * uni(0.5, 2.0, n, 1)  # not normalised
    opacity_logits = 1.5 * rnd(n)
    opacity_logits[5 * k : 7 * k] = uni(5.0, 9.0, 2 * k)  # alpha up to the 0.999 clamp
    sh0 = 0.8 * rnd(n, 1, 3)
    shN = 0.25 * rnd(n, (spec.sh_degree + 1) ** 2 - 1, 3)

    f32 = torch.float32
    splats = Splats(
        means.to(f32), log_scales.to(f32), quats.to(f32), opacity_logits.to(f32),
        sh0.to(f32), shN.to(f32),
    )  # fmt: skip
    view = View(world_to_cam=w2c.to(f32), K=K.to(f32), width=W, height=H)
    settings = RenderSettings(
        sh_degree=spec.render_degree,
        background=spec.background,
        max_alpha=GSPLAT_MAX_ALPHA,
        antialiased=spec.antialiased,
    )
    w_img = torch.rand(H, W, 3, generator=g, dtype=torch.float64).to(f32) - 0.5
    w_alpha = torch.rand(H, W, 1, generator=g, dtype=torch.float64).to(f32) - 0.5
    return splats, view, settings, w_img, w_alpha


def _leaves(splats: Splats, device) -> Splats:
    return Splats(
        **{
            k: v.detach().to(device).clone().requires_grad_(True)
            for k, v in splats.as_dict().items()
        }
    )


def render_gsplat(splats: Splats, view: View, settings: RenderSettings, w_img, w_alpha) -> dict:
    """gsplat.rasterization directly (not splatkit's backend), forward + backward, float32."""
    from gsplat import rasterization

    dev = torch.device("cuda")
    sp = _leaves(splats, dev)
    deg = min(settings.sh_degree, sp.sh_degree)
    image, alpha, info = rasterization(
        means=sp.means,
        quats=sp.quats,
        scales=torch.exp(sp.log_scales),
        opacities=torch.sigmoid(sp.opacity_logits),
        colors=torch.cat([sp.sh0, sp.shN], dim=1),
        viewmats=view.world_to_cam.to(dev)[None],
        Ks=view.K.to(dev)[None],
        width=view.width,
        height=view.height,
        near_plane=settings.near_plane,
        far_plane=settings.far_plane,
        eps2d=settings.eps2d,
        sh_degree=deg,
        packed=False,
        tile_size=16,
        backgrounds=torch.tensor([settings.background], dtype=torch.float32, device=dev),
        rasterize_mode="antialiased" if settings.antialiased else "classic",
    )
    info["means2d"].retain_grad()
    loss = (image[0] * w_img.to(dev)).sum() + (alpha[0] * w_alpha.to(dev)).sum()
    loss.backward()
    torch.cuda.synchronize()
    grads = {k: getattr(sp, k).grad.detach().cpu() for k in PARAMS}
    grads["means2d"] = info["means2d"].grad[0].detach().cpu()
    outputs = {
        "image": image[0].detach().cpu(),
        "alpha": alpha[0].detach().cpu(),
        "means2d": info["means2d"][0].detach().cpu(),
        "radii": info["radii"][0].detach().cpu(),
        "depths": info["depths"][0].detach().cpu(),
    }
    return {"outputs": outputs, "grads": grads}


def render_splatkit(backend: str, splats, view, settings, w_img, w_alpha, device="cpu") -> dict:
    """The same forward + backward through ``get_renderer(backend)``."""
    render = get_renderer(backend)
    dtype = torch.float64 if backend == "reference" else torch.float32
    sp = _leaves(splats.to(dtype), device)
    v = View(view.world_to_cam.to(device, dtype), view.K.to(device, dtype), view.width, view.height)
    out = render(sp, v, settings)
    out.means2d.retain_grad()
    loss = (out.image * w_img.to(device, dtype)).sum() + (
        out.alpha * w_alpha.to(device, dtype)
    ).sum()
    loss.backward()
    f32 = torch.float32
    grads = {k: getattr(sp, k).grad.detach().cpu().to(f32) for k in PARAMS}
    g2d = out.means2d.grad
    grads["means2d"] = None if g2d is None else g2d.detach().cpu().to(f32)
    outputs = {
        "image": out.image.detach().cpu().to(f32),
        "alpha": out.alpha.detach().cpu().to(f32),
        "means2d": out.means2d.detach().cpu().to(f32),
        "radii": out.radii.detach().cpu(),
        "depths": out.depths.detach().cpu().to(f32),
    }
    return {"outputs": outputs, "grads": grads}


def pack(spec: SceneSpec, backend: str, result: dict, scene) -> dict:
    splats, view, settings, w_img, w_alpha = scene
    meta = {
        "backend": backend,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if backend == "gsplat":
        import gsplat

        meta["gsplat"] = gsplat.__version__
        meta["gpu"] = torch.cuda.get_device_name(0)
        meta["cuda"] = torch.version.cuda
    return {
        "name": spec.name,
        "spec": vars(spec),
        "meta": meta,
        "inputs": {k: v.contiguous() for k, v in splats.as_dict().items()},
        "view": {"world_to_cam": view.world_to_cam, "K": view.K, "width": view.width,
                 "height": view.height},
        "settings": vars(settings).copy(),
        "weights": {"image": w_img, "alpha": w_alpha},
        **result,
    }  # fmt: skip


def load_golden(path: Path):
    """``(data, splats, view, settings, w_img, w_alpha)`` from a golden file."""
    d = torch.load(path, map_location="cpu", weights_only=False)
    splats = Splats.from_dict(d["inputs"])
    v = d["view"]
    view = View(v["world_to_cam"], v["K"], int(v["width"]), int(v["height"]))
    s = dict(d["settings"])
    s["background"] = tuple(s["background"])
    settings = RenderSettings(**s)
    return d, splats, view, settings, d["weights"]["image"], d["weights"]["alpha"]


# ----------------------------------------------------------------------------- comparison
# Tolerances (float32 gsplat with -use_fast_math on GPU vs float32/float64 on CPU):
# - Smooth differences (rounding, __expf) are ~1e-6 relative; 1e-3 leaves a wide margin.
# - A few discontinuities are legitimate: a splat whose alpha at a pixel is within rounding of
#   the 1/255 skip threshold, or a pixel whose transmittance lands on the 1e-4 stop, or a
#   Gaussian on the edge of a tile / the near plane, can be in or out depending on the last bit.
#   One such flip moves a pixel by at most alpha*T*colour < 1/255 + a little, and the gradients
#   of the Gaussians involved by a bounded amount. So: at most FLIP_FRACTION of the values may
#   exceed the 1e-3 tolerance, and none may exceed the flip bound.
IMAGE_ATOL = 1e-3
IMAGE_FLIP_BOUND = 1.0 / 255.0 + 2e-3
GRAD_RTOL = 1e-3  # relative to the max |grad| of that tensor (gradients are unnormalised sums)
GRAD_FLIP_RTOL = 5e-2
FLIP_FRACTION = 2e-3


def compare_tensor(name: str, got, want, atol: float, flip_bound: float) -> list[str]:
    """Problems found (empty list: within tolerance)."""
    if got is None:
        return [f"{name}: missing"]
    if got.shape != want.shape:
        return [f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"]
    diff = (got.double() - want.double()).abs()
    if not torch.isfinite(got).all():
        return [f"{name}: non-finite values"]
    n_bad = int((diff > atol).sum())
    worst = float(diff.max()) if diff.numel() else 0.0
    problems = []
    if n_bad > max(FLIP_FRACTION * diff.numel(), 0):
        problems.append(
            f"{name}: {n_bad}/{diff.numel()} values off by > {atol:.3g} (max {worst:.3g})"
        )
    if worst > flip_bound:
        problems.append(f"{name}: max diff {worst:.3g} > {flip_bound:.3g}")
    return problems


def compare_results(got: dict, want: dict, check_means2d_grad: bool = True) -> list[str]:
    """Compare two render results (``{"outputs": ..., "grads": ...}``)."""
    go, wo = got["outputs"], want["outputs"]
    problems = []
    for key in ("image", "alpha"):
        problems += compare_tensor(key, go[key], wo[key], IMAGE_ATOL, IMAGE_FLIP_BOUND)
    vis_g = (go["radii"] > 0).all(-1) if go["radii"].ndim == 2 else go["radii"] > 0
    vis_w = (wo["radii"] > 0).all(-1) if wo["radii"].ndim == 2 else wo["radii"] > 0
    n_vis_diff = int((vis_g != vis_w).sum())
    if n_vis_diff > max(1, int(0.01 * vis_w.numel())):
        problems.append(f"visibility: {n_vis_diff}/{vis_w.numel()} Gaussians culled differently")
    both = vis_g & vis_w
    problems += compare_tensor(
        "means2d (visible)", go["means2d"][both], wo["means2d"][both], 1e-3, 1e-2
    )
    problems += compare_tensor(
        "depths (visible)", go["depths"][both], wo["depths"][both], 1e-4, 1e-3
    )
    keys = list(PARAMS) + (["means2d"] if check_means2d_grad else [])
    for key in keys:
        w = want["grads"][key]
        scale = max(float(w.abs().max()) if w.numel() else 0.0, 1e-8)
        problems += compare_tensor(
            f"grad {key}", got["grads"][key], w, GRAD_RTOL * scale, GRAD_FLIP_RTOL * scale
        )
    return problems


def diff_summary(got: dict, want: dict) -> str:
    """One line: max |diff| of image/alpha, max |diff| / max |want| of each gradient."""
    parts = []
    for k in ("image", "alpha"):
        d = (got["outputs"][k] - want["outputs"][k]).abs().max()
        parts.append(f"{k} {float(d):.1e}")
    for k in list(PARAMS) + ["means2d"]:
        g, w = got["grads"][k], want["grads"][k]
        if g is None or w.numel() == 0:
            continue
        r = (g - w).abs().max() / w.abs().max().clamp(min=1e-12)
        parts.append(f"d{k} {float(r):.1e}")
    return ", ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=GOLDEN_DIR)
    ap.add_argument("--backend", default="gsplat", choices=("gsplat", "reference", "cpu"))
    ap.add_argument("--only", nargs="*", help="scene names (default: all)")
    ap.add_argument(
        "--compare", nargs="*", default=[], choices=("reference", "cpu"),
        help="also render with these splatkit backends and print the differences",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.backend == "gsplat" and not torch.cuda.is_available():
        print(
            "make_golden: gsplat needs CUDA and torch.cuda.is_available() is False", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    failures = 0
    for spec in SCENES:
        if args.only and spec.name not in args.only:
            continue
        scene = make_scene(spec)
        t0 = time.perf_counter()
        if args.backend == "gsplat":
            result = render_gsplat(*scene)
        else:
            result = render_splatkit(args.backend, *scene)
        dt = time.perf_counter() - t0
        path = args.out / f"{args.backend}_{spec.name}.pt"
        torch.save(pack(spec, args.backend, result, scene), path)
        size = path.stat().st_size
        total += size
        vis = int((result["outputs"]["radii"] > 0).all(-1).sum())
        sh = f"SH {spec.sh_degree}->{spec.render_degree}"
        print(f"{path.name}: {spec.width}x{spec.height}, {spec.n} Gaussians ({vis} visible), "
              f"{sh}, {size / 1e3:.0f} kB, {dt:.2f} s")  # fmt: skip
        for other in args.compare:
            got = render_splatkit(other, *scene)
            problems = compare_results(got, result)
            verdict = "OK" if not problems else "FAIL: " + "; ".join(problems)
            print(f"  {other} vs {args.backend}: {diff_summary(got, result)} -> {verdict}")
            failures += bool(problems)
    print(f"total {total / 1e6:.2f} MB in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
