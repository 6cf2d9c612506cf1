"""Corpora and tokenizers for the benchmarks, built from what package registries deliver, or read from
the user's own plain-text files.

* Translation: :func:`build_mt_corpus` (LibreOffice help, Debian packages; ``libreoffice-en-de``,
  ``libreoffice-en-fr``), :func:`load_parallel_dir` for ``train.<src>``/``train.<tgt>``... folders.
* Language modelling: :func:`build_lm_corpus` (State of the Union addresses, npm; ``sotu``),
  :func:`load_lm_dir` for ``train.txt``/``valid.txt``/``test.txt`` folders.
* Summarization: :func:`build_sum_corpus` (Debian's package descriptions -> synopses, from apt's index;
  ``debian-descriptions``); folders with ``train.src``/``train.tgt``, ``valid.*``, ``test.*``.
* :func:`get_corpus` resolves a name or a folder; :func:`get_tokenizer` trains or loads its joint
  sentencepiece model (bos=0, pad=1, eos=2, unk=3).

Every failure is a :class:`DataError` whose message is one actionable line.
"""

from bench.data.cleaning import CleaningRules, normalize_text
from bench.data.corpus import Corpus, get_corpus
from bench.data.errors import DataError
from bench.data.libreoffice import align_help_trees, extract_paragraphs
from bench.data.lm_corpus import LM_CORPORA, build_lm_corpus, split_sentences
from bench.data.mt_corpus import MT_CORPORA, build_mt_corpus, build_mt_corpus_from_trees, make_mt_splits
from bench.data.near_duplicates import near_duplicate_mask
from bench.data.plaintext import ParallelSplit, load_lm_dir, load_parallel_dir
from bench.data.splitting import HashSplit
from bench.data.sum_corpus import SUM_CORPORA, build_sum_corpus, make_sum_splits
from bench.data.tokenizer import Tokenizer, TokenizerConfig, get_tokenizer, train_tokenizer

__all__ = [
    "LM_CORPORA",
    "MT_CORPORA",
    "SUM_CORPORA",
    "CleaningRules",
    "Corpus",
    "DataError",
    "HashSplit",
    "ParallelSplit",
    "Tokenizer",
    "TokenizerConfig",
    "align_help_trees",
    "build_lm_corpus",
    "build_mt_corpus",
    "build_mt_corpus_from_trees",
    "build_sum_corpus",
    "extract_paragraphs",
    "get_corpus",
    "get_tokenizer",
    "load_lm_dir",
    "load_parallel_dir",
    "make_mt_splits",
    "make_sum_splits",
    "near_duplicate_mask",
    "normalize_text",
    "split_sentences",
    "train_tokenizer",
]
