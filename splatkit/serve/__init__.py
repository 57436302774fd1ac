"""``splatkit serve``: the classroom server (students upload photos, jobs run on Ray).

See ``docs/classroom.md``. The web stack (FastAPI, uvicorn, Ray) is the ``serve`` extra:
``pip install 'splatkit[serve]'``; it is imported only when the server starts.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
from pathlib import Path

from ..errors import UserError
from ..options import port_number, positive_int, positive_number


def add_cli_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens "
                        "it to the class network, see docs/classroom.md).")
    p.add_argument("--port", type=port_number, default=8000, help="Port (default 8000).")
    p.add_argument("--data", type=Path, default=Path("splatkit-class"),
                   help="Folder for the database, uploads and results (default ./splatkit-class).")
    p.add_argument("--ray-address", default=None,
                   help="Send jobs to an existing Ray cluster (e.g. 10.0.0.5:6379); default: start "
                        "a local Ray inside the server.")
    p.add_argument("--teacher-token", default=None,
                   help="Token for the teacher page (default: made once, kept in DATA/teacher_token); "
                        "one easy to guess (under 12 characters, few different ones) is refused.")
    p.add_argument("--class-code", default=None, help="Class code students join with (default: made "
                                                      "once, shown on the teacher page).")
    p.add_argument("--ray-cpus", type=positive_int, default=None,
                   help="CPUs the local Ray may use (default: all but one).")
    p.add_argument("--max-upload-mb", type=positive_number, default=500.0,
                   help="Largest upload (default 500 MB).")
    p.add_argument("--max-video-frames", type=positive_int, default=120,
                   help="Most frames taken from one student's video (default 120; a longer video "
                        "is sampled more sparsely).")


def lan_addresses() -> list[str]:
    """The IPv4 addresses of this machine that other computers of its networks can open."""
    try:
        import psutil

        addrs = [a.address for nics in psutil.net_if_addrs().values() for a in nics
                 if a.family == socket.AF_INET]
    except Exception:  # noqa: BLE001 - psutil missing or no permission: fall back to the default route
        addrs = []
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP: nothing is sent
            addrs.append(s.getsockname()[0])
    return sorted({a for a in addrs if not ipaddress.ip_address(a).is_loopback
                   and not ipaddress.ip_address(a).is_link_local})


def addresses_line(host: str, port: int) -> tuple[str, str]:
    """(the students' address or addresses, a warning or "") for ``--host``."""
    if host in ("127.0.0.1", "::1", "localhost"):
        return f"http://localhost:{port}/", ""
    if host in ("0.0.0.0", "::", ""):
        lan = lan_addresses()
        shown = "  or  ".join(f"http://{a}:{port}/" for a in lan) or f"http://<this computer>:{port}/"
        return shown, ("  WARNING: listening on every network of this computer: anyone who can reach it "
                       "may open the pages and try to join (plain HTTP; see docs/classroom.md).\n")
    return f"http://{host}:{port}/", ("  WARNING: listening on a network address: plain HTTP, "
                                       "see docs/classroom.md.\n")


def cmd_serve(args: argparse.Namespace) -> int:
    from .auth import weak_token
    from .runner import ray_on_loopback

    why = weak_token(args.teacher_token) if args.teacher_token is not None else None
    if why:
        raise UserError(f"The teacher token given with --teacher-token is too easy to guess: {why}.",
                        "Leave --teacher-token out (a strong one is made and kept in DATA/teacher_token), "
                        "or choose a longer one, e.g. four unrelated words.")
    if not args.ray_address:
        ray_on_loopback()  # before Ray is imported
    try:
        import fastapi  # noqa: F401
        import ray  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise UserError(f"The classroom server needs {e.name}, which is not installed.",
                        "Install it with: pip install 'splatkit[serve]'") from None
    from .app import create_app
    from .uploads import UploadLimits

    limits = UploadLimits(max_request_mb=args.max_upload_mb, max_video_frames=args.max_video_frames)
    app = create_app(args.data, teacher_token=args.teacher_token, ray_address=args.ray_address,
                     ray_cpus=args.ray_cpus, limits=limits, class_code=args.class_code)
    ctx = app.state.ctx
    students, warning = addresses_line(args.host, args.port)
    local = "local Ray (127.0.0.1 only)"
    if ctx.made_private:
        warning += "  note: the data folder was readable by other accounts; it is now yours only (700).\n"
    if not args.teacher_token and weak_token(secret_file_text(ctx.teacher_token_path)):
        warning += (f"  WARNING: the teacher token in {ctx.teacher_token_path} is easy to guess: delete "
                    "the file to have a strong one made at the next start.\n")
    # the teacher token is not printed: this window may be on the projector beside the class code
    print(f"splatkit classroom server\n{warning}"
          f"  students: {students}   class code: {ctx.store.setting('class_code')}\n"
          f"  teacher:  {students.split()[0]}teacher   (sign in with the teacher token"
          f"{', as given' if args.teacher_token else ': cat ' + str(ctx.teacher_token_path)})\n"
          f"  data:     {ctx.data}\n"
          f"  jobs:     {'Ray cluster at ' + args.ray_address if args.ray_address else local}"
          + (f"\n  re-queued after restart: {app.state.requeued}" if app.state.requeued else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def secret_file_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "x" * 40  # not there: nothing to warn about
