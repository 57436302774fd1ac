"""``splatkit report``: one self-contained page; its numbers are metrics.json's."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser_util import browser, not_blank, png_to_array
from fake_run import make_fake_run, real_run
from PIL import Image

from splatkit.cli import main
from splatkit.report import build_report


class _Page(HTMLParser):
    """Collects <img> sources, data-key numbers, figures (in order) and external references."""

    def __init__(self):
        super().__init__()
        self.imgs, self.keys, self.figures, self.external, self.scripts = [], {}, [], [], 0
        self.coach_imgs, self._section = [], None  # the capture coach's pictures (test_coach.py)
        self._key = None
        self._fig = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
        if tag == "img":
            (self.coach_imgs if self._section == "coach" else self.imgs).append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        for attr in ("src", "href"):
            v = a.get(attr)
            if v and not v.startswith(("data:", "#")):
                self.external.append(v)
        if "data-key" in a:
            self._key = a["data-key"]
        if tag == "figure":
            self._fig = {"name": a.get("data-name"), "cls": a.get("class"), "text": ""}
            self.figures.append(self._fig)

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None

    def handle_data(self, data):
        if self._key is not None:
            self.keys[self._key] = data
            self._key = None
        if self._fig is not None:
            self._fig["text"] += data


def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def check_self_contained(page: _Page) -> None:
    assert page.imgs, "no images"
    for src in page.imgs + page.coach_imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.verify()
    assert not page.external, page.external  # nothing to fetch: opens offline
    assert page.scripts == 0


def check_numbers(page: _Page, m: dict) -> None:
    k = page.keys
    assert k["psnr"] == f"{m['psnr']:.2f}" and k["ssim"] == f"{m['ssim']:.3f}"
    assert k["num_splats"] == f"{m['num_splats']:,}" and k["steps"] == f"{m['steps']:,}"
    im = m["images"]
    for key in ("input", "used", "registered", "train", "test"):
        assert k[f"images.{key}"] == str(im[key]), key
    assert k["images.skipped"] == str(len(im["skipped"]))
    ranked = sorted(m["per_image"], key=lambda r: r["psnr"])
    held_out = [f for f in page.figures if not str(f["cls"]).startswith("cleanup-")]  # the held-out photos
    assert len(held_out) == len(ranked)
    worst = ranked[:3]
    for fig, r in zip(held_out, worst + sorted(ranked[3:], key=lambda r: r["name"]),
                      strict=True):
        assert fig["name"] == r["name"]
        assert f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}" in " ".join(fig["text"].split())
    assert [f["cls"] for f in page.figures[:len(worst)]] == ["worst"] * len(worst)


@pytest.fixture()
def fake_out(tmp_path):
    out = make_fake_run(tmp_path / "run")
    # five held-out photos with PSNRs out of name order: the worst three must come first
    m = json.loads((out / "metrics.json").read_text())
    m["per_image"] = [{"name": f"{i:04d}.jpg", "psnr": p, "ssim": 0.5 + p / 100}
                      for i, p in zip(range(1, 6), (24.5, 19.25, 27.0, 18.125, 22.0), strict=True)]
    (out / "metrics.json").write_text(json.dumps(m))
    for i in range(2, 6):
        shutil.copy(out / "previews" / "0001.png", out / "previews" / f"{i:04d}.png")
    return out


def test_report_is_self_contained_and_matches_metrics(fake_out):
    path = build_report(fake_out)
    assert path == fake_out.resolve() / "report.html"
    page = parse(path)
    check_self_contained(page)
    check_numbers(page, json.loads((fake_out / "metrics.json").read_text()))
    assert [f["name"] for f in page.figures[:3]] == ["0004.jpg", "0002.jpg", "0005.jpg"]
    text = path.read_text()
    assert "blurry.jpg" in text and "too small (40x30 px)" in text  # skipped, and why
    assert "0009.jpg" in text  # not placed by SfM
    assert f"splatkit export {fake_out.resolve()} --for unreal" in text
    assert f"splatkit view {fake_out.resolve()}" in text
    assert len(page.imgs) == 2 + 5  # camera plots, curves, five previews


def test_report_of_an_unfinished_run(tmp_path):
    out = make_fake_run(tmp_path / "run")
    for name in ("metrics.json", "scene.ply"):
        (out / name).unlink()
    shutil.rmtree(out / "previews")
    page = parse(build_report(out))
    check_self_contained(page)
    assert "metrics.json missing" in (out / "report.html").read_text()


def test_report_command(tmp_path, capsys):
    out = make_fake_run(tmp_path / "run")
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve() / "report.html")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "output folder" in err[0]


def test_report_screenshot_is_not_blank(fake_out, tmp_path):
    path = build_report(fake_out)
    with browser() as ctx:
        page = ctx.new_page()
        page.goto(path.as_uri())
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        shot = png_to_array(page.screenshot(path=str(tmp_path / "report.png"), full_page=True))
    assert shot.shape[0] > 1500 and not_blank(shot)


@pytest.mark.slow
def test_report_of_a_real_run(tmp_path_factory):
    out = real_run(tmp_path_factory)
    path = build_report(out)
    page = parse(path)
    check_self_contained(page)
    m = json.loads((out / "metrics.json").read_text())
    check_numbers(page, m)
    assert len(page.imgs) == 2 + len(m["per_image"]) + 2  # + the before/after cleanup views
    assert re.search(r"\d+ cameras and [\d,]+ sparse points", path.read_text())
    with browser() as ctx:
        pg = ctx.new_page()
        pg.goto(path.as_uri())
        shot = png_to_array(pg.screenshot(full_page=True))
    assert not_blank(shot)


def test_training_plot_names_how_many_photos_each_psnr_averages():
    """The evaluations during training use a few held-out photos, the final one all of them: the
    plot says so, so that a final 21.4 dB above a curve ending at 18.5 dB is not a contradiction."""
    from splatkit.metrics import PhotoCounts, RunMetrics
    from splatkit.report import _eval_views
    from splatkit.train.loop import EVAL_VIEWS

    assert _eval_views(RunMetrics(images=PhotoCounts(test=16))) == (EVAL_VIEWS, 16)
    assert _eval_views(RunMetrics(images=PhotoCounts(test=2))) == (2, 2)
    assert _eval_views(RunMetrics()) is None


@pytest.mark.parametrize("damage", ["metrics-list", "metrics-fields", "events", "config", "model"])
def test_report_of_damaged_run_files_writes_a_page(tmp_path, capsys, damage):
    """A run file that is not what splatkit writes costs its section, which says so; never a
    crash, and the files themselves are left as they are."""
    import hashlib

    out = make_fake_run(tmp_path / "out")
    target = {"metrics-list": "metrics.json", "metrics-fields": "metrics.json", "events": "events.jsonl",
              "config": "config.json", "model": "sparse/0/images.bin"}[damage]
    data = {"metrics-list": b"[1, 2, 3]",
            "metrics-fields": json.dumps({"psnr": "high", "num_splats": [1], "images": "eight",
                                          "per_image": {"a.jpg": 3}, "seconds": {"total": "x"},
                                          "resolution_detail": {"trained": "x"}}).encode(),
            "events": b'{"kind": "train_step", "step": "ten", "loss": "low"}\n[1]\n"text"\n'
                      b'{"kind": "eval", "step": 5, "psnr": null}\n',
            "config": b"\x00\xff not json",
            "model": (out / target).read_bytes()[:40]}[damage]
    (out / target).write_bytes(data)
    digest = hashlib.sha256((out / target).read_bytes()).hexdigest()
    assert main(["report", str(out)]) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err and "internal error" not in cap.err
    page = (out / "report.html").read_text()
    assert "<section id='next'>" in page
    if damage == "metrics-list":
        assert "metrics.json is damaged (not a JSON object)" in page
    if damage == "model":
        assert "images.bin is damaged" in page
    assert hashlib.sha256((out / target).read_bytes()).hexdigest() == digest


def test_export_and_view_of_a_run_with_a_damaged_model(tmp_path, capsys):
    """sparse/0/images.bin cut short in a finished run: export and view say which file and how
    to make it again (the checked reader training uses), exit 2, nothing written."""
    out = make_fake_run(tmp_path / "out")
    images_bin = out / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:60])
    before = sorted(p.name for p in out.iterdir())  # (.splatkit/ holds the lock: bookkeeping)
    for argv in (["export", str(out)], ["view", str(out), "--no-browser", "--port", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and "images.bin is damaged" in err[0], err
        assert "Compute the camera poses again" in err[1] and "--restart" in err[1]
    assert sorted(p.name for p in out.iterdir() if p.name != ".splatkit") == before


def test_report_shows_the_learned_sky(tmp_path):
    """A run with a sky (OUT/sky.png, metrics' sky) gets a section with the panorama; one
    without gets none."""
    import torch

    from splatkit.sky import SkyMap, save

    out = make_fake_run(tmp_path / "run")
    assert "id='sky'" not in build_report(out).read_text()
    sky = SkyMap(torch.rand(16, 32, 3), torch.full((16, 32), 5.0), torch.eye(3, dtype=torch.float64), 0.31)
    save(sky, out / "sky.npz", out / "sky.png")
    m = json.loads((out / "metrics.json").read_text())
    m["sky"] = {"share": 0.31, "width": 32, "height": 16, "seen_fraction": 1.0}
    (out / "metrics.json").write_text(json.dumps(m))
    text = build_report(out).read_text()
    assert "id='sky'" in text and "the learned sky panorama" in text
    assert "31.0% of the training pixels" in text
    check_self_contained(parse(out / "report.html"))
