"""Find sentences that are near-duplicates of some sentence in a reference set (e.g. test vs. train).

Similarity is the Jaccard index of *token sets*: tokens are ``re.findall(r"\\w+", text.lower())``
(Unicode word characters), and ``J(a, b) = |A & B| / |A | B|``. A query is a near-duplicate when
``J >= threshold`` for at least one reference. The search is exact, not sampled: it uses prefix filtering
over an inverted index (Chaudhuri et al. 2006; Bayardo et al. 2007, "All-Pairs"): order tokens rarest
first; if ``J(a, b) >= t`` then the first ``|A| - ceil(t|A|) + 1`` tokens of A and the first
``|B| - ceil(t|B|) + 1`` of B share a token, and ``t|A| <= |B| <= |A|/t``. Only such candidates are
verified, so 1k queries against 50k references take well under a second.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+")
METHOD = (
    "token-set Jaccard >= threshold; tokens = re.findall(r'\\w+', text.lower()); exact search by prefix "
    "filtering on an inverted index of rarest-first token prefixes"
)


def token_set(text: str) -> frozenset[str]:
    """The set of lower-cased word tokens of ``text``."""
    return frozenset(_TOKEN.findall(text.lower()))


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two texts; 1.0 for two texts without tokens."""
    sa, sb = token_set(a), token_set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def _prefix_len(n: int, threshold: float) -> int:
    return n - math.ceil(threshold * n - 1e-9) + 1


def near_duplicate_mask(
    queries: Sequence[str], references: Sequence[str], threshold: float = 0.8
) -> list[bool]:
    """For each query, whether some reference has token-set Jaccard >= ``threshold`` with it.

    Queries without any word token are never near-duplicates (compare them exactly instead).

    Args:
        queries: the texts tested.
        references: the texts they are tested against.
        threshold: the Jaccard similarity, in (0, 1], from which a query is a near-duplicate.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    q_sets = [token_set(q) for q in queries]
    r_sets = [token_set(r) for r in references]
    freq: Counter[str] = Counter()
    for s in r_sets:
        freq.update(s)
    for s in q_sets:
        freq.update(s)

    def ordered(s: frozenset[str]) -> list[str]:
        return sorted(s, key=lambda tok: (freq[tok], tok))

    index: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(r_sets):
        for tok in ordered(s)[: _prefix_len(len(s), threshold)]:
            index[tok].append(i)

    mask: list[bool] = []
    for s in q_sets:
        n = len(s)
        hit = False
        if n:
            lo, hi = threshold * n - 1e-9, n / threshold + 1e-9
            seen: set[int] = set()
            for tok in ordered(s)[: _prefix_len(n, threshold)]:
                for i in index.get(tok, ()):
                    if i in seen:
                        continue
                    seen.add(i)
                    r = r_sets[i]
                    if lo <= len(r) <= hi and len(s & r) >= threshold * len(s | r) - 1e-9:
                        hit = True
                        break
                if hit:
                    break
        mask.append(hit)
    return mask
