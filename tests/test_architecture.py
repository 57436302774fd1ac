"""The architecture rules of docs/architecture.md, checked by import-linter on the real import graph.

The contracts live in pyproject.toml (``[tool.importlinter]``): the layers (a stage imports only
contracts and earlier stages; the front ends sit on top) and no import circle between the modules
of any package. A second test breaks a copy of the sources on purpose, so the contracts are shown
to catch an arrow the wrong way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)


def test_import_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "module, line, expect",
    [
        ("sfm/cameras.py", "from splatkit.train import loop",
         "splatkit.sfm is not allowed to import splatkit.train"),
        ("export/unreal.py", "from splatkit.export import run_folder",
         "No cycles are allowed in splatkit.export"),
    ],
)
def test_contracts_catch_a_wrong_arrow(tmp_path, module, line, expect):
    shutil.copytree(ROOT / "splatkit", tmp_path / "splatkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "splatkit" / module, "a", encoding="utf-8") as f:
        f.write(f"\n{line}  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0 and expect in r.stdout, r.stdout + r.stderr


def test_every_module_has_a_layer_and_no_arrow_is_excused():
    """A new module or subpackage must be placed in a layer (else the contracts say nothing of
    it), and no known wrong arrow is excused by an ``ignore_imports`` list."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    stages = next(c for c in cfg["contracts"] if c["id"] == "stages")
    named = {m.strip() for layer in stages["layers"] for part in layer.split("|") for m in part.split(":")}
    pkg = ROOT / "splatkit"
    tops = {f"splatkit.{p.stem}" for p in pkg.glob("*.py") if p.stem != "__init__"}
    tops |= {f"splatkit.{p.parent.name}" for p in pkg.glob("*/__init__.py")}
    assert tops - named == set(), f"modules in no layer: {sorted(tops - named)}"
    assert all(not c.get("ignore_imports") for c in cfg["contracts"])
