"""``splatkit view OUT``: a local web viewer of a trained scene, offline.

A stdlib HTTP server on 127.0.0.1 serves four things and nothing else:

* ``/`` and ``/static/...``: the page (``static/index.html``, ``viewer.js``) and the vendored
  WebGL Gaussian-splat renderer Spark with three.js (``static/vendor/``, see ``VENDOR.md``);
* ``/scene.ply``: the run's scene as it is: ``OUT/scene_clean.ply`` after cleanup, else
  ``OUT/scene.ply`` (:meth:`splatkit.rundir.RunDir.scene_in_use`);
* ``/cameras.json``: the training cameras from ``OUT/sparse/0`` with OpenGL axes
  (:func:`splatkit.viewer.cameras.cameras_payload`).

Page options in the URL hash: ``#cam=N`` opens at camera N (index in the list, sorted by name),
``ui=0`` hides the panel and the frusta (used by the tests for screenshots).
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
import webbrowser
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import UserError
from ..rundir import RunDir, check_layout
from ..runlock import reading

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8765


class _Handler(SimpleHTTPRequestHandler):
    """Serves the static page plus ``/scene.ply`` and ``/cameras.json`` of one output folder."""

    def __init__(self, *args, scene: _Snapshot, cameras: bytes, **kw):
        self.scene = scene
        self.cameras = cameras
        super().__init__(*args, directory=str(STATIC), **kw)

    def log_message(self, format, *args):  # noqa: A002 - keep the terminal quiet
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _send_bytes(self, data: bytes, ctype: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _route(self) -> bool:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/cameras.json":
            self._send_bytes(self.cameras, "application/json")
            return True
        if path == "/scene.ply":
            size = self.scene.size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                for chunk in self.scene.chunks():
                    self.wfile.write(chunk)
            return True
        if path == "/" or path.startswith("/static/"):
            if path.startswith("/static/"):
                self.path = self.path[len("/static"):]
            return False
        self.send_error(HTTPStatus.NOT_FOUND)
        return True

    def do_GET(self):
        if not self._route():
            super().do_GET()

    def do_HEAD(self):
        if not self._route():
            super().do_HEAD()


class _Snapshot:
    """``scene.ply`` as it was when the viewer started: the file stays open, so a run that
    replaces or moves it afterwards (a re-train) does not change what this viewer shows."""

    def __init__(self, path: Path):
        self._f = open(path, "rb")  # noqa: SIM115 - open for the server's life
        self.size = os.fstat(self._f.fileno()).st_size

    def chunks(self, n: int = 1 << 20):
        at = 0
        while at < self.size:
            data = os.pread(self._f.fileno(), min(n, self.size - at), at)
            if not data:
                return
            at += len(data)
            yield data


def make_server(out_dir: Path, port: int = DEFAULT_PORT) -> tuple[ThreadingHTTPServer, str]:
    """A server for ``out_dir`` bound to 127.0.0.1 (port 0: any free port) and its URL.

    The scene and its cameras are read under the folder's reader lock (a live training run is
    named as such) and kept: the page shows one consistent run."""
    from .cameras import cameras_payload

    rd = RunDir(Path(out_dir))
    if not rd.root.is_dir():
        raise UserError(f"{rd.root} is not a folder.",
                        "Give the output folder of `splatkit train` (it holds scene.ply).")
    check_layout(rd)
    with reading(rd.root, "view"):
        if not rd.scene_ply.is_file():
            raise UserError(f"No scene.ply in {rd.root}: training has not finished there.",
                            "Run `splatkit train PHOTOS -o OUT` first, then `splatkit view OUT`.")
        cameras = json.dumps(cameras_payload(rd.root)).encode()
        scene = _Snapshot(rd.scene_in_use())  # the cleaned scene when training wrote one
    mimetypes.add_type("text/javascript", ".js")
    handler = partial(_Handler, scene=scene, cameras=cameras)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise UserError(f"Cannot listen on 127.0.0.1:{port} ({e.strerror or e}).",
                        "Another program uses that port: choose another with --port N.") from None
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def serve_in_thread(out_dir: Path, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a daemon thread (tests, notebooks); ``server.shutdown()`` stops it."""
    server, url = make_server(out_dir, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


def view(out_dir: Path, port: int = DEFAULT_PORT, open_browser: bool = True) -> int:
    """Serve until Ctrl-C (``splatkit view``)."""
    server, url = make_server(out_dir, port)
    print(f"splatkit viewer for {Path(out_dir).resolve()}\n  open {url}\n  Ctrl-C to stop.",
          flush=True)
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
