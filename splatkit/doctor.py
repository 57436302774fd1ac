"""``splatkit doctor``: can ``splatkit train`` run on this machine? One line per check.

Each check gives ``OK``, ``WARN`` (works, but read this) or ``FAIL`` (``splatkit train`` will not
run until it is fixed), and says what to do. The exit code is 0 when nothing FAILs; a machine
without a GPU is ready (training runs on the CPU). GPU facts come from :mod:`splatkit.gpu`.
Takes a few seconds, most of it importing torch (pycolmap and numba are imported too, since a
broken binary wheel shows only then; the other packages are only looked up).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
DISK_WARN_GB = 5.0
DISK_FAIL_GB = 0.5
MEM_WARN_GB = 4.0
#: Other packages ``splatkit train`` imports (module name, pip name).
REQUIRED = (("numpy", "numpy"), ("PIL", "pillow"), ("plyfile", "plyfile"),
            ("torchmetrics", "torchmetrics"), ("rich", "rich"), ("matplotlib", "matplotlib"))


@dataclass
class Check:
    level: str  # OK | WARN | FAIL
    name: str
    message: str

    def line(self) -> str:
        return f"{self.level:<4}  {self.name}: {self.message}"


def _import(name: str):
    """Import a module; ``(module, None)`` or ``(None, 'why')``. Tests simulate a missing
    package with ``monkeypatch.setitem(sys.modules, name, None)``."""
    try:
        return importlib.import_module(name), None
    except Exception as e:  # noqa: BLE001 - a broken binary raises more than ImportError
        return None, f"{type(e).__name__}: {e}"


def check_python() -> Check:
    v = sys.version_info
    ver = f"{v.major}.{v.minor}.{v.micro}"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check(FAIL, "Python", f"{ver} is too old; install Python 3.10 or newer and "
                     "reinstall splatkit in a new virtual environment.")
    return Check(OK, "Python", f"{ver} ({sys.executable})")


def check_torch() -> Check:
    torch, err = _import("torch")
    if torch is None:
        return Check(FAIL, "PyTorch", f"cannot be imported ({err}); install it first: "
                     "`pip install torch==2.13.0` (see README), then `pip install -e .`.")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    return Check(OK, "PyTorch", f"{torch.__version__}, {build}")


def gpu_checks() -> tuple[list[Check], bool]:
    """GPU, memory and gsplat's CUDA build; ``(checks, gpu_usable)``."""
    try:
        from . import gpu
    except ImportError as e:  # splatkit/gpu.py missing from this installation
        return [Check(WARN, "GPU", f"probes unavailable ({e}); training will use the CPU.")], False
    try:
        info = gpu.probe()
    except Exception as e:  # noqa: BLE001 - never crash the doctor
        return [Check(WARN, "GPU", f"probe failed ({type(e).__name__}: {e}); "
                      "use --device cpu if training fails.")], False
    levels = {gpu.OK: OK, gpu.WARN: WARN, gpu.ERROR: FAIL}
    checks = [Check(levels.get(lvl, WARN), "GPU", msg) for lvl, msg in gpu.report_lines(info)]
    if info.cuda_available and info.gpu_memory_gib is not None and info.gpu_memory_gib < 6:
        checks.append(Check(WARN, "GPU memory", f"{info.gpu_memory_gib:.1f} GiB: use "
                            "--preset quick or --resolution 1000 for large photo sets."))
    return checks, gpu.gsplat_usable(info)


def check_module(module: str, what: str, fix: str, required: bool = True) -> Check:
    mod, err = _import(module)
    if mod is None:
        return Check(FAIL if required else WARN, what, f"cannot be imported ({err}); {fix}")
    return Check(OK, what, f"{module} {getattr(mod, '__version__', '')}".strip())


def _installed(name: str) -> bool:
    """Found on the path (not imported: torchmetrics and matplotlib take seconds to import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_packages() -> Check:
    missing = [pip for mod, pip in REQUIRED if not _installed(mod)]
    if missing:
        return Check(FAIL, "Packages", f"missing {', '.join(missing)}; "
                     f"`pip install {' '.join(missing)}` (or reinstall splatkit).")
    return Check(OK, "Packages", "numpy, pillow, plyfile, torchmetrics, rich, matplotlib")


def check_disk(folder: Path) -> Check:
    try:
        free = shutil.disk_usage(folder).free / 1e9
    except OSError as e:
        return Check(WARN, "Disk", f"cannot read the free space of {folder} ({e}).")
    msg = f"{free:.1f} GB free in {folder}"
    if free < DISK_FAIL_GB:
        return Check(FAIL, "Disk", msg + "; a run needs about 1-5 GB: free some space.")
    if free < DISK_WARN_GB:
        return Check(WARN, "Disk", msg + f"; below {DISK_WARN_GB:.0f} GB a large photo set may "
                     "not fit (checkpoints, images): free space or use -o on another disk.")
    return Check(OK, "Disk", msg)


def _memory_gb() -> tuple[float | None, float | None]:
    """(total, available) in GB, from /proc/meminfo or sysconf; None where unknown."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            info[k] = float(v.split()[0]) * 1024 / 1e9
        return info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        return total, None
    except (ValueError, OSError, AttributeError):
        return None, None


def check_memory() -> Check:
    total, avail = _memory_gb()
    if total is None:
        return Check(WARN, "Memory", "unknown on this system.")
    have = avail if avail is not None else total
    msg = f"{have:.1f} GB available of {total:.1f} GB"
    if have < MEM_WARN_GB:
        return Check(WARN, "Memory", msg + "; close other programs or use --preset quick.")
    return Check(OK, "Memory", msg)


def can_write(folder: Path) -> str | None:
    """None if a file can be created in ``folder``, else why not."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".splatkit-doctor-"):
            pass
        return None
    except OSError as e:
        return e.strerror or str(e)


def check_write(folder: Path) -> Check:
    why = can_write(folder)
    if why is not None:
        return Check(FAIL, "Write access", f"cannot create files in {folder} ({why}); run "
                     "splatkit from a folder you own, or give an output folder with -o.")
    return Check(OK, "Write access", str(folder))


def run_checks(folder: Path | None = None) -> tuple[list[Check], bool]:
    """All checks for ``folder`` (default: the working folder); ``(checks, ready)``."""
    folder = Path(folder or Path.cwd())
    checks = [check_python(), check_torch()]
    if checks[-1].level == FAIL:
        gpu_ok = False
    else:
        g, gpu_ok = gpu_checks()
        checks += g
    checks.append(check_module("pycolmap", "pycolmap (camera poses)",
                               "`pip install pycolmap` (needs a 64-bit Python 3.10+)."))
    checks.append(check_module(
        "numba", "numba (CPU renderer)", "`pip install numba`" +
        (" (only the CPU renderer needs it; your GPU does not)." if gpu_ok else "."),
        required=not gpu_ok))
    checks += [check_packages(), check_disk(folder), check_memory(), check_write(folder)]
    return checks, not any(c.level == FAIL for c in checks)


def doctor(folder: Path | None = None, out=print) -> int:
    """Print the checks; 0 when ``splatkit train`` can run, 1 otherwise."""
    t0 = time.perf_counter()
    checks, ready = run_checks(folder)
    for c in checks:
        out(c.line())
    cpu_only = not any(c.name == "GPU" and c.message.startswith("GPU:") for c in checks)
    where = "on the CPU" if cpu_only else "on the GPU"
    took = f"({time.perf_counter() - t0:.1f} s)"
    if ready:
        out(f"Ready: `splatkit train` will run {where}. {took}")
        return 0
    out(f"Not ready: fix the FAIL lines above, then run `splatkit doctor` again. {took}")
    return 1
