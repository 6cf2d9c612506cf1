"""A tiny synthetic parallel corpus (English -> a word-by-word German), for training tests that run in seconds."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = "the a cat dog sees runs big small red blue house tree car bird sings fast slow old new".split()
DE = "der ein katze hund sieht rennt gross klein rot blau haus baum auto vogel singt schnell langsam alt neu"
GERMAN = dict(zip(WORDS, DE.split()))


def write_corpus(root: Path, n_train: int = 300, seed: int = 0) -> Path:
    """train/valid/test .en/.de files, plus test-clean (every other test pair), in the plain-text layout."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", 30), ("test", 20)):
        en, de = [], []
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
            en.append(" ".join(words))
            de.append(" ".join(GERMAN[w] for w in words))
        (root / f"{split}.en").write_text("\n".join(en) + "\n")
        (root / f"{split}.de").write_text("\n".join(de) + "\n")
        if split == "test":  # test-clean: a subset of test, as the built-in corpora have it
            (root / "test-clean.en").write_text("\n".join(en[::2]) + "\n")
            (root / "test-clean.de").write_text("\n".join(de[::2]) + "\n")
    return root


def write_lm_corpus(root: Path, n_train: int = 400, seed: int = 0) -> Path:
    """train.txt / valid.txt / test.txt of short synthetic sentences."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", 40), ("test", 40)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(n)]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root
