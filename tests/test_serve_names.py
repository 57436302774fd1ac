"""Students' names (splatkit/serve/names.py): what is shown, and which names are one seat."""

from __future__ import annotations

import pytest

pytest.importorskip("confusable_homoglyphs", reason="pip install -e '.[serve]'")

from splatkit.serve.names import clean_name, name_key, skeleton  # noqa: E402


@pytest.mark.parametrize("variant", [
    "Ada", "ADA", "  ada  ", "A\u200bda",  # zero-width space
    "\u0410da",  # Cyrillic capital A
    "Ad\u0430",  # Cyrillic small a
    "\uff21\uff44\uff41",  # full-width
    "A\u00addA",  # soft hyphen
    "\u202eAda",  # right-to-left override
    "Ada\ufe0f",  # variation selector
    "\U0001d400da",  # mathematical bold capital A
])
def test_look_alike_names_are_one_seat(variant):
    assert name_key(variant) == name_key("Ada"), (variant, name_key(variant))


@pytest.mark.parametrize("other", ["Ada2", "Adam", "Ida", "Ad a", "Zoe"])
def test_other_names_stay_apart(other):
    assert name_key(other) != name_key("Ada")


def test_accents_are_not_dropped_but_their_forms_are_one():
    assert name_key("Zoë") != name_key("Zoe")
    assert name_key("Zoe\u0308") == name_key("Zo\u00eb")  # combining diaeresis vs precomposed


def test_shown_name_is_cleaned():
    assert clean_name("  A\u200bda \t Lovelace\u200d ") == "Ada Lovelace"
    assert clean_name("\uff21\uff44\uff41") == "Ada"
    assert clean_name("x" * 100) == "x" * 40
    assert clean_name("\u200b\u200c\u2060") == ""  # nothing visible: no name


def test_skeleton_follows_the_unicode_table():
    assert skeleton("\u0430") == "a" and skeleton("\u043e") == "o"  # Cyrillic a, o
    assert skeleton("rn") == skeleton("m")
    assert skeleton("1") == skeleton("l") == skeleton("I")
