"""What an installed splatkit carries: a real wheel, built from this tree and inspected.

The export copies ``unreal_export/import_splat.py`` beside every manifest and tells the user to run
it; the wheel must carry it (``setup.py``), and an installed splatkit must find its own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "splatkit/unreal_export/import_splat.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the sources (the build never writes into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for d in ("splatkit", "unreal_export"):
        shutil.copytree(ROOT / d, src / d, ignore=skip)
    for f in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / f, src / f)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
           str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("splatkit-*.whl")
    return whl


def test_wheel_carries_the_unreal_editor_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert SCRIPT in names, sorted(n for n in names if "unreal" in n)
        assert z.read(SCRIPT) == (ROOT / "unreal_export" / "import_splat.py").read_bytes()
        assert "splatkit/export/plugins.py" in names and "splatkit/frames.py" in names


def test_installed_splatkit_finds_its_own_editor_script(wheel, tmp_path):
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a wheel is installed by unpacking it
        z.extractall(target)
    code = ("import splatkit.export.manifest as m, splatkit; p = m.editor_script(); "
            "print(p); assert p.is_relative_to(splatkit.__file__.rsplit('/', 1)[0]), p")
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert Path(r.stdout.strip()) == target / SCRIPT
