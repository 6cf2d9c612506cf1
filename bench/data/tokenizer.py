"""Subword tokenizer: one joint sentencepiece model per corpus, cached beside it as ``spm-<vocab>.model``.

Conventions (fairseq's dictionary layout, so embeddings and losses line up with the paper's code):
``bos = 0`` (``<s>``), ``pad = 1`` (``<pad>``), ``eos = 2`` (``</s>``), ``unk = 3`` (``<unk>``); subword pieces
follow from id 4. :meth:`Tokenizer.encode` adds no bos/eos (the model code decides where they go);
:meth:`Tokenizer.decode` drops bos/pad/eos. Normalisation is ``identity`` (plus whitespace squeezing), so
``decode(encode(s)) == s`` for any ``s`` without leading, trailing or repeated spaces whose characters
occur in the training data; sacreBLEU then scores detokenised text as the references are written.

Training is deterministic for given inputs and options: fixed random seed, a cap of
``input_sentence_size`` sampled sentences (seeded shuffle), and the options recorded in a sidecar
``spm-<vocab>.json`` with the sha256 of every input's training text; the model is retrained when any of them
changes. For translation the model is joint: trained on both sides of the train split.

The training text of a file is its lines exactly as the corpus reader reads them (``read_lines``: split at
``\\n`` alone, a trailing ``\\r`` and a leading byte-order mark removed), one per ``\\n``-ended line: no ``\\r``
or BOM piece can enter the vocabulary. For a well-formed file (UTF-8, LF, no BOM, a final line end) that is the
file's own bytes, and sentencepiece reads the file itself, as it always did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import sentencepiece as spm

from bench.data.corpus import Corpus
from bench.data.errors import DataError
from bench.data.manifest import build_lock
from bench.data.plaintext import read_lines

BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class TokenizerConfig:
    """How a sentencepiece model is trained. ``vocab_size`` counts the 4 special symbols."""

    vocab_size: int = 8000
    model_type: str = "bpe"  # "bpe" | "unigram"
    character_coverage: float = 1.0  # every character of the (Latin-script) training text gets a piece
    input_sentence_size: int = 1_000_000  # sentences sampled for training; enough for < 1 min on 2 cores
    max_sentence_length: int = 16384  # bytes; longer lines are skipped by sentencepiece
    byte_fallback: bool = False  # True: unseen characters become UTF-8 byte pieces instead of <unk>
    seed: int = 0
    num_threads: int = 2


class Tokenizer:
    """A loaded sentencepiece model with fairseq-style special ids (see the module docstring)."""

    def __init__(self, processor: spm.SentencePieceProcessor, path: Path | None = None) -> None:
        self.sp = processor
        self.path = path
        got = (self.sp.bos_id(), self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id())
        if got != (BOS_ID, PAD_ID, EOS_ID, UNK_ID):
            raise DataError(f"tokenizer {path} has special ids bos/pad/eos/unk = {got}, "
                            f"expected {(BOS_ID, PAD_ID, EOS_ID, UNK_ID)}: retrain it with train_tokenizer")
        self._special = frozenset({BOS_ID, PAD_ID, EOS_ID})

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Load a ``.model`` file written by :func:`train_tokenizer`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"missing tokenizer model {path}")
        return cls(spm.SentencePieceProcessor(model_file=str(path)), path)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def encode(self, text: str) -> list[int]:
        """Subword ids of ``text``, without bos or eos."""
        return self.sp.encode(text, out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; bos, pad and eos are ignored, unk decodes as `` ⁇ ``."""
        return self.sp.decode([int(i) for i in ids if int(i) not in self._special])

    def piece(self, i: int) -> str:
        """The subword string of id ``i`` (``▁`` marks a preceding space)."""
        return self.sp.id_to_piece(int(i))

    def __repr__(self) -> str:
        return f"Tokenizer({self.path}, vocab_size={self.vocab_size})"


def model_path(folder: Path, vocab_size: int) -> Path:
    """Where the tokenizer of a corpus folder lives: ``<folder>/spm-<vocab_size>.model``."""
    return Path(folder) / f"spm-{vocab_size}.model"


def _sidecar(model: Path) -> Path:
    return model.with_suffix(".json")


def _training_text(path: Path) -> bytes:
    """What the tokenizer learns from ``path``: its lines as the corpus reads them, each ended by ``\\n``."""
    return "".join(line + "\n" for line in read_lines(path)).encode("utf-8")


def _training_record(texts: Sequence[tuple[Path, bytes]], config: TokenizerConfig) -> dict:
    return {"config": asdict(config), "inputs": {p.name: hashlib.sha256(t).hexdigest() for p, t in texts},
            "sentencepiece": spm.__version__, "special_ids": {"bos": BOS_ID, "pad": PAD_ID, "eos": EOS_ID,
                                                                "unk": UNK_ID}}


def train_tokenizer(inputs: Sequence[Path], model: Path, config: TokenizerConfig = TokenizerConfig()) -> Tokenizer:
    """Train a sentencepiece model on the lines of ``inputs`` and write ``model`` (+ ``.vocab``, ``.json``).

    Files are written under temporary names and renamed, so a reader never sees half a model.

    Args:
        inputs: the text files trained on, one sentence per line.
        model: the model file written.
        config: vocabulary size, model type, seed and the other trainer settings.
    """
    inputs = [Path(p) for p in inputs]
    for p in inputs:
        if not p.is_file():
            raise DataError(f"missing tokenizer training file {p}")
    model = Path(model)
    model.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(model.parent, os.W_OK):
        raise DataError(f"cannot write the tokenizer into {model.parent}: pass a writable model_dir")
    texts = [(p, _training_text(p)) for p in inputs]
    record = _training_record(texts, config)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".spm-", dir=model.parent) as tmp:
        prefix = Path(tmp) / "spm"
        files = []  # a file whose bytes are its training text is read itself; another, as the text it holds
        for i, (p, text) in enumerate(texts):
            if p.stat().st_size != len(text) or p.read_bytes() != text:
                (Path(tmp) / f"in{i}").mkdir()
                p = Path(tmp) / f"in{i}" / p.name
                p.write_bytes(text)
            files.append(p)
        log = Path(tmp) / "train.log"
        spm.set_random_generator_seed(config.seed)
        try:
            with open(log, "w") as logstream:
                spm.SentencePieceTrainer.train(
                    input=[str(p) for p in files],
                    model_prefix=str(prefix),
                    vocab_size=config.vocab_size,
                    model_type=config.model_type,
                    character_coverage=config.character_coverage,
                    input_sentence_size=config.input_sentence_size,
                    shuffle_input_sentence=True,
                    max_sentence_length=config.max_sentence_length,
                    num_threads=config.num_threads,
                    normalization_rule_name="identity",
                    byte_fallback=config.byte_fallback,
                    bos_id=BOS_ID, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID,
                    logstream=logstream,
                )
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"sentencepiece training on {', '.join(p.name for p in inputs)} failed: {first}") from err
        record["train_seconds"] = round(time.perf_counter() - start, 2)
        os.replace(prefix.with_suffix(".vocab"), model.with_suffix(".vocab"))
        os.replace(prefix.with_suffix(".model"), model)
        side = Path(tmp) / "sidecar.json"
        side.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(side, _sidecar(model))
    return Tokenizer.load(model)


def _is_current(model: Path, inputs: Sequence[Path], config: TokenizerConfig) -> bool:
    if not model.is_file():
        return False
    try:
        stored = json.loads(_sidecar(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = _training_record([(p, _training_text(p)) for p in inputs], config)
    return all(stored.get(k) == json.loads(json.dumps(want[k])) for k in ("config", "inputs", "special_ids"))


def training_files(corpus: Corpus) -> list[Path]:
    """The files a corpus's tokenizer learns from: the train split, both sides for translation."""
    return list(corpus.paths["train"])


def get_tokenizer(
    corpus: Corpus, config: TokenizerConfig = TokenizerConfig(), model_dir: Path | None = None
) -> Tokenizer:
    """The corpus's tokenizer, trained on first use into ``model_dir`` (default: beside the corpus).

    Args:
        corpus: the corpus (its train split is trained on).
        config: the tokenizer's settings (vocabulary size...).
        model_dir: where the model is kept; None: the corpus folder.
    """
    inputs = training_files(corpus)
    model = model_path(model_dir or corpus.root, config.vocab_size)
    with build_lock(model):  # one trainer at a time; a waiter then finds the model current
        if _is_current(model, inputs, config):
            return Tokenizer.load(model)
        return train_tokenizer(inputs, model, config)


_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def get_tokenizer_capped(
    corpus: Corpus, config: TokenizerConfig = TokenizerConfig(), model_dir: Path | None = None
) -> tuple[Tokenizer, str | None]:
    """:func:`get_tokenizer`, with the vocabulary capped where the corpus is too small for the size asked for:
    sentencepiece then names the largest size the text supports, and that size is used. Returns the tokenizer
    and, when capped, a one-line note saying so (None otherwise).

    Args:
        corpus: the corpus (its train split is trained on).
        config: the tokenizer's settings; its vocabulary size is the one asked for.
        model_dir: where the model is kept; None: the corpus folder.
    """
    try:
        return get_tokenizer(corpus, config, model_dir), None
    except DataError as err:
        m = _TOO_HIGH.search(str(err))
        if not m or int(m.group(2)) < 5:
            raise
    cap = int(m.group(2))
    tok = get_tokenizer(corpus, replace(config, vocab_size=cap), model_dir)
    note = (f"corpus {corpus.name}: vocabulary capped at {cap} subwords (asked for {config.vocab_size}): "
            "its train split supports no more")
    return tok, note
