"""Text normalisation and the sentence-pair filters applied to every built translation corpus.

Conventions: lengths in *words* are whitespace-separated tokens of the normalised text; lengths in
*characters* are Unicode code points. The rules are a dataclass so the manifest records exactly what ran.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))  # soft hyphen, zero widths, BOM
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFC, invisible characters removed, every whitespace run (incl. NBSP) one space, stripped.

    Markup must already be gone and entities unescaped (the HTML parser does both).
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return _SPACE.sub(" ", text).strip()


class _Pair(Protocol):
    @property
    def src(self) -> str: ...

    @property
    def tgt(self) -> str: ...


@dataclass(frozen=True)
class CleaningRules:
    """Which sentence pairs a corpus keeps. Applied per pair, before splitting.

    A pair is dropped, under the first rule it breaks, when
    ``empty``: either side is empty after normalisation, or has no letter or digit;
    ``untranslated``: source == target (an untranslated paragraph, a bare name or number);
    ``too_long``: either side has more than ``max_words`` words;
    ``length_ratio``: the character-length ratio of the sides exceeds ``max_char_ratio`` either way.
    Exact duplicate pairs are removed later, within each split (see ``build_mt_corpus``).
    """

    max_words: int = 200
    max_char_ratio: float = 3.0

    def describe(self) -> dict:
        return {
            **asdict(self),
            "normalise": "NFC; soft hyphen/zero-width/BOM removed; whitespace runs -> one space; stripped",
            "drop": [
                "empty or no letter/digit",
                "untranslated (src == tgt)",
                f"> {self.max_words} words",
                f"char length ratio > {self.max_char_ratio} or < 1/{self.max_char_ratio}",
                "exact duplicate pair within a split",
            ],
        }

    def reason(self, src: str, tgt: str) -> str | None:
        """Why the pair breaks a rule (``"empty"``, ``"untranslated"``, ...), or None to keep it."""
        if not _has_word_char(src) or not _has_word_char(tgt):
            return "empty"
        if src == tgt:
            return "untranslated"
        if len(src.split()) > self.max_words or len(tgt.split()) > self.max_words:
            return "too_long"
        ratio = len(src) / len(tgt)
        if ratio > self.max_char_ratio or ratio < 1 / self.max_char_ratio:
            return "length_ratio"
        return None


P = TypeVar("P", bound=_Pair)


def _has_word_char(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def filter_pairs(pairs: Iterable[P], rules: CleaningRules) -> tuple[list[P], Counter[str]]:
    """Keep the pairs that pass ``rules``; also return how many were dropped under each rule."""
    kept: list[P] = []
    dropped: Counter[str] = Counter()
    for pair in pairs:
        why = rules.reason(pair.src, pair.tgt)
        if why is None:
            kept.append(pair)
        else:
            dropped[why] += 1
    return kept, dropped
