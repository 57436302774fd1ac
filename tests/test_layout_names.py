"""The output folder's layout is named in one module: splatkit/rundir.py.

An AST scan of every other module of the package: a layout name (``scene.ply``, ``sparse``,
``checkpoints``, the server's ``cancel`` ...) as a string literal in a path join (``a / "x"``,
``Path(..., "x")``, ``joinpath``, ``os.path.join``, ``open``), as a module constant, or, for the
names with a dot (no other meaning), anywhere outside a docstring, fails the test with the file and
line.
"""

from __future__ import annotations

import ast
from pathlib import Path

from splatkit import rundir

PKG = Path(rundir.__file__).resolve().parent
NAMES = set(rundir.LAYOUT) | set(rundir.SERVER_FILES) | {
    rundir.META, "run.json", "lock", "lock.json", "readers", "frames.json", "inputs.json", "import.json",
}
#: a line that names an input's folder, not the output's, says so (Polycam's keyframes/images)
INPUT_MARK = "# input, not OUT/"
JOINS = {"Path", "PurePath", "joinpath", "join", "open", "with_name"}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _in_join(node: ast.Constant, parents: dict) -> bool:
    p = parents.get(id(node))
    if isinstance(p, ast.BinOp) and isinstance(p.op, ast.Div):
        return True
    if isinstance(p, (ast.Assign, ast.AnnAssign)) and isinstance(parents.get(id(p)), ast.Module):
        return True  # a module constant naming it (CHECKPOINT_DIR = "checkpoints")
    if isinstance(p, ast.Call) and node in p.args:
        f = p.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in JOINS
    return False


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    docs = _docstrings(tree)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docs:
            continue
        if INPUT_MARK in lines[node.lineno - 1]:  # another program's folder that reuses a name
            continue
        if node.value in NAMES and ("." in node.value or _in_join(node, parents)):
            out.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: {node.value!r}")
    return out


def test_no_module_but_rundir_spells_a_layout_name():
    found = [v for p in sorted(PKG.rglob("*.py")) if p.name != "rundir.py" for v in violations(p)]
    assert not found, "layout names outside splatkit/rundir.py (use RunDir):\n" + "\n".join(found)


def test_the_scan_finds_a_join(tmp_path):
    bad = PKG / "_layout_probe.py"
    try:
        bad.write_text('from pathlib import Path\n\n\ndef f(out):\n    return Path(out) / "sparse" / "0"\n')
        assert violations(bad) == ["splatkit/_layout_probe.py:5: 'sparse'"]
        bad.write_text('KNOWN = {"scene.ply": 1}\nDIR = "checkpoints"\n')
        assert sorted(violations(bad)) == ["splatkit/_layout_probe.py:1: 'scene.ply'",
                                   "splatkit/_layout_probe.py:2: 'checkpoints'"]
    finally:
        bad.unlink()
