"""Students' names: what is shown, and the key that says two names are the same seat.

A name is shown as typed, cleaned: Unicode NFKC (full-width and styled letters become plain ones),
invisible characters removed (zero-width spaces and joiners, bidi marks, soft hyphens: every
format character, category ``Cf``; variation selectors and the other default-ignorable ones),
control characters removed, runs of spaces made one. Two names are the same seat when their keys
are equal: the cleaned name, case-folded, then each letter replaced by the prototype of its
confusable class (the *skeleton* of Unicode Technical Standard #39, from the Unicode confusables
table as packaged by ``confusable_homoglyphs``): a Cyrillic ``а`` is a Latin ``a``, ``0`` is
``O``, ``rn`` is ``m``. So ``Ada``, ``ADA``, ``A da`` with a zero-width space, ``Аda`` with a
Cyrillic letter and ``Ａｄａ`` are one seat; ``Ada2`` is another name (the teacher merges or
removes such seats, and may cap the number of seats).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path

MAX_NAME = 40
#: bidi marks the confusables table puts around right-to-left prototypes
_MARKS = "\u200e\u200f"
#: invisible characters that are not format characters (Unicode's Default_Ignorable_Code_Point
#: outside category Cf): variation selectors, the combining grapheme joiner, Hangul fillers,
#: Mongolian free variation selectors, Khmer inherent vowels
_IGNORABLE = [(0xFE00, 0xFE0F), (0xE0100, 0xE01EF), (0x034F, 0x034F), (0x115F, 0x1160),
              (0x3164, 0x3164), (0xFFA0, 0xFFA0), (0x180B, 0x180F), (0x17B4, 0x17B5)]


def _visible(ch: str) -> bool:
    if ch in " \t\n":
        return True
    if unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cs", "Cn"):
        return False
    return not any(lo <= ord(ch) <= hi for lo, hi in _IGNORABLE)


def clean_name(name: str) -> str:
    """The name as shown: NFKC, no invisible or control characters, single spaces, at most 40."""
    text = unicodedata.normalize("NFKC", str(name))
    kept = "".join(ch for ch in text if _visible(ch))
    return " ".join(kept.split())[:MAX_NAME]


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """character -> its prototype (UTS #39), from ``confusable_homoglyphs``' copy of the Unicode
    confusables table: a source maps to one prototype; a prototype lists all its sources."""
    import confusable_homoglyphs

    table = json.loads((Path(confusable_homoglyphs.__file__).parent / "confusables.json")
                       .read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for ch, glyphs in table.items():
        if len(glyphs) != 1:
            continue  # a prototype of several sources stays itself
        target = glyphs[0]["c"].strip(_MARKS)
        # a pair of single glyphs (each the other's only look-alike): both to the smaller one
        out[ch] = min(ch, target) if len(table.get(target, ())) == 1 else target
    return out


def skeleton(text: str) -> str:
    """``text`` with each character replaced by its confusable prototype (UTS #39 skeleton)."""
    table = _prototypes()
    s = unicodedata.normalize("NFD", text)
    s = "".join(table.get(ch, ch) for ch in s)
    return unicodedata.normalize("NFD", s)


def name_key(name: str) -> str:
    """The seat key of ``name``: equal for names that look the same (see the module's text)."""
    folded = clean_name(name).casefold()
    return skeleton(folded).casefold()
