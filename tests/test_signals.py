"""splatkit/signals.py: Ctrl-C and SIGTERM stop cleanly, and pycolmap's native handler is replaced."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from splatkit.signals import Stopper


def test_stopper_first_signal_asks_then_second_stops():
    s = Stopper()
    with pytest.raises(KeyboardInterrupt):  # not armed (no training loop polling): stop at once
        s.handle(signal.SIGTERM, None)
    assert s.exit_code == 143
    s = Stopper()
    assert s() is False  # the loop's first poll arms it
    s.handle(signal.SIGINT, None)
    assert s() is True and s.exit_code == 130
    with pytest.raises(KeyboardInterrupt):
        s.handle(signal.SIGINT, None)


def test_install_replaces_pycolmaps_native_sigterm_handler():
    code = textwrap.dedent("""
        import os, signal, time
        from splatkit.signals import Stopper, install
        stopper = Stopper()
        install(stopper)
        import pycolmap  # imported again: must not put glog's handler back
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            print("stopped cleanly", stopper.exit_code)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stopped cleanly 143"
    assert "stack trace" not in r.stderr and "SIGTERM" not in r.stderr
