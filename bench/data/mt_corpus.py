"""Build a translation corpus from LibreOffice's help pages, as Debian packages them.

Why this source: the machines that build and test this suite reach only package registries, and the help
is real human translation (MPL-2.0) that aligns exactly by paragraph id: about 34k en-de pairs, median 9
words (see ``bench/data/libreoffice.py``). No split ships with it, so we make one by page (``HashSplit``).

Pipeline (each step a function, so the steps after the download run on any extracted tree):
``apt-get download`` + ``dpkg-deb -x``  ->  :func:`align_help_trees`  ->  :func:`make_mt_splits`
(clean, split by page, de-duplicate, drop leaks, find test-clean)  ->  :func:`write_corpus`.

Output, under ``<cache_dir>/<name>/`` (source and target language from the name, ``libreoffice-<src>-<tgt>``)::

    train.en train.de  valid.en valid.de  test.en test.de  test-clean.en test-clean.de  manifest.json

one sentence (in fact one help paragraph) per line, line ``i`` of ``<split>.<src>`` translating to line
``i`` of ``<split>.<tgt>``.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.data.cleaning import CleaningRules, filter_pairs
from bench.data.errors import DataError
from bench.data.fetch import apt_download, deb_fields, extract_deb, find_debs
from bench.data.libreoffice import EXTRACTION, AlignedPair, align_help_trees, help_package
from bench.data.manifest import DEFAULT_CACHE, build_lock, is_current, sha256_file, write_corpus
from bench.data.near_duplicates import METHOD as NEAR_DUP_METHOD
from bench.data.near_duplicates import near_duplicate_mask
from bench.data.splitting import HashSplit

#: Bump when the output for the same inputs changes, so cached corpora are rebuilt.
FORMAT_VERSION = 1
#: The translation corpora this module builds by name; any ``libreoffice-<src>-<tgt>`` also works.
MT_CORPORA = ("libreoffice-en-de", "libreoffice-en-fr")
SPLITS = ("train", "valid", "test", "test-clean")
_NAME = re.compile(r"^libreoffice-([a-z]{2,3})-([a-z]{2,3})$")


def parse_mt_name(name: str) -> tuple[str, str]:
    """(source, target) language of a corpus name: ``"libreoffice-en-de"`` -> ``("en", "de")``."""
    m = _NAME.match(name)
    if not m or m.group(1) == m.group(2):
        raise DataError(f"unknown translation corpus {name!r}: use one of {', '.join(MT_CORPORA)} "
                        "(or libreoffice-<src>-<tgt>), or a folder of plain-text files")
    return m.group(1), m.group(2)


@dataclass
class MTSplits:
    """Pairs per split (``train``, ``valid``, ``test``, ``test-clean``) and what happened on the way."""

    splits: dict[str, list[AlignedPair]]
    counts: dict = field(default_factory=dict)


def make_mt_splits(
    pairs: Sequence[AlignedPair],
    rules: CleaningRules = CleaningRules(),
    split: HashSplit = HashSplit(),
    near_dup_threshold: float = 0.8,
) -> MTSplits:
    """Clean, split by page, de-duplicate and de-leak aligned pairs.

    1. drop pairs that break ``rules`` (empty, untranslated, too long, length ratio);
    2. put each pair in the split of its page (``split.split_of(page)``);
    3. keep the first of identical (src, tgt) pairs within each split (pages in path order);
    4. drop valid and test pairs whose source sentence also occurs in train (exact match);
    5. ``test-clean``: the test pairs whose source has token-set Jaccard < ``near_dup_threshold`` with
       every train source (``near_duplicate_mask``).

    Args:
        pairs: the aligned pairs, pages in path order.
        rules: the pair-cleaning rules.
        split: the hashed split, keyed by page.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
    """
    kept, dropped = filter_pairs(pairs, rules)
    by_split: dict[str, list[AlignedPair]] = {"train": [], "valid": [], "test": []}
    for p in kept:
        by_split[split.split_of(p.page)].append(p)
    duplicates: dict[str, int] = {}
    for name, items in by_split.items():
        seen: set[tuple[str, str]] = set()
        unique = []
        for p in items:
            if (p.src, p.tgt) not in seen:
                seen.add((p.src, p.tgt))
                unique.append(p)
        duplicates[name] = len(items) - len(unique)
        by_split[name] = unique
    train_src = {p.src for p in by_split["train"]}
    leaks: dict[str, int] = {}
    for name in ("valid", "test"):
        clean = [p for p in by_split[name] if p.src not in train_src]
        leaks[name] = len(by_split[name]) - len(clean)
        by_split[name] = clean
    near = near_duplicate_mask([p.src for p in by_split["test"]], sorted(train_src), near_dup_threshold)
    by_split["test-clean"] = [p for p, dup in zip(by_split["test"], near) if not dup]
    counts = {
        "aligned": len(pairs),
        "dropped_by_rule": dict(sorted(dropped.items())),
        "duplicates_within_split": duplicates,
        "source_in_train_dropped": leaks,
        "test_near_duplicates_of_train": sum(near),
        "pairs": {name: len(items) for name, items in by_split.items()},
        "pages": {name: len({p.page for p in items}) for name, items in by_split.items()},
        "median_words": {
            name: {"src": _median_words([p.src for p in items]), "tgt": _median_words([p.tgt for p in items])}
            for name, items in by_split.items()
        },
    }
    return MTSplits(splits=by_split, counts=counts)


def _median_words(lines: Sequence[str]) -> float:
    return float(statistics.median(len(s.split()) for s in lines)) if lines else 0.0


def mt_config(
    name: str, src: str, tgt: str, rules: CleaningRules, split: HashSplit, near_dup_threshold: float
) -> dict:
    """Everything that determines a built translation corpus's content (the manifest's ``config``).

    Args:
        name: the corpus name (``libreoffice-<src>-<tgt>``).
        src: the source language.
        tgt: the target language.
        rules: the pair-cleaning rules.
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
    """
    return {
        "format": FORMAT_VERSION,
        "name": name,
        "task": "mt",
        "src": src,
        "tgt": tgt,
        "packages": [help_package(src), help_package(tgt)],
        "extraction": EXTRACTION,
        "cleaning": rules.describe(),
        "split": split.describe(),
        "test_clean": {"method": NEAR_DUP_METHOD, "threshold": near_dup_threshold,
                       "rule": "test pairs whose source is below the threshold against every train source"},
    }


def build_mt_corpus_from_trees(
    src_tree: Path,
    tgt_tree: Path,
    out_dir: Path,
    config: dict,
    rules: CleaningRules = CleaningRules(),
    split: HashSplit = HashSplit(),
    near_dup_threshold: float = 0.8,
    sources: list[dict] | None = None,
    started: float | None = None,
) -> dict:
    """Align two extracted help trees, make the splits and write ``out_dir``; return the manifest.

    ``config["src"]``/``config["tgt"]`` name the file suffixes. ``sources`` (package names, versions...) is
    copied into the manifest; ``build_seconds`` counts from ``started`` (a ``time.perf_counter()`` value,
    e.g. before the download) or from this call. No download happens here, so tests can feed small
    hand-made trees.

    Args:
        src_tree: the extracted help tree of the source language.
        tgt_tree: that of the target language.
        out_dir: the corpus folder written.
        config: the manifest's config (:func:`mt_config`).
        rules: the pair-cleaning rules.
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
        sources: what the inputs were (package, version, sha256...), copied into the manifest.
        started: a ``time.perf_counter()`` value ``build_seconds`` counts from; None: this call.
    """
    start = time.perf_counter() if started is None else started
    alignment = align_help_trees(src_tree, tgt_tree)
    result = make_mt_splits(alignment.pairs, rules, split, near_dup_threshold)
    if not result.splits["train"]:
        raise DataError(f"no training pairs left from {src_tree} and {tgt_tree}: do the trees hold the same pages?")
    src, tgt = config["src"], config["tgt"]
    texts: dict[str, list[str]] = {}
    for name in SPLITS:
        texts[f"{name}.{src}"] = [p.src for p in result.splits[name]]
        texts[f"{name}.{tgt}"] = [p.tgt for p in result.splits[name]]
    counts = {"units": {src: alignment.src_units, tgt: alignment.tgt_units}, "pages_aligned": alignment.pages,
              "unaligned_units": alignment.unaligned, **result.counts}
    manifest = {
        "name": config["name"],
        "task": "mt",
        "src": src,
        "tgt": tgt,
        "splits": list(SPLITS),
        "sources": sources or [],
        "license": "MPL-2.0 (LibreOffice help content)",
        "counts": counts,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - start, 2),
        "config": config,
    }
    return write_corpus(out_dir, texts, manifest)


def build_mt_corpus(
    name: str = "libreoffice-en-de",
    cache_dir: Path = DEFAULT_CACHE,
    *,
    deb_dir: Path | None = None,
    rules: CleaningRules = CleaningRules(),
    split: HashSplit = HashSplit(),
    near_dup_threshold: float = 0.8,
    force: bool = False,
) -> Path:
    """Build (or reuse) the translation corpus ``name`` under ``cache_dir``; return its folder.

    ``name`` is ``libreoffice-<src>-<tgt>`` (e.g. ``libreoffice-en-de``: English source, German target).
    The packages ``libreoffice-help-<lang>`` (``en`` -> ``en-us``) come from ``apt-get download`` (no
    root), or from ``deb_dir``, a folder where they were downloaded before. The folder is rebuilt only when
    it is missing, its manifest's config differs from the requested one, a file's sha256 does not match,
    or ``force`` is set. Raises :class:`DataError` with one actionable line when the packages cannot be had.

    Args:
        name: ``libreoffice-<src>-<tgt>``.
        cache_dir: where the corpus folder is built.
        deb_dir: a folder of the .deb files downloaded before; None: ``apt-get download``.
        rules: the pair-cleaning rules.
        split: the hashed train/valid/test split.
        near_dup_threshold: token-set Jaccard at or above which a test pair is a near-duplicate of train.
        force: rebuild even when current.
    """
    src, tgt = parse_mt_name(name)
    config = mt_config(name, src, tgt, rules, split, near_dup_threshold)
    out_dir = Path(cache_dir) / name
    with build_lock(out_dir):  # one builder at a time; a waiter then finds the result current
        if not force and is_current(out_dir, config):
            return out_dir
        packages = config["packages"]
        hint = "pass that folder as deb_dir=... (or use a folder of plain-text train/valid/test files)"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="litebench-debs-") as tmp_name:
            tmp = Path(tmp_name)
            debs = find_debs(packages, Path(deb_dir), hint) if deb_dir else apt_download(packages, tmp / "debs", hint)
            sources = []
            trees = []
            for pkg in packages:
                fields = deb_fields(debs[pkg])
                sources.append({"package": pkg, "version": fields.get("Version", "?"),
                                "source": fields.get("Source", ""), "deb": debs[pkg].name,
                                "sha256": sha256_file(debs[pkg])})
                trees.append(extract_deb(debs[pkg], tmp / pkg))
            build_mt_corpus_from_trees(
                trees[0], trees[1], out_dir, config, rules, split, near_dup_threshold, sources, started=start
            )
    return out_dir
