"""Assign documents to train/valid/test by a stable hash, so a split never depends on order or machine."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HashSplit:
    """Split documents by ``sha256(key)``: stable across runs, machines and Python versions.

    The first 8 bytes of the SHA-256 of the UTF-8 key, as a big-endian integer, modulo 10 000, give a
    bucket; buckets ``[0, test)`` are test, ``[test, test + valid)`` valid and the rest train, with
    ``test = round(test_frac * 10 000)``. The key is the document id (for LibreOffice help: the page path
    relative to ``text/``, e.g. ``swriter/guide/text_centervert.html``), so every paragraph of one page
    lands in one split and near-identical neighbouring paragraphs cannot straddle train and test.
    """

    test_frac: float = 0.03
    valid_frac: float = 0.02
    salt: str = ""

    BUCKETS = 10_000

    def bucket(self, key: str) -> int:
        digest = hashlib.sha256((self.salt + key).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.BUCKETS

    def split_of(self, key: str) -> str:
        """``"train"``, ``"valid"`` or ``"test"`` for a document key."""
        b = self.bucket(key)
        n_test = round(self.test_frac * self.BUCKETS)
        if b < n_test:
            return "test"
        if b < n_test + round(self.valid_frac * self.BUCKETS):
            return "valid"
        return "train"

    def describe(self) -> dict:
        return {
            **asdict(self),
            "rule": f"bucket = int.from_bytes(sha256(salt + page_path)[:8], 'big') % {self.BUCKETS}; "
            f"test if bucket < test_frac*{self.BUCKETS}, valid if < (test_frac+valid_frac)*{self.BUCKETS}, "
            "else train",
        }
