"""``splatkit serve``: the classroom server (students upload photos, jobs run on Ray).

See ``docs/classroom.md``. The web stack (FastAPI, uvicorn, Ray) is the ``serve`` extra:
``pip install 'splatkit[serve]'``; it is imported only when the server starts.
"""

from __future__ import annotations

import argparse
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
                   help="Token for the teacher page (default: made once, kept in DATA/teacher_token).")
    p.add_argument("--class-code", default=None, help="Class code students join with (default: made "
                                                      "once, shown on the teacher page).")
    p.add_argument("--ray-cpus", type=positive_int, default=None,
                   help="CPUs the local Ray may use (default: all but one).")
    p.add_argument("--max-upload-mb", type=positive_number, default=500.0,
                   help="Largest upload (default 500 MB).")
    p.add_argument("--max-video-frames", type=positive_int, default=120,
                   help="Most frames taken from one student's video (default 120; a longer video "
                        "is sampled more sparsely).")


def cmd_serve(args: argparse.Namespace) -> int:
    from .runner import ray_on_loopback

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
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    local = "local Ray (127.0.0.1 only)"
    # the teacher token is not printed: this window may be on the projector beside the class code
    print(f"splatkit classroom server\n"
          f"  students: http://{shown}:{args.port}/   class code: {ctx.store.setting('class_code')}\n"
          f"  teacher:  http://{shown}:{args.port}/teacher   (sign in with the teacher token"
          f"{', as given' if args.teacher_token else ': cat ' + str(ctx.teacher_token_path)})\n"
          f"  data:     {ctx.data}\n"
          f"  jobs:     {'Ray cluster at ' + args.ray_address if args.ray_address else local}"
          + (f"\n  re-queued after restart: {app.state.requeued}" if app.state.requeued else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
