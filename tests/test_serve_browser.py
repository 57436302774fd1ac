"""Browser: headless Chromium (tests/browser_util.py) joins the class as a student on the student
page, uploads 8 real photos (strecha fountain, downscaled to 300 px), waits for the job (the real
pipeline, tiny preset) to finish, downloads the Unreal export; then the teacher page shows the result."""

from __future__ import annotations

import zipfile

import pytest
from browser_util import browser
from serve_util import CODE, TEACHER, Server, need_serve_deps, small_photos


def test_student_uploads_and_downloads(tmp_path, shared_datasets):
    need_serve_deps()
    src = shared_datasets / "strecha_fountain_p11" / "images"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    files = []
    for name, data in small_photos(src, 8, 300):
        p = tmp_path / "photos" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        files.append(str(p))
    with browser() as ctx:
        srv = Server(tmp_path / "data").start()
        try:
            page = ctx.new_page()
            page.goto(srv.url + "/")
            page.fill("#join-code", CODE)
            page.fill("#join-name", "Ada")
            page.click("#join-btn")
            page.wait_for_selector("#main:not(.hidden)")
            page.set_input_files("#files", files)
            page.select_option("#preset", "tiny")
            page.click("#upload-btn")
            page.wait_for_selector("#msg.ok >> text=in the line", timeout=30_000)
            page.wait_for_selector(".job[data-state=done]", timeout=150_000)
            assert "likeness" in page.inner_text(".job .progress")
            assert page.locator(".job .previews img").count() >= 1
            with page.expect_download(timeout=120_000) as dl:
                page.click(".job a.dl-unreal")
            path = dl.value.path()
            names = zipfile.ZipFile(path).namelist()
            assert any(n.endswith(".ply") for n in names) and any(n.endswith(".unreal.json") for n in names)
            # the teacher's overview shows the student's thumbnail
            t = ctx.new_page()
            t.goto(srv.url + "/teacher")
            t.fill("#token", TEACHER)
            t.click("#login-btn")
            t.wait_for_selector(".gallery figure.thumb img", timeout=20_000)
            assert "Ada" in t.inner_text("#gallery")
            assert t.locator("#class-code").inner_text() == CODE
        finally:
            srv.stop()
