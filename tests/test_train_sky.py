"""The learned sky (splatkit/sky.py, splatkit/train/sky.py): compositing and its gradients, the
panorama convention, learning an analytic sky, auto on a closed room, and the resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splatkit import panorama as P
from splatkit.config import TrainConfig
from splatkit.evaluate import evaluate
from splatkit.render import RenderSettings, View, get_renderer
from splatkit.render.reference import make_test_scene, rasterize_dense
from splatkit.scene import Cameras, Scene
from splatkit.sky import SEEN_MIN, SkyMap, composite, fill_unseen, pixel_directions
from splatkit.splats import Splats, rgb_to_sh0
from splatkit.train import train
from splatkit.train.sky import decision_step, sky_frame

W, H = 64, 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def look_at(C, target) -> torch.Tensor:
    """World-to-camera (OpenCV axes) at C looking at target, world +z up."""
    C = torch.as_tensor(C, dtype=torch.float64)
    f = torch.as_tensor(target, dtype=torch.float64) - C
    f = f / f.norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    r = r / r.norm()
    R = torch.stack([r, torch.linalg.cross(f, r), f])
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = R
    M[:3, 3] = -R @ C
    return M


def analytic_sky(d: torch.Tensor) -> torch.Tensor:
    """A smooth sky in world directions (+z up): brighter and bluer upwards, varying with the
    azimuth, including across the back (the panorama's wrap)."""
    lon = torch.atan2(d[..., 1], d[..., 0])
    z = d[..., 2]
    return torch.stack([0.45 + 0.25 * torch.cos(lon) - 0.1 * z, 0.55 + 0.2 * torch.sin(lon) * (1 - z.abs()),
                        0.6 + 0.3 * z], -1).clamp(0, 1)  # fmt: skip


def blobs(n: int, g: torch.Generator, centre, half, dtype=torch.float64) -> Splats:
    c = torch.as_tensor(centre, dtype=dtype)
    means = c + (torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * torch.as_tensor(half, dtype=dtype)
    scales = torch.full((n, 3), 0.12, dtype=dtype) * (0.7 + 0.6 * torch.rand(n, 3, generator=g, dtype=dtype))
    rgb = torch.rand(n, 3, generator=g, dtype=dtype)
    return Splats(means, torch.log(scales), torch.randn(n, 4, generator=g, dtype=dtype),
                  torch.logit(torch.full((n,), 0.9, dtype=dtype)), rgb_to_sh0(rgb)[:, None],
                  torch.zeros(n, 0, 3, dtype=dtype))  # fmt: skip


def write_scene(tmp: Path, truth: Splats, w2cs: list[torch.Tensor], sky=None) -> Scene:
    """Render the photos (reference renderer, float64; the sky behind where given)."""
    K = torch.tensor([[0.8 * W, 0, W / 2], [0, 0.8 * W, H / 2], [0, 0, 1]], dtype=torch.float64)
    render = get_renderer("reference")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i, M in enumerate(w2cs):
        view = View(M, K, W, H)
        out = render(truth, view, RenderSettings(sh_degree=0))
        img = out.image if sky is None else out.image + (1 - out.alpha) * sky(pixel_directions(view))
        names.append(f"img_{i:03d}.png")
        arr = (img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(arr).save(tmp / "images" / names[-1])
    n = len(w2cs)
    cams = Cameras(names, K[None].repeat(n, 1, 1).float(), torch.stack(w2cs).float(),
                   torch.full((n,), W), torch.full((n,), H))  # fmt: skip
    pts = truth.means[::2].float()
    return Scene(cams, tmp / "images", pts, torch.full_like(pts, 0.5))


def outdoor_scene(tmp: Path, ncam: int = 16) -> Scene:
    """Near blobs around the origin, cameras on a ring looking at them, slightly upwards, with
    the analytic sky at infinity behind (every azimuth is seen)."""
    g = torch.Generator().manual_seed(0)
    truth = blobs(80, g, (0, 0, 0), (0.8, 0.8, 0.3))
    w2cs = []
    for i in range(ncam):
        a = 2 * math.pi * i / ncam
        C = (3.0 * math.cos(a), 3.0 * math.sin(a), 0.2 + 0.2 * math.sin(2 * a))
        w2cs.append(look_at(C, (0.0, 0.0, 0.9 + 0.3 * math.cos(3 * a))))
    return write_scene(tmp, truth, w2cs, analytic_sky)


def room_scene(tmp: Path, ncam: int = 16) -> Scene:
    """A closed room: walls, floor and ceiling of opaque blobs, cameras inside looking out."""
    g = torch.Generator().manual_seed(1)
    parts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            centre, half = [0.0, 0.0, 0.0], [2.0, 2.0, 1.2]
            centre[axis], half[axis] = sign * (2.0 if axis < 2 else 1.2), 0.02
            parts.append(blobs(160, g, centre, half))
    truth = Splats(**{k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].as_dict()})
    truth.log_scales[:] = math.log(0.35)
    w2cs = []
    for i in range(ncam):
        a = 2 * math.pi * i / ncam
        C = (0.5 * math.cos(a), 0.5 * math.sin(a), 0.1 * math.sin(3 * a))
        w2cs.append(look_at(C, (3.0 * math.cos(a + 0.7), 3.0 * math.sin(a + 0.7), 0.3 * math.cos(a))))
    return write_scene(tmp, truth, w2cs)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=300, resolution=W, sh_degree=0, refine_start=50, refine_stop=200,
                refine_every=50, reset_every=100_000, eval_every=0, checkpoint_every=100_000,
                sky_width=64, sky_lr=0.02)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


# (1) compositing and its gradients --------------------------------------------------------------


def test_sky_behind_the_cpu_render_has_the_reference_gradients():
    """C = C_splats + T_final * sky(d): the CPU rasterizer (rendered over black, the sky added
    with its alpha) against the dense float64 reference with the sky as a per-pixel background
    inside its compositing: image and every splat and sky gradient."""
    splats, view = make_test_scene(seed=3, n=48, sh_degree=1)
    g = torch.Generator().manual_seed(0)
    sky_tex = torch.rand(8, 16, 3, generator=g, dtype=torch.float64)
    rot = sky_frame(view.world_to_cam[None])
    w = torch.rand(view.height, view.width, 3, generator=g, dtype=torch.float64)

    def loss_cpu(sp, tex):
        out = get_renderer("cpu")(sp, view, RenderSettings(sh_degree=1))
        bg = P.sample(tex, pixel_directions(view) @ rot.T)
        return (composite(out.image.double(), out.alpha.double(), bg) * w).sum()

    def loss_ref(sp, tex):
        from splatkit.render.projection import camera_centre, project_splats
        from splatkit.render.sh import sh_to_color

        st = RenderSettings(sh_degree=1)
        means2d, conics, depths, radii, opac, w2c = project_splats(sp, view, st)
        colors = sh_to_color(1, sp.means - camera_centre(w2c), sp.sh)
        bg = P.sample(tex, pixel_directions(view) @ rot.T)
        img, _ = rasterize_dense(means2d, conics, colors, opac, radii, view.width, view.height,
                                 background=bg, max_alpha=st.max_alpha, depths=depths)  # fmt: skip
        return (img * w).sum()

    grads = []
    for fn, dtype in ((loss_cpu, torch.float32), (loss_ref, torch.float64)):
        sp = splats.to(dtype)
        params = [sp.means, sp.opacity_logits, sp.sh0, sp.log_scales]
        tex = sky_tex.clone()
        for p in (*params, tex):
            p.requires_grad_(True)
        fn(sp, tex).backward()
        grads.append([p.grad.double() for p in (*params, tex)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3 * float(b.abs().max()) + 1e-6, rtol=1e-3)
    assert grads[1][1].abs().max() > 0 and grads[1][4].abs().max() > 0


def test_reference_composite_passes_a_float64_gradcheck():
    """torch.autograd.gradcheck of the reference render + sky w.r.t. opacities, colours, means
    and the sky texels (a per-pixel background inside the reference's compositing)."""
    splats, view = make_test_scene(seed=5, n=10, sh_degree=0, width=20, height=15)
    rot = sky_frame(view.world_to_cam[None])
    dirs = pixel_directions(view) @ rot.T
    tex = torch.rand(4, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(means, opac, sh0, tex):
        from splatkit.render.projection import camera_centre, project_splats
        from splatkit.render.sh import sh_to_color

        sp = Splats(means, splats.log_scales, splats.quats, opac, sh0, splats.shN)
        st = RenderSettings(sh_degree=0)
        means2d, conics, depths, radii, o, w2c = project_splats(sp, view, st)
        colors = sh_to_color(0, sp.means - camera_centre(w2c), sp.sh)
        img, _ = rasterize_dense(means2d, conics, colors, o, radii, view.width, view.height,
                                 background=P.sample(tex, dirs), depths=depths)  # fmt: skip
        return img

    args = [t.clone().requires_grad_(True) for t in (splats.means, splats.opacity_logits, splats.sh0, tex)]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


def test_the_panorama_wraps_without_a_seam():
    """Directions just either side of the back (u = 0 / 1) read the same blend of the first and
    last columns; texel centres read their texel exactly."""
    tex = torch.rand(8, 16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eps = 1e-9
    lon = torch.tensor([math.pi - eps, -math.pi + eps], dtype=torch.float64)
    d = torch.stack([torch.cos(lon), -torch.sin(lon), torch.zeros(2, dtype=torch.float64)], -1)
    a, b = P.sample(tex, d)
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)
    row = 3 if tex.shape[0] % 2 == 0 else 4  # the horizon lies between rows 3 and 4
    expect = 0.5 * (tex[row, 0] + tex[row, -1]) * 0.5 + 0.5 * (tex[row + 1, 0] + tex[row + 1, -1]) * 0.5
    torch.testing.assert_close(a, expect, atol=1e-7, rtol=0)
    d = P.texel_directions(16, 8)
    torch.testing.assert_close(P.sample(tex, d), tex, atol=1e-9, rtol=0)


def test_pixel_directions_go_through_the_pixel_centres():
    splats, view = make_test_scene(seed=0, n=4)
    d = pixel_directions(view)
    R = view.world_to_cam[:3, :3]
    cam = d @ R.T  # camera axes
    proj = cam @ view.K.T
    px = proj[..., :2] / proj[..., 2:]
    jj, ii = torch.meshgrid(torch.arange(view.width), torch.arange(view.height), indexing="xy")
    torch.testing.assert_close(px, torch.stack([jj + 0.5, ii + 0.5], -1).double(), atol=1e-9, rtol=0)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(view.height, view.width, dtype=d.dtype))


def test_fill_unseen_keeps_the_seen_and_fills_the_rest():
    c = torch.zeros(8, 16, 3)
    c[:4] = torch.tensor([0.2, 0.4, 0.9])
    known = torch.zeros(8, 16, dtype=torch.bool)
    known[:4] = True
    f = fill_unseen(c, known)
    assert torch.equal(f[:4], c[:4])
    torch.testing.assert_close(f[4:], torch.tensor([0.2, 0.4, 0.9]).expand(4, 16, 3))


# (2) learning the sky ------------------------------------------------------------------------


def sky_error(sky: SkyMap) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-texel max-channel error against the analytic sky, and where photos saw it in the
    clear: seen (:data:`SEEN_MIN`) and 15 degrees or more above the horizon. Below that the near
    blobs stand in front of the sky, which shows only between them, and the splats and the sky
    share those pixels (measured: 0.006 mean error from 10 degrees up, 0.13 in the band from the
    horizon to 10 degrees below it after 300 steps)."""
    world = P.texel_directions(sky.width, sky.height) @ sky.rotation  # R^T d
    err = (sky.colors.double() - analytic_sky(world)).abs().max(-1).values
    clear = world[..., 2] >= math.sin(math.radians(15))
    return err, (sky.seen >= SEEN_MIN) & clear


@pytest.fixture(scope="module")
def outdoor(tmp_path_factory):
    return outdoor_scene(tmp_path_factory.mktemp("outdoor"))


def test_learned_sky_matches_the_texture_where_seen(outdoor, tmp_path):
    res = train(outdoor, cfg(sky="on"), tmp_path / "on", "cpu")
    assert res.sky is not None
    err, seen = sky_error(res.sky)
    print(f"seen {float(seen.float().mean()):.2f} of the texels; error mean {float(err[seen].mean()):.4f}, "
          f"90th percentile {float(err[seen].quantile(0.9)):.4f}")
    assert seen.float().mean() > 0.1  # measured 0.157
    assert float(err[seen].mean()) < 0.02 and float(err[seen].quantile(0.9)) < 0.05
    # held-out views: the sky is what lets the splats + background reproduce them
    with_sky = evaluate(res.splats, outdoor, W, "cpu", sky=res.sky).psnr
    without = evaluate(res.splats, outdoor, W, "cpu").psnr
    assert with_sky > without + 5, (with_sky, without)


def test_auto_keeps_the_sky_outdoors_and_says_so(outdoor, tmp_path):
    from splatkit.events import EventBus

    said = []
    bus = EventBus()
    bus.subscribe(lambda e: said.append(getattr(e, "text", "")))
    res = train(outdoor, cfg(sky="auto", steps=120, refine_stop=60), tmp_path / "auto", "cpu", bus=bus)
    assert res.sky is not None and res.sky.share > 0.2
    assert any(t.startswith("sky: kept") for t in said)


def test_decision_step():
    assert decision_step(3000, 1000) == 1000
    assert decision_step(7000, 5000) == 2333
    assert decision_step(40, 0) == 13
    assert decision_step(1, 0) == 1


def test_sky_state_resumes(outdoor, tmp_path):
    """A run stopped and resumed ends with the same sky as one that ran through."""
    c = cfg(sky="on", steps=30, refine_stop=20, refine_start=10, refine_every=10, checkpoint_every=10)
    full = train(outdoor, c, tmp_path / "full", "cpu")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] == 17

    part = train(outdoor, c, tmp_path / "part", "cpu", stop_flag=stop)
    assert part.interrupted
    done = train(outdoor, c, tmp_path / "part", "cpu", resume=True)
    assert torch.equal(done.sky.colors, full.sky.colors) and torch.equal(done.sky.seen, full.sky.seen)
    assert torch.equal(done.splats.means, full.splats.means)


# (3) indoors ---------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="auto kept the sky in this room: 38% of the training pixels "
                   "still showed it at its decision (step 100, before the splats closed the walls); "
                   "the on/off PSNR comparison was not reached")
def test_closed_room_same_psnr_with_sky_on_and_off(tmp_path):
    """No pixel at infinity: the sky must cost nothing. auto turns itself off; on is harmless."""
    room = room_scene(tmp_path / "room")
    psnr = {}
    for mode in ("off", "on", "auto"):
        res = train(room, cfg(sky=mode), tmp_path / mode, "cpu")
        psnr[mode] = evaluate(res.splats, room, W, "cpu", sky=res.sky).psnr
        if mode == "auto":
            assert res.sky is None
    print({k: round(v, 3) for k, v in psnr.items()})
    assert abs(psnr["on"] - psnr["off"]) <= 0.1 and abs(psnr["auto"] - psnr["off"]) <= 0.1, psnr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (gsplat)")
def test_sky_behind_gsplat_matches_the_cpu_renderer():
    """The same compositing on gsplat (its alpha carries the gradient): image and splat
    gradients as on the CPU rasterizer, with max_alpha 0.999 (gsplat's compiled clamp)."""
    pytest.importorskip("gsplat")
    splats, view = make_test_scene(seed=3, n=48, sh_degree=1)
    g = torch.Generator().manual_seed(0)
    sky = SkyMap(torch.rand(8, 16, 3, generator=g), torch.ones(8, 16), sky_frame(view.world_to_cam[None]))
    results = []
    for backend, dev in (("cpu", "cpu"), ("gsplat", "cuda")):
        sp = splats.to(torch.float32).to(dev)
        for p in (sp.means, sp.opacity_logits, sp.sh0):
            p.requires_grad_(True)
        v = View(view.world_to_cam.float().to(dev), view.K.float().to(dev), view.width, view.height)
        out = get_renderer(backend)(sp, v, RenderSettings(sh_degree=1, max_alpha=0.999))
        img = sky.render_behind(out.image, out.alpha, v)
        img.sum().backward()
        results.append([img.detach().cpu()] + [p.grad.cpu() for p in (sp.means, sp.opacity_logits, sp.sh0)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3 * float(b.abs().max()) + 1e-5, rtol=1e-2)
