"""GPU probes for ``splatkit doctor`` and the first GPU run.

Every probe is cheap and safe on a CPU-only machine: none imports gsplat's CUDA backend.
(Importing ``gsplat.cuda._backend`` where nvcc exists *starts* a JIT build of gsplat's CUDA
code; here we only look for its output on disk.)

How gsplat 1.5.3 finds its CUDA code (``gsplat/cuda/_backend.py``): first a precompiled
``gsplat/csrc*.so`` (wheels from docs.gsplat.studio/whl); else, if a CUDA toolkit (nvcc) is
found, it JIT-compiles ``gsplat/cuda/csrc/*.cu`` with ``torch.utils.cpp_extension`` into
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions/py<XY>_cu<ZW>/gsplat_cuda/`` and loads
``gsplat_cuda.so`` from there on later runs; with no toolkit it prints a warning and every
rasterization call fails.

Use :func:`probe` for the facts and :func:`report_lines` for plain-words messages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Rough one-off cost of gsplat's JIT build (16 cores, MAX_JOBS=10..16). Measured values replace
#: this guess once the first GPU session has timed it.
GSPLAT_BUILD_MINUTES = "3 to 10"

OK, WARN, ERROR = "ok", "warning", "error"


@dataclass
class GpuProbe:
    """What the probes found. ``None`` means 'not known' (e.g. no GPU to ask)."""

    torch_version: str = ""
    torch_cuda: str | None = None  # torch.version.cuda: CUDA that torch was built with
    cuda_available: bool = False
    device_count: int = 0
    gpu_name: str | None = None
    gpu_memory_gib: float | None = None
    gpu_capability: tuple[int, int] | None = None
    nvcc_path: str | None = None
    nvcc_version: str | None = None  # "13.0"
    gsplat_version: str | None = None
    gsplat_precompiled: bool = False
    gsplat_jit_dir: str | None = None
    gsplat_jit_built: bool = False
    notes: list[str] = field(default_factory=list)


# --- individual probes ------------------------------------------------------------------------


def probe_torch(info: GpuProbe) -> None:
    import torch

    info.torch_version = torch.__version__
    info.torch_cuda = torch.version.cuda
    try:
        info.cuda_available = bool(torch.cuda.is_available())
    except Exception as e:  # broken driver install: report, never crash the doctor
        info.cuda_available = False
        info.notes.append(f"torch.cuda.is_available() raised {type(e).__name__}: {e}")
    if not info.cuda_available:
        return
    info.device_count = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    info.gpu_name = props.name
    info.gpu_memory_gib = props.total_memory / 2**30
    info.gpu_capability = (props.major, props.minor)


def find_nvcc() -> str | None:
    """Where torch's cpp_extension would find nvcc: $CUDA_HOME/bin, PATH, /usr/local/cuda/bin."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and Path(home, "bin", "nvcc").is_file():
            return str(Path(home, "bin", "nvcc"))
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def nvcc_version(nvcc: str) -> str | None:
    """``"13.0"`` from ``nvcc --version`` ("Cuda compilation tools, release 13.0, V13.0.88")."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def gsplat_jit_dir(torch_cuda: str | None) -> Path:
    """The folder torch's cpp_extension builds ``gsplat_cuda`` into (mirrors its naming)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        from torch.utils.cpp_extension import get_default_build_root

        base = get_default_build_root()
        acc = f"cu{torch_cuda.replace('.', '')}" if torch_cuda else "cpu"
        py = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(base, f"{py}_{acc}")
    return Path(root) / "gsplat_cuda"


def probe_gsplat(info: GpuProbe) -> None:
    try:
        info.gsplat_version = importlib.metadata.version("gsplat")
    except importlib.metadata.PackageNotFoundError:
        return
    spec = importlib.util.find_spec("gsplat")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        pkg = Path(next(iter(spec.submodule_search_locations)))
        info.gsplat_precompiled = any(pkg.glob("csrc*.so")) or any(pkg.glob("csrc*.pyd"))
    jit = gsplat_jit_dir(info.torch_cuda)
    info.gsplat_jit_dir = str(jit)
    info.gsplat_jit_built = (jit / "gsplat_cuda.so").is_file()


def probe() -> GpuProbe:
    """Run every probe (a second or two; runs ``nvcc --version`` once if nvcc exists)."""
    info = GpuProbe()
    probe_torch(info)
    info.nvcc_path = find_nvcc()
    if info.nvcc_path:
        info.nvcc_version = nvcc_version(info.nvcc_path)
    probe_gsplat(info)
    return info


# --- plain-words report -----------------------------------------------------------------------


def _major(v: str | None) -> str | None:
    return v.split(".")[0] if v else None


def report_lines(info: GpuProbe) -> list[tuple[str, str]]:
    """``(level, message)`` pairs, level one of ``ok``/``warning``/``error``.

    Without a GPU the answer is one line saying so: the CPU renderer will be used, which is not
    an error.
    """
    out: list[tuple[str, str]] = []
    out.extend((WARN, n) for n in info.notes)
    if not info.cuda_available:
        if info.torch_cuda is None:
            why = f"this PyTorch ({info.torch_version}) is a CPU-only build"
        else:
            why = f"PyTorch (built for CUDA {info.torch_cuda}) sees no NVIDIA GPU or driver"
        out.append((OK, f"No GPU: {why}. splatkit will train on the CPU (slower, smaller runs)."))
        return out

    mem = f", {info.gpu_memory_gib:.0f} GiB" if info.gpu_memory_gib is not None else ""
    cap = (
        f", compute capability {info.gpu_capability[0]}.{info.gpu_capability[1]}"
        if (info.gpu_capability)
        else ""
    )
    out.append(
        (
            OK,
            f"GPU: {info.gpu_name}{mem}{cap}; PyTorch {info.torch_version} "
            f"with CUDA {info.torch_cuda}.",
        )
    )

    if info.gsplat_version is None:
        out.append((ERROR, "gsplat is not installed: `pip install gsplat==1.5.3`."))
        return out
    built = info.gsplat_precompiled or info.gsplat_jit_built
    if info.gsplat_precompiled:
        out.append((OK, f"gsplat {info.gsplat_version}: precompiled CUDA code found."))
    elif info.gsplat_jit_built:
        out.append(
            (
                OK,
                f"gsplat {info.gsplat_version}: CUDA code already compiled "
                f"({info.gsplat_jit_dir}).",
            )
        )

    if info.nvcc_path is None:
        if not built:
            out.append(
                (
                    ERROR,
                    "nvcc not found, and gsplat's CUDA code is not compiled yet: "
                    f"install the CUDA toolkit matching PyTorch's CUDA {info.torch_cuda} "
                    "(nvcc on PATH or CUDA_HOME set), or use --device cpu.",
                )
            )
        return out
    if info.nvcc_version is None:
        out.append((WARN, f"Could not read the version of {info.nvcc_path} (`nvcc --version`)."))
    elif info.torch_cuda and _major(info.nvcc_version) != _major(info.torch_cuda):
        level = WARN if built else ERROR
        out.append(
            (
                level,
                f"nvcc is CUDA {info.nvcc_version} but PyTorch was built with CUDA "
                f"{info.torch_cuda}: PyTorch refuses to build extensions across CUDA "
                f"major versions. Install the CUDA {info.torch_cuda} toolkit (or a "
                f"PyTorch built for CUDA {_major(info.nvcc_version)}.x).",
            )
        )
    elif info.torch_cuda and info.nvcc_version != info.torch_cuda:
        out.append(
            (
                OK,
                f"nvcc is CUDA {info.nvcc_version}, PyTorch's is {info.torch_cuda}: "
                "same major version, which works.",
            )
        )
    else:
        out.append((OK, f"nvcc: CUDA {info.nvcc_version} ({info.nvcc_path})."))
    if not built:
        out.append(
            (
                WARN,
                "gsplat compiles its CUDA code on first use; this takes about "
                f"{GSPLAT_BUILD_MINUTES} minutes once (set MAX_JOBS to the number of "
                f"CPU cores to speed it up), then it is cached in {info.gsplat_jit_dir}.",
            )
        )
    return out


def summary(info: GpuProbe | None = None) -> str:
    """The report as text, one message per line, prefixed by its level."""
    info = probe() if info is None else info
    return "\n".join(f"[{lvl}] {msg}" for lvl, msg in report_lines(info))


def gsplat_usable(info: GpuProbe) -> bool:
    """True if the gsplat backend can run now or after its one-off JIT build."""
    if not info.cuda_available or info.gsplat_version is None:
        return False
    if info.gsplat_precompiled or info.gsplat_jit_built:
        return True
    return bool(info.nvcc_path) and (
        info.nvcc_version is None or _major(info.nvcc_version) == _major(info.torch_cuda)
    )


if __name__ == "__main__":  # python -m splatkit.gpu
    print(summary())
