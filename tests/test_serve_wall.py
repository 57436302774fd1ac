"""The critique wall against a real ``splatkit serve`` on loopback: 30 students with results.

The data folder is seeded before the server starts: 30 seats, each with a finished job whose
output folder is a fake run (``tests/fake_run.py``) with its own quality, photo counts and coach
diagnosis; one student has two results (the latest is shown), one has none yet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser_util import browser, not_blank, png_to_array
from fake_run import make_fake_run
from serve_util import CODE, TEACHER, Server, need_serve_deps

from splatkit.report import build_report

N = 30


def _psnr(i: int) -> float:
    return round(18.0 + (i * 7919 % 97) / 97 * 14.0, 3)  # spread out, out of name order


def seed(data: Path, template: Path) -> dict[str, float]:
    """30 students with a finished job each; returns name -> the PSNR their wall card shows."""
    from splatkit.serve.store import Store

    store = Store(data / "splatkit.db")
    store.set_class_code(CODE)
    shown = {}

    def done_job(sid: int, name: str, psnr: float, diagnosis: str) -> None:
        photos = data / "uploads" / f"s{sid}-{psnr}"
        photos.mkdir(parents=True)
        job = store.add_job(sid, "quick", str(photos), data / "jobs")
        store.mark_running(job["id"])
        out = Path(job["out_dir"])
        shutil.copytree(template, out)
        m = json.loads((out / "metrics.json").read_text())
        m["psnr"] = psnr
        m["images"].update(input=40 + sid, used=40 + sid, registered=30 + sid)
        m["coach"] = {"diagnosis": diagnosis, "advice": ["Walk all the way around."]}
        (out / "metrics.json").write_text(json.dumps(m))
        store.finish(job["id"], "done")

    for i in range(N):
        name = f"Student {i:02d}"
        s, _ = store.join(name, None)
        if i == 5:  # an earlier result, replaced by the later one
            done_job(s["id"], name, 10.0, "Weak result (10.0 dB): an older try.")
        done_job(s["id"], name, _psnr(i), f"Diagnosis of {name}.")
        shown[name] = _psnr(i)
    s, _ = store.join("No Result Yet", None)
    store.add_job(s["id"], "quick", str(data / "uploads" / "none"), data / "jobs")
    (data / "uploads" / "none").mkdir(parents=True)
    store.close()
    return shown


@pytest.fixture(scope="module")
def wall_server(tmp_path_factory):
    need_serve_deps()
    tmp = tmp_path_factory.mktemp("wall")
    template = make_fake_run(tmp / "template")
    build_report(template)
    shown = seed(tmp / "data", template)
    srv = Server(tmp / "data", args=["--ray-cpus", "1"]).start(wait_ray=False)
    try:
        yield srv, shown
    finally:
        srv.stop()


def all_cards(srv, sess, **q) -> list[dict]:
    first = sess.get(srv.url + "/api/teacher/wall", params={**q, "page": 1}, timeout=30).json()
    cards = list(first["cards"])
    for p in range(2, first["pages"] + 1):
        cards += sess.get(srv.url + "/api/teacher/wall", params={**q, "page": p}, timeout=30).json()["cards"]
    return cards


def test_wall_pages_and_sorts_thirty_students(wall_server):
    srv, shown = wall_server
    t = srv.teacher()
    o = t.get(srv.url + "/api/teacher/wall", params={"per_page": 12}, timeout=30).json()
    assert (o["total"], o["pages"], len(o["cards"]), o["without_result"]) == (N, 3, 12, 1)
    cards = all_cards(srv, t, per_page=12)
    assert sorted(c["student"] for c in cards) == sorted(shown)  # each student once, on a page
    psnrs = [c["psnr"] for c in cards]
    assert psnrs == sorted(psnrs, reverse=True)  # best likeness first by default
    assert {c["student"]: c["psnr"] for c in cards} == shown  # the latest result of Student 05
    asc = [c["psnr"] for c in all_cards(srv, t, per_page=7, order="asc")]
    assert asc == sorted(psnrs)
    names = [c["student"] for c in all_cards(srv, t, sort="name", per_page=10)]
    assert names == sorted(shown)
    placed = [c["placed"] for c in all_cards(srv, t, sort="placed")]
    assert placed == sorted(placed, reverse=True) and placed[0] == 30 + N  # the last seat (id 30)
    c = next(c for c in cards if c["student"] == "Student 07")
    assert c["diagnosis"] == "Diagnosis of Student 07." and c["used"] == c["photos"]
    assert str(srv.data) not in json.dumps(cards)  # no server paths
    assert t.get(srv.url + "/api/teacher/wall", params={"sort": "nope"}, timeout=10).status_code == 400


def test_each_card_opens_report_viewer_and_render(wall_server):
    srv, _ = wall_server
    t = srv.teacher()
    c = t.get(srv.url + "/api/teacher/wall", params={"per_page": 1}, timeout=30).json()["cards"][0]
    for url, kind in ((c["report"], "text/html"), (c["viewer"], "text/html"), (c["image"], "image/png")):
        r = t.get(srv.url + url, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), url


def test_wall_is_for_the_teacher_only(wall_server):
    import requests

    srv, _ = wall_server
    assert requests.get(srv.url + "/api/teacher/wall", timeout=10).status_code == 403
    s = srv.student("A Student")
    assert s.get(srv.url + "/api/teacher/wall", timeout=10).status_code == 403
    assert requests.get(srv.url + "/teacher/wall", timeout=10).status_code == 200  # page: no data


def test_wall_in_chromium_on_a_projector(wall_server, tmp_path):
    srv, shown = wall_server
    best = max(shown, key=shown.get)
    with browser() as ctx:
        page = ctx.new_page()
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.goto(srv.url + "/teacher/wall")
        page.wait_for_selector("#msg a[href='/teacher']")  # not signed in: says where to sign in
        page.goto(srv.url + "/teacher")
        page.fill("#token", TEACHER)
        page.click("#login-btn")
        page.wait_for_selector("#wall-link")
        page.goto(srv.url + "/teacher/wall")
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 8  # the page's default: 4 x 2
        assert page.locator(".card h2").first.inner_text() == best
        page.wait_for_function("[...document.querySelectorAll('.shot canvas')].every("
                               "c => c.dataset.drawn === '1' && c.width > 0)")
        size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.card h2')).fontSize)")
        assert size >= 28  # readable from the back of the room at 1920 px
        # a whole page fits one 1080p screen, no scrolling
        assert page.evaluate("document.querySelectorAll('.card')[7].getBoundingClientRect().bottom") <= 1080
        page.click("#dark")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 15, 20)"
        shot = png_to_array(page.screenshot(path=str(tmp_path / "wall.png")))
        assert not_blank(shot)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.querySelector('#page-info').textContent === 'page 2 of 4'")
        assert page.locator(".card").count() == 8
        page.select_option("#sort", "name")
        page.wait_for_function("document.querySelector('.card h2').textContent === 'Student 00'")
        page.reload()
        assert page.evaluate("document.body.classList.contains('dark')")  # remembered
        with ctx.expect_page(timeout=120_000) as opened:  # a busy 2-core box is slow
            page.locator(".card .links a", has_text="Report").first.click()
        report = opened.value
        report.wait_for_load_state()
        assert "Capture coach" in report.content()
