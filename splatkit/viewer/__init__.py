"""``splatkit view OUT``: a local web viewer of a trained scene, offline.

A stdlib HTTP server on 127.0.0.1 serves four things and nothing else:

* ``/`` and ``/static/...``: the page (``static/index.html``, ``viewer.js``) and the vendored
  WebGL Gaussian-splat renderer Spark with three.js (``static/vendor/``, see ``VENDOR.md``);
* ``/scene.ply``: the run's scene as it is: ``OUT/scene_clean.ply`` after cleanup, else
  ``OUT/scene.ply`` (:func:`splatkit.cleanup.scene_path`);
* ``/cameras.json``: the training cameras from ``OUT/sparse/0`` with OpenGL axes
  (:func:`splatkit.viewer.cameras.cameras_payload`).

Page options in the URL hash: ``#cam=N`` opens at camera N (index in the list, sorted by name),
``ui=0`` hides the panel and the frusta (used by the tests for screenshots).
"""

from __future__ import annotations

import json
import mimetypes
import threading
import webbrowser
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8765


class _Handler(SimpleHTTPRequestHandler):
    """Serves the static page plus ``/scene.ply`` and ``/cameras.json`` of one output folder."""

    def __init__(self, *args, out_dir: Path, cameras: bytes, **kw):
        self.out_dir = out_dir
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
            from ..cleanup import scene_path
            from ..rundir import RunDir

            ply = scene_path(RunDir(self.out_dir))
            if not ply.exists():
                self.send_error(HTTPStatus.NOT_FOUND, "no scene.ply in the output folder")
                return True
            size = ply.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                with open(ply, "rb") as f:
                    while chunk := f.read(1 << 20):
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


def make_server(out_dir: Path, port: int = DEFAULT_PORT) -> tuple[ThreadingHTTPServer, str]:
    """A server for ``out_dir`` bound to 127.0.0.1 (port 0: any free port) and its URL."""
    from .cameras import cameras_payload

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is not a folder.",
                        "Give the output folder of `splatkit train` (it holds scene.ply).")
    if not (out_dir / "scene.ply").exists():
        raise UserError(f"No scene.ply in {out_dir}: training has not finished there.",
                        "Run `splatkit train PHOTOS -o OUT` first, then `splatkit view OUT`.")
    cameras = json.dumps(cameras_payload(out_dir)).encode()
    mimetypes.add_type("text/javascript", ".js")
    handler = partial(_Handler, out_dir=out_dir, cameras=cameras)
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
