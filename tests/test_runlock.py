"""splatkit/runlock.py: one command at a time per run folder (the lock and who holds it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from splatkit.errors import UserError
from splatkit.rundir import RunDir
from splatkit.runlock import RunLock


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    rd = RunDir(tmp_path)
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from splatkit.rundir import RunDir; "
            "from splatkit.runlock import RunLock; "
            "lock = RunLock(RunDir(sys.argv[2]), 'train photos').acquire(); "
            "print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, os.getcwd(), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as e:
            RunLock(rd, "train").acquire()
        assert f"process {holder.pid}" in str(e.value) and "splatkit train photos" in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: the OS released the lock; the next run takes over
    lock = RunLock(rd, "train").acquire()
    assert lock.taken_over is not None and lock.taken_over["pid"] == holder.pid
    lock.release()
    again = RunLock(rd, "train").acquire()
    assert again.taken_over is None  # released cleanly: nothing to take over
    again.release()
