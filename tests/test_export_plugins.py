"""The plugin presets (splatkit/export/plugins.py): one type holding each plugin's data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from splatkit.errors import UserError
from splatkit.export.plugins import PLUGINS, PluginPreset, preset

ROOT = Path(__file__).resolve().parents[1] / "splatkit"


def test_every_preset_is_one_typed_record_named_as_its_key():
    for name, p in PLUGINS.items():
        assert isinstance(p, PluginPreset) and p.name == name
        assert p.formats and 0 <= p.sh_degree <= 3 and p.title and p.note


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_ply_axes_are_a_signed_permutation_that_changes_handedness(plugin):
    M = torch.tensor(PLUGINS[plugin].ply_axes, dtype=torch.float64)
    assert torch.equal(M @ M.T, torch.eye(3, dtype=torch.float64))
    assert float(torch.linalg.det(M)) == -1.0  # PLY is right-handed, Unreal left-handed


def test_verified_plugins_carry_their_storage_and_the_italink_cap_once():
    for name in ("nanogs", "italink", "picosplat"):
        assert PLUGINS[name].verified and PLUGINS[name].storage is not None
    it = PLUGINS["italink"]
    assert it.file_cap == it.default_max_splats == 10 * 1024 * 1024
    assert PLUGINS["picosplat"].file_cap is None and PLUGINS["picosplat"].default_max_splats == 1_000_000
    assert PLUGINS["nanogs"].default_max_splats is None


def test_no_module_spells_a_plugin_limit_or_branches_on_a_plugin_name():
    """Plugin facts live in the presets: no ``plugin == "italink"`` branch, no cap repeated."""
    names = "|".join(PLUGINS)
    pattern = re.compile(rf"""==\s*["']({names})["']|10\s*\*\s*1024\s*\*\s*1024""")
    found = []
    for f in ROOT.rglob("*.py"):
        if f.name == "plugins.py" and f.parent.name == "export":
            continue
        found += [f"{f.relative_to(ROOT)}:{i}" for i, line in enumerate(f.read_text().splitlines(), 1)
                  if pattern.search(line)]
    assert not found, found


def test_unknown_plugin_names_the_known_ones():
    with pytest.raises(UserError) as e:
        preset("unity")
    assert "nanogs" in str(e.value.args) or "nanogs" in str(e.value)


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_classroom_zip_guide_reads_the_preset(plugin):
    from splatkit.serve.jobs import unreal_readme

    text = unreal_readme(plugin, "scene", ["scene.ply", "scene.unreal.json"])
    p = PLUGINS[plugin]
    assert p.title in text and p.note in text
    assert ("Drag the .ply" in text) == p.factory_import
