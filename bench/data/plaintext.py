"""Read corpora that are plain-text files in a folder: the suite's own builds and users' own data.

Layout (fairseq's, e.g. IWSLT'14 de-en as ``prepare-iwslt14.sh`` leaves it)::

    translation:        train.de train.en  valid.de valid.en  test.de test.en  [test-clean.de test-clean.en]
    language modelling: train.txt valid.txt test.txt

UTF-8, one sentence per line, line ``i`` of ``<split>.<src>`` aligned with line ``i`` of ``<split>.<tgt>``.
Lines end at ``\\n`` alone (one ``\\r`` before it is stripped, so CRLF files read as LF ones); other characters
that Python's ``str.splitlines`` breaks at (form feed, U+0085, U+2028...) stay inside their sentence, so one of
them cannot shift the pairs. A leading UTF-8 byte-order mark is removed; nothing else is changed, so tokenised
or lower-cased data stays as prepared. The tokenizer learns from these same lines (:func:`text_lines`). Any
problem raises :class:`DataError` with one line naming the file (and the line where there is one): sides of a
split with different line counts, a pair with one side empty and the other not, bytes that are not UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.data.errors import DataError

REQUIRED_SPLITS = ("train", "valid", "test")
BOM = "\ufeff"
OPTIONAL_SPLITS = ("test-clean",)


@dataclass(frozen=True)
class ParallelSplit:
    """One split of a translation corpus: aligned source and target sentences."""

    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.src, self.tgt))


def _check_folder(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"corpus folder {path} {what}")
    return path


def text_lines(text: str) -> list[str]:
    """The lines of a corpus file's text: split at ``\\n`` alone, one trailing ``\\r`` stripped from each, a
    leading byte-order mark removed; a final ``\\n`` ends the last line (it starts no empty one)."""
    lines = text.removeprefix(BOM).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (see :func:`text_lines`); DataError if missing, unreadable, not UTF-8
    (naming the line) or empty."""
    if not path.is_file():
        raise DataError(f"missing corpus file {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path} is not UTF-8 text (line {line}, byte {err.start}): convert it with iconv") from err
    lines = text_lines(text)
    if not any(line.strip() for line in lines):
        raise DataError(f"corpus file {path} is empty")
    return lines


def parallel_splits(path: Path, src: str, tgt: str) -> tuple[str, ...]:
    """The splits present in a translation folder: train, valid, test, plus test-clean if both sides exist.

    Args:
        path: the folder.
        src: the source language suffix.
        tgt: the target language suffix.
    """
    path = _check_folder(path)
    optional = tuple(s for s in OPTIONAL_SPLITS if (path / f"{s}.{src}").is_file() and (path / f"{s}.{tgt}").is_file())
    return REQUIRED_SPLITS + optional


def load_parallel_dir(path: Path, src: str = "de", tgt: str = "en") -> dict[str, ParallelSplit]:
    """Load ``<split>.<src>``/``<split>.<tgt>`` for train, valid, test (and test-clean when present).

    Returns {split: ParallelSplit}. Raises DataError when the folder or a file is missing, a file is empty,
    the two sides of a split have different line counts, or a pair has one side empty and the other not.

    Args:
        path: the folder.
        src: the source language suffix.
        tgt: the target language suffix.
    """
    if src == tgt:
        raise DataError(f"source and target language are both {src!r}: pass src= and tgt= for {path}")
    out: dict[str, ParallelSplit] = {}
    for split in parallel_splits(path, src, tgt):
        s_path, t_path = Path(path) / f"{split}.{src}", Path(path) / f"{split}.{tgt}"
        s_lines, t_lines = read_lines(s_path), read_lines(t_path)
        if len(s_lines) != len(t_lines):
            raise DataError(f"{s_path} has {len(s_lines)} lines but {t_path} has {len(t_lines)}: "
                            "the sides must align line by line")
        _check_both_sides(s_path, s_lines, t_path, t_lines)
        out[split] = ParallelSplit(s_lines, t_lines)
    return out


def _check_both_sides(s_path: Path, s_lines: list[str], t_path: Path, t_lines: list[str]) -> None:
    """DataError naming the first pair with one side empty (or blank) and the other not."""
    for i, (s, t) in enumerate(zip(s_lines, t_lines), 1):
        if bool(s.strip()) != bool(t.strip()):
            empty, full = (s_path, t_path) if t.strip() else (t_path, s_path)
            raise DataError(f"{empty} line {i} is empty but {full} line {i} is not: every pair needs both sides "
                            "(fill it in, or delete the line from both files)")


def load_lm_dir(path: Path) -> dict[str, list[str]]:
    """Load ``train.txt``, ``valid.txt``, ``test.txt``: {split: lines}. DataError if missing or empty."""
    path = _check_folder(path)
    return {split: read_lines(path / f"{split}.txt") for split in REQUIRED_SPLITS}
