"""splatkit's CPU backends against golden gsplat renders (``tests/golden/gsplat_*.pt``).

The golden files are made on a CUDA machine by ``scripts/make_golden.py`` (inputs, gsplat 1.5.3
image/alpha/means2d/radii/depths, and the gradients of a fixed random weighted sum of image and
alpha w.r.t. every raw splat tensor and means2d). Here the same scenes are rendered with the
``cpu`` (float32) and ``reference`` (float64) backends with ``max_alpha=0.999``, gsplat's
compiled-in clamp, and compared within the tolerances defined (and justified) in
``scripts/make_golden.py``: image/alpha 1e-3 absolute, gradients 1e-3 relative to the largest
|gradient| of each tensor, with at most 0.2% of values allowed up to one 1/255-threshold flip.

``SPLATKIT_GOLDEN`` (a glob) points the test at other files, e.g. a CPU dry run made with
``make_golden.py --backend reference --out /tmp/g`` -> ``SPLATKIT_GOLDEN='/tmp/g/*.pt'``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_golden", REPO / "scripts" / "make_golden.py")
mg = sys.modules.setdefault("make_golden", importlib.util.module_from_spec(_spec))
if not hasattr(mg, "SCENES"):
    _spec.loader.exec_module(mg)

PATTERN = os.environ.get("SPLATKIT_GOLDEN", str(REPO / "tests" / "golden" / "gsplat_*.pt"))
FILES = sorted(glob.glob(PATTERN))


def _backend_or_skip(name: str):
    try:
        return mg.get_renderer(name)
    except ImportError as e:  # a backend not written yet
        pytest.skip(f"render backend {name!r} not importable: {e}")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("path", FILES or [None], ids=lambda p: Path(p).stem if p else "none")
def test_matches_golden(path, backend):
    if path is None:
        pytest.skip(
            f"no golden files match {PATTERN}: run `python3 scripts/make_golden.py` on a CUDA "
            "machine (see scripts/gpu_session.sh) and commit tests/golden/"
        )
    _backend_or_skip(backend)
    data, splats, view, settings, w_img, w_alpha = mg.load_golden(Path(path))
    assert settings.max_alpha == mg.GSPLAT_MAX_ALPHA
    got = mg.render_splatkit(backend, splats, view, settings, w_img, w_alpha)
    problems = mg.compare_results(got, data)
    assert not problems, f"{Path(path).name} vs {backend} ({data['meta']}):\n" + "\n".join(problems)


def test_golden_files_are_small():
    total = sum(Path(p).stat().st_size for p in FILES)
    assert total < 3e6, f"golden files take {total / 1e6:.1f} MB (budget 3 MB)"


def test_scenes_are_deterministic():
    a = mg.make_scene(mg.SCENES[0])
    b = mg.make_scene(mg.SCENES[0])
    for x, y in zip(a[0].as_dict().values(), b[0].as_dict().values(), strict=True):
        assert (x == y).all()
    assert (a[3] == b[3]).all()


def test_golden_inputs_match_generator():
    """The stored inputs are what make_scene() gives today (the generator was not changed
    without regenerating the golden files)."""
    if not FILES:
        pytest.skip("no golden files yet")
    by_name = {s.name: s for s in mg.SCENES}
    for path in FILES:
        data = mg.load_golden(Path(path))[0]
        spec = by_name.get(data["name"])
        if spec is None:
            continue
        splats = mg.make_scene(spec)[0]
        for k, v in splats.as_dict().items():
            assert (data["inputs"][k] == v).all(), f"{Path(path).name}: input {k} changed"
