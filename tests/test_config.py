"""Presets and their photo tiers (splatkit/config.py), and where the pipeline applies them."""

from __future__ import annotations

import dataclasses

from splatkit.config import PHOTO_TIERS, RunConfig, preset_config, tiered
from splatkit.events import EventBus, Message
from splatkit.pipeline import _apply_tier
from splatkit.rundir import RunDir


def test_quick_gives_large_photo_sets_more_steps_and_splats():
    cfg = preset_config("quick")
    tier = PHOTO_TIERS["quick"][-1]
    big, changed = tiered(cfg, tier.train_photos, set())
    assert changed == {k: v for k, v in tier.train.items() if getattr(cfg.train, k) != v}
    assert big.train.steps > cfg.train.steps and big.train.max_splats > cfg.train.max_splats
    for k, v in tier.train.items():
        assert getattr(big.train, k) == v
    # Everything else is the preset's.
    rest = {f.name for f in dataclasses.fields(cfg.train)} - set(tier.train)
    assert all(getattr(big.train, k) == getattr(cfg.train, k) for k in rest)
    assert big.sfm == cfg.sfm and big.ingest == cfg.ingest


def test_small_sets_and_other_presets_are_unchanged():
    quick = preset_config("quick")
    n = PHOTO_TIERS["quick"][0].train_photos
    assert tiered(quick, n - 1, set()) == (quick, {})
    # Between two tiers the lower one applies, and only its settings change.
    mid, changed = tiered(quick, PHOTO_TIERS["quick"][1].train_photos - 1, set())
    assert changed == PHOTO_TIERS["quick"][0].train and mid.train.max_splats == quick.train.max_splats
    standard = preset_config("standard")
    assert "standard" not in PHOTO_TIERS
    assert tiered(standard, 10_000, set()) == (standard, {})


def test_settings_given_explicitly_win_over_the_tier():
    cfg = preset_config("quick")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=1234))
    big, changed = tiered(cfg, 500, {"train.steps"})
    assert big.train.steps == 1234 and "steps" not in changed
    assert big.train.max_splats == PHOTO_TIERS["quick"][-1].train["max_splats"]


def test_the_pipeline_saves_and_says_the_tier(tmp_path):
    rd = RunDir(tmp_path / "out")
    rd.root.mkdir()
    cfg = preset_config("quick")
    rd.config.write_text(cfg.to_json())
    said: list[Message] = []
    bus = EventBus()
    bus.subscribe(lambda e: said.append(e) if isinstance(e, Message) else None)
    out = _apply_tier(rd, cfg, 112, set(), bus)
    saved = RunConfig.load(rd.config)
    steps = PHOTO_TIERS["quick"][-1].train["steps"]
    assert saved == out and saved.train.steps == steps
    assert len(said) == 1 and "112 training photos" in said[0].text and f"steps {steps:,}" in said[0].text
    # Applying it again (a resumed run reads the saved config) changes nothing and says nothing.
    again = _apply_tier(rd, saved, 112, set(), bus)
    assert again == saved and len(said) == 1
