"""Build a summarization corpus from Debian's package descriptions: long description -> synopsis.

Why this source: it arrives with the package manager itself (Debian's archive is the one source the build
machines reach), it is written by thousands of maintainers, and every package has both sides: a long
description of a few sentences (median 48 words in bookworm/main) and a one-line synopsis (median 6 words).
It is short-input, headline-style summarization, not news (CNN-Daily Mail's articles are ~15x longer).

Pipeline (``bench/data/debian_index.py`` reads the files): Translation-en + Packages -> join by (package,
description md5) -> :func:`make_sum_splits` (clean, de-duplicate, split by *source* package, drop leaks, find
test-clean) -> :func:`write_corpus`. Output, under ``<cache_dir>/debian-descriptions/``::

    train.src train.tgt train.pkg  valid.*  test.*  test-clean.*  manifest.json

line ``i`` of ``<split>.src`` (a long description) summarised by line ``i`` of ``<split>.tgt`` (its
synopsis); ``<split>.pkg`` names the example's binary package, version and source package.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.data.debian_index import (
    CLEANING,
    UPDATE,
    apt_index_files,
    read_index_text,
    read_packages,
    read_translations,
)
from bench.data.errors import DataError
from bench.data.manifest import DEFAULT_CACHE, build_lock, is_current, write_corpus
from bench.data.near_duplicates import METHOD as NEAR_DUP_METHOD
from bench.data.near_duplicates import near_duplicate_mask
from bench.data.splitting import HashSplit

FORMAT_VERSION = 1
#: The summarization corpora built by name.
SUM_CORPORA = ("debian-descriptions",)
SPLITS = ("train", "valid", "test", "test-clean")
SIDES = ("src", "tgt")


@dataclass(frozen=True)
class SumRules:
    """Which (description, synopsis) pairs the corpus keeps; a pair is dropped under the first rule it breaks:
    ``empty`` (a side without a letter or digit), ``too_short`` (description under ``min_src_words``),
    ``too_long`` (description over ``max_src_words``), ``synopsis_too_long`` (over ``max_tgt_words``)."""

    min_src_words: int = 20
    max_src_words: int = 200
    max_tgt_words: int = 30

    def reason(self, src: str, tgt: str) -> str | None:
        if not any(c.isalnum() for c in src) or not any(c.isalnum() for c in tgt):
            return "empty"
        n = len(src.split())
        if n < self.min_src_words:
            return "too_short"
        if n > self.max_src_words:
            return "too_long"
        if len(tgt.split()) > self.max_tgt_words:
            return "synopsis_too_long"
        return None

    def describe(self) -> dict:
        return {**asdict(self), "drop": ["empty", f"description < {self.min_src_words} words",
                                         f"description > {self.max_src_words} words",
                                         f"synopsis > {self.max_tgt_words} words",
                                         "exact duplicate (description, synopsis) pair: the first in (source "
                                         "package, package) order is kept, over the whole corpus"]}


@dataclass(frozen=True)
class Example:
    package: str
    version: str
    source: str  # the source package: the split key
    src: str  # the long description
    tgt: str  # the synopsis


@dataclass
class SumSplits:
    splits: dict[str, list[Example]]
    counts: dict = field(default_factory=dict)


def join_index(translation_text: str, packages_text: str) -> tuple[list[Example], dict]:
    """The examples of every Translation-en entry whose (package, description md5) the Packages index has,
    sorted by (source package, package); and the counts of the join."""
    descriptions = read_translations(translation_text)
    packages = read_packages(packages_text)
    examples = []
    for d in descriptions:
        p = packages.get(d.package)
        if p is not None and p.md5 in ("", d.md5):
            examples.append(Example(d.package, p.version, p.source, d.text, d.synopsis))
    examples.sort(key=lambda e: (e.source, e.package))
    counts = {"translation_entries": len(descriptions), "packages_entries": len(packages),
              "joined": len(examples), "not_in_packages": len(descriptions) - len(examples),
              "source_packages_joined": len({e.source for e in examples})}
    return examples, counts


def make_sum_splits(
    examples: Sequence[Example], rules: SumRules = SumRules(), split: HashSplit = HashSplit(),
    near_dup_threshold: float = 0.8,
) -> SumSplits:
    """1. drop pairs that break ``rules``; 2. drop exact duplicate pairs over the whole corpus (the first in
    the given order stays); 3. put each pair in the split of its source package (``split.split_of``), so that
    binary packages of one source never straddle two splits; 4. drop valid and test pairs whose description
    also occurs in train; 5. ``test-clean``: the test pairs whose description has token-set Jaccard <
    ``near_dup_threshold`` with every train description.

    Args:
        examples: the (description, synopsis) pairs with their source packages.
        rules: the pair-cleaning rules (:class:`SumRules`).
        split: the hashed split, keyed by source package.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
    """
    dropped: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    by_split: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    for e in examples:
        why = rules.reason(e.src, e.tgt)
        if why:
            dropped[why] = dropped.get(why, 0) + 1
        elif (e.src, e.tgt) in seen:
            duplicates += 1
        else:
            seen.add((e.src, e.tgt))
            by_split[split.split_of(e.source)].append(e)
    train_src = {e.src for e in by_split["train"]}
    leaks = {}
    for name in ("valid", "test"):
        kept = [e for e in by_split[name] if e.src not in train_src]
        leaks[name], by_split[name] = len(by_split[name]) - len(kept), kept
    near = near_duplicate_mask([e.src for e in by_split["test"]], sorted(train_src), near_dup_threshold)
    by_split["test-clean"] = [e for e, dup in zip(by_split["test"], near) if not dup]
    sources = {name: {e.source for e in items} for name, items in by_split.items()}
    counts = {
        "dropped_by_rule": dict(sorted(dropped.items())),
        "duplicate_pairs": duplicates,
        "source_in_train_dropped": leaks,
        "test_near_duplicates_of_train": sum(near),
        "pairs": {name: len(items) for name, items in by_split.items()},
        "source_packages": {name: len(s) for name, s in sources.items()},
        "source_packages_in_two_splits": len((sources["train"] & (sources["valid"] | sources["test"]))
                                             | (sources["valid"] & sources["test"])),
        "median_words": {name: {"src": _median_words([e.src for e in items]),
                                "tgt": _median_words([e.tgt for e in items])} for name, items in by_split.items()},
    }
    return SumSplits(by_split, counts)


def _median_words(lines: Sequence[str]) -> float:
    return float(statistics.median(len(s.split()) for s in lines)) if lines else 0.0


def sum_config(name: str, rules: SumRules, split: HashSplit, near_dup_threshold: float, component: str) -> dict:
    """Everything that determines the built corpus (the manifest's ``config``). The index files are not part of
    it (the manifest records which were read): a cached corpus stays valid after apt drops Translation-en.

    Args:
        name: the corpus name.
        rules: the pair-cleaning rules (:class:`SumRules`).
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
        component: the Debian archive component (main).
    """
    return {
        "format": FORMAT_VERSION, "name": name, "task": "sum", "src": "src", "tgt": "tgt",
        "source": f"Debian {component}: i18n/Translation-en (Description-en) joined with the Packages index",
        "extraction": CLEANING,
        "cleaning": rules.describe(),
        "split": {**split.describe(), "key": "the source package (Packages' Source field, else the package name)"},
        "test_clean": {"method": NEAR_DUP_METHOD, "threshold": near_dup_threshold,
                       "rule": "test pairs whose description is below the threshold against every train one"},
    }


def build_sum_corpus_from_index(
    translation_text: str, packages_text: str, out_dir: Path, config: dict, rules: SumRules = SumRules(),
    split: HashSplit = HashSplit(), near_dup_threshold: float = 0.8, sources: list[dict] | None = None,
    started: float | None = None,
) -> dict:
    """Join, split and write ``out_dir`` from the texts of a Translation-en and a Packages file; return the
    manifest. No apt here, so tests feed small hand-made files.

    Args:
        translation_text: the Translation-en file's text.
        packages_text: the Packages file's text.
        out_dir: the corpus folder written.
        config: the manifest's config (:func:`sum_config`).
        rules: the pair-cleaning rules (:class:`SumRules`).
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
        sources: what the inputs were (package, version, sha256...), copied into the manifest.
        started: a ``time.perf_counter()`` value ``build_seconds`` counts from; None: this call.
    """
    start = time.perf_counter() if started is None else started
    examples, join_counts = join_index(translation_text, packages_text)
    result = make_sum_splits(examples, rules, split, near_dup_threshold)
    if not result.splits["train"]:
        raise DataError("no training pair left from the Debian index: are Translation-en and Packages of one release?")
    texts: dict[str, list[str]] = {}
    for name in SPLITS:
        items = result.splits[name]
        texts[f"{name}.src"] = [e.src for e in items]
        texts[f"{name}.tgt"] = [e.tgt for e in items]
        texts[f"{name}.pkg"] = [f"{e.package} {e.version} {e.source}" for e in items]
    manifest = {
        "name": config["name"], "task": "sum", "src": "src", "tgt": "tgt", "splits": list(SPLITS),
        "sources": sources or [],
        "license": "the packages' descriptions, as distributed in Debian's archive (each under its package's "
                   "license); <split>.pkg names every package and version",
        "counts": {**join_counts, **result.counts},
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - start, 2),
        "config": config,
    }
    return write_corpus(out_dir, texts, manifest)


def _index_source(kind: str, path: Path, text: str, release: dict | None) -> dict:
    return {"index": kind, "file": Path(path).name, "sha256_text": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "bytes_text": len(text.encode("utf-8")), **({"release": release} if release else {})}


def build_sum_corpus(
    name: str = "debian-descriptions",
    cache_dir: Path = DEFAULT_CACHE,
    *,
    translation: Path | None = None,
    packages: Path | None = None,
    component: str = "main",
    rules: SumRules = SumRules(),
    split: HashSplit = HashSplit(),
    near_dup_threshold: float = 0.8,
    force: bool = False,
) -> Path:
    """Build (or reuse) the summarization corpus ``name`` under ``cache_dir``; return its folder.

    The index files are apt's own (``apt-get indextargets``: the Translation-en of ``component`` and the
    Packages index of the same release), which ``apt-get -o Acquire::Languages=en update`` fetches; or the
    files given (``translation``, ``packages``; plain or compressed as apt keeps them). Rebuilt only when
    missing, when the manifest's config differs, when a file's sha256 does not match, or with ``force``.

    Args:
        name: the corpus name (a key of SUM_CORPORA).
        cache_dir: where the corpus folder is built.
        translation: a Translation-en file; None (with ``packages``): apt's own.
        packages: a Packages file of the same release; None (with ``translation``): apt's own.
        component: the Debian archive component apt's index files are read for.
        rules: the pair-cleaning rules (:class:`SumRules`).
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
        force: rebuild even when current.
    """
    if name not in SUM_CORPORA:
        raise DataError(f"unknown summarization corpus {name!r}: use {', '.join(SUM_CORPORA)}, or a folder with "
                        "train.src/train.tgt, valid.*, test.*")
    config = sum_config(name, rules, split, near_dup_threshold, component)
    out_dir = Path(cache_dir) / name
    with build_lock(out_dir):
        if not force and is_current(out_dir, config):
            return out_dir
        start = time.perf_counter()
        release = None
        if (translation is None) != (packages is None):
            raise DataError("pass both translation= and packages= (or neither, to read apt's index)")
        if translation is None:
            found = apt_index_files(component)
            translation, packages, release = found.translation, found.packages, found.release
        assert packages is not None
        t_text, p_text = read_index_text(Path(translation)), read_index_text(Path(packages))
        sources = [_index_source("Translation-en", translation, t_text, release),
                   _index_source("Packages", packages, p_text, release)]
        try:
            build_sum_corpus_from_index(t_text, p_text, out_dir, config, rules, split, near_dup_threshold,
                                        sources, started=start)
        except DataError as exc:
            raise DataError(f"{exc} (read {translation} and {packages}; `{UPDATE}` refreshes them)") from None
    return out_dir
