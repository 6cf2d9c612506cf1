"""Resolve a corpus by name (built into the cache on first use) or by folder (the user's own plain text).

Example::

    corpus = get_corpus("libreoffice-en-de")          # builds <repo>/.cache/data/libreoffice-en-de once
    corpus.path("train", "de")                        # .cache/data/libreoffice-en-de/train.de
    get_corpus("data/iwslt14.tokenized.de-en").src    # "de": a folder with train.de/train.en reads de -> en
    get_corpus("sotu").path("valid")                  # .cache/data/sotu/valid.txt
    get_corpus("debian-descriptions").path("test", "tgt")  # summarization: <split>.src -> <split>.tgt
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.data.errors import DataError
from bench.data.lm_corpus import LM_CORPORA, build_lm_corpus
from bench.data.manifest import DEFAULT_CACHE, read_manifest
from bench.data.mt_corpus import MT_CORPORA, build_mt_corpus, parse_mt_name
from bench.data.plaintext import (
    REQUIRED_SPLITS,
    ParallelSplit,
    load_lm_dir,
    load_parallel_dir,
    parallel_splits,
)
from bench.data.sum_corpus import SUM_CORPORA, build_sum_corpus

Task = Literal["mt", "lm", "sum"]


@dataclass(frozen=True)
class Corpus:
    """Where a corpus's splits are and which way it translates.

    ``paths[split]`` is ``(source file, target file)`` for translation and ``(text file,)`` for language
    modelling (summarization, ``sum``, is laid out as translation from ``src`` to ``tgt``). ``src``/``tgt``
    are None for language modelling. ``manifest`` is the parsed
    ``manifest.json`` of a built corpus, or None for a user's folder without one.
    """

    name: str
    task: Task
    root: Path
    paths: dict[str, tuple[Path, ...]]
    src: str | None = None
    tgt: str | None = None
    manifest: dict | None = field(default=None, repr=False)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.paths)

    def path(self, split: str, lang: str | None = None) -> Path:
        """The file of ``split``: for translation, the side ``lang`` (default: the source)."""
        if split not in self.paths:
            raise DataError(f"corpus {self.name} has no split {split!r} (it has {', '.join(self.paths)})")
        if self.task == "lm":
            return self.paths[split][0]
        sides = {self.src: 0, self.tgt: 1}
        if (lang or self.src) not in sides:
            raise DataError(f"corpus {self.name} is {self.src}-{self.tgt}, it has no language {lang!r}")
        return self.paths[split][sides[lang or self.src]]

    def load(self) -> dict[str, ParallelSplit] | dict[str, list[str]]:
        """Read every split: {split: ParallelSplit} for translation, {split: lines} for language modelling."""
        if self.task == "lm":
            return load_lm_dir(self.root)
        assert self.src and self.tgt
        return load_parallel_dir(self.root, self.src, self.tgt)


def _is_name(name_or_dir: str | Path) -> bool:
    return isinstance(name_or_dir, str) and (
        name_or_dir in LM_CORPORA or name_or_dir in SUM_CORPORA or name_or_dir.startswith("libreoffice-")
    )


def get_corpus(
    name_or_dir: str | Path,
    task: Task | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    *,
    src: str | None = None,
    tgt: str | None = None,
) -> Corpus:
    """A built-in corpus by name, built under ``cache_dir`` if needed, or a folder of plain-text splits.

    Names: ``libreoffice-en-de``, ``libreoffice-en-fr`` (translation; any ``libreoffice-<src>-<tgt>``),
    ``sotu`` (language modelling) and ``debian-descriptions`` (summarization). ``task`` defaults to the name's;
    for a folder, to its manifest's, else ``"lm"`` when it has ``train.txt``, ``"sum"`` when it has
    ``train.src`` and ``train.tgt`` (read from ``src`` to ``tgt``), and ``"mt"`` otherwise. For a translation
    folder ``src``/``tgt`` default to its manifest's, else to de -> en when ``train.de`` and ``train.en`` exist;
    otherwise pass them (given one, the other is the folder's only other ``train.*`` language). A named
    translation corpus may be read reversed (``src="de"`` for ``libreoffice-en-de``); its leak filter and
    test-clean split stay defined on the name's source side.

    Args:
        name_or_dir: a built-in corpus name or a folder of plain-text splits.
        task: mt, lm or sum; None: the name's, or the folder's (as above).
        cache_dir: where built-in corpora are built (default: .cache/data or LITEBENCH_DATA).
        src: the source language (translation) or side; None: as above.
        tgt: the target language or side; None: as above.
    """
    if _is_name(name_or_dir):
        return _named(str(name_or_dir), task, Path(cache_dir), src, tgt)
    root = Path(name_or_dir).expanduser()
    if not root.is_dir():
        known = ", ".join((*MT_CORPORA, *LM_CORPORA, *SUM_CORPORA))
        raise DataError(f"corpus {str(name_or_dir)!r} is neither a built-in name ({known}) nor an existing folder")
    return _folder(root, task, src, tgt)


def _named(name: str, task: Task | None, cache_dir: Path, src: str | None, tgt: str | None) -> Corpus:
    if name in SUM_CORPORA:
        if task not in (None, "sum"):
            raise DataError(f"{name} is a summarization corpus: pass task='sum'")
        return _folder(build_sum_corpus(name, cache_dir), "sum", src or "src", tgt or "tgt", name=name)
    if name in LM_CORPORA:
        if task not in (None, "lm"):
            raise DataError(f"{name} is a language-modelling corpus: pass task='lm'")
        root = build_lm_corpus(name, cache_dir)
        return _folder(root, "lm", None, None, name=name)
    if task not in (None, "mt"):
        raise DataError(f"{name} is a translation corpus: pass task='mt'")
    base_src, base_tgt = parse_mt_name(name)
    pair = {base_src: base_tgt, base_tgt: base_src}
    if src is None and tgt is None:
        want = (base_src, base_tgt)
    elif tgt is None:
        want = (str(src), pair.get(str(src), ""))
    elif src is None:
        want = (pair.get(tgt, ""), tgt)
    else:
        want = (src, tgt)
    if set(want) != {base_src, base_tgt} or want[0] == want[1]:
        raise DataError(f"{name} holds {base_src} and {base_tgt}, not {want[0]}-{want[1]}")
    root = build_mt_corpus(name, cache_dir)
    return _folder(root, "mt", *want, name=name)


def _folder(root: Path, task: Task | None, src: str | None, tgt: str | None, name: str | None = None) -> Corpus:
    manifest = read_manifest(root)
    if task is None:
        task = (manifest or {}).get("task") or ("lm" if (root / "train.txt").is_file() else "mt")
        if task == "mt" and not manifest and (root / "train.src").is_file() and (root / "train.tgt").is_file():
            task = "sum"  # a summarization folder: train.src/train.tgt, valid.*, test.*
    if task == "sum":
        src, tgt = src or "src", tgt or "tgt"
    if task == "lm":
        paths = {split: (root / f"{split}.txt",) for split in REQUIRED_SPLITS}
        src = tgt = None
    else:
        src, tgt = _languages(root, manifest, src, tgt)
        paths = {split: (root / f"{split}.{src}", root / f"{split}.{tgt}")
                 for split in parallel_splits(root, src, tgt)}
    for files in paths.values():
        for f in files:
            if not f.is_file():
                raise DataError(f"missing corpus file {f}")
    return Corpus(name=name or (manifest or {}).get("name") or root.name, task=task, root=root, paths=paths,
                  src=src, tgt=tgt, manifest=manifest)


def _languages(root: Path, manifest: dict | None, src: str | None, tgt: str | None) -> tuple[str, str]:
    if src and tgt:
        return src, tgt
    found = sorted(p.suffix[1:] for p in root.glob("train.*") if p.suffix not in (".txt", ".json", ".model"))
    if src or tgt:
        given = src or tgt
        others = [lang for lang in found if lang != given]
        if given in found and len(others) == 1:
            return (given, others[0]) if src else (others[0], given)
    elif manifest and manifest.get("src") and manifest.get("tgt"):
        return manifest["src"], manifest["tgt"]
    elif {"de", "en"} <= set(found):
        return "de", "en"
    langs = ", ".join(found) or "none"
    raise DataError(f"cannot tell the languages of {root} (train.* suffixes: {langs}): pass src= and tgt=")
