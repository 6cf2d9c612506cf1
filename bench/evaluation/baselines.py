"""The floors a trained model must clear, computed from the corpus alone, scored exactly as the models are.

- Summarization: **lead-k**, the first k whitespace-separated words of the description (as stored in the
  corpus files, i.e. detokenized) as its synopsis: the extractive baseline every summarization paper reports.
  Two choices of k: ``lead-k``, the k in 1..30 with the highest mean ROUGE-L F1 against the *validation*
  synopses (ties: the smaller k; test is never looked at), and ``lead-median``, the median word count of the
  *train* synopses (rounded half up). Both are scored with bench.evaluation.rouge's ``rouge()`` on ``test``
  and ``test-clean`` (the models' settings string beside the scores), with the per-summary [ROUGE-1, ROUGE-2,
  ROUGE-L] F1 on test as the model evaluations keep them (``test.rouge_sentences``), so that the leaderboard's
  paired bootstrap compares a model with lead-k summary by summary.
- Translation: **copy the source**, the test source sentence itself as its translation, scored by
  sacreBLEU exactly as bench.evaluation.evaluate scores a model (``bleu_chrf``: 13a, mixed case, signatures).
- Language modelling: the unigram plateau, already in every train record (``unigram_entropy``, the
  validation NLL of a model of token frequencies alone); :func:`unigram_plateau` gathers it.

Every function reads a corpus *folder* (``<split>.src``/``<split>.tgt``, or ``<split>.<lang>``, the layout of
bench.data.corpus); :func:`corpus_folder` finds a built corpus by name without building it.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data.corpus import Corpus, get_corpus
from bench.data.manifest import DEFAULT_CACHE, sha256_file
from bench.errors import BenchError
from bench.evaluation.rouge import rouge, rouge_settings, sentence_rouge

#: The k lead-k is chosen among.
LEAD_KS = tuple(range(1, 31))
LEAD_RULE = ("the k in 1..30 with the highest mean ROUGE-L F1 of lead-k against the validation synopses "
             "(ties: the smaller k)")
MEDIAN_RULE = "the median word count of the train synopses, rounded half up"
COPY_RULE = "the test source sentence itself as its translation"
UNIGRAM_RULE = ("the unigram entropy of the training targets (nats per token): the validation NLL of a model "
                "of token frequencies alone, the plateau a run that learnt nothing else stays on")


def lead_words(source: str, k: int) -> str:
    """The first ``k`` whitespace-separated words of ``source``, joined by single spaces."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return " ".join(source.split()[:k])


def lead_curve(sources: Sequence[str], refs: Sequence[str], ks: Sequence[int] = LEAD_KS) -> dict[int, float]:
    """{k: mean ROUGE-L F1 x100 of lead-k against ``refs``} (the same rouge-score settings as every score).

    Args:
        sources: the descriptions.
        refs: their reference synopses, aligned.
        ks: the lead lengths tried, in words.
    """
    if not sources:
        raise ValueError("no (source, reference) pairs to choose k on")
    out = {}
    for k in ks:
        per = sentence_rouge([lead_words(s, k) for s in sources], refs, types=("rougeL",))["rougeL"]
        out[int(k)] = 100 * math.fsum(per) / len(per)
    return out


def choose_k(curve: dict[int, float]) -> int:
    """The k of ``curve`` with the highest mean ROUGE-L; ties go to the smaller k."""
    return min(curve, key=lambda k: (-curve[k], k))


def median_k(refs: Sequence[str]) -> tuple[int, float]:
    """(k, the median itself): the median word count of ``refs`` rounded half up, at least 1."""
    words = [len(r.split()) for r in refs]
    if not words:
        raise ValueError("no references to take the median length of")
    median = float(statistics.median(words))
    return max(1, math.floor(median + 0.5)), median


def score_lead(splits: dict[str, Any], k: int) -> dict[str, Any]:
    """lead-``k`` on ``test`` (with ``rouge_sentences``) and ``test_clean`` (when the corpus has it), each as a
    model evaluation records it: rouge1, rouge2, rougeL, rouge_settings, n."""
    out: dict[str, Any] = {}
    for split in ("test", "test-clean"):
        if split not in splits:
            continue
        hyps = [lead_words(s, k) for s in splits[split].src]
        refs = list(splits[split].tgt)
        scores = rouge(hyps, refs)
        if split == "test":  # per summary: [ROUGE-1, ROUGE-2, ROUGE-L] F1, rounded as eval records keep them
            per = sentence_rouge(hyps, refs)
            scores["rouge_sentences"] = [[round(v, 5) for v in row] for row in zip(*per.values())]
        out[split.replace("-", "_")] = scores
    return out


def corpus_folder(name_or_dir: str | Path, cache_dir: Path | None = None) -> Path:
    """A corpus folder: ``name_or_dir`` itself when it is a folder, else the built corpus of that name under the
    data cache (``LITEBENCH_DATA``, default .cache/data). Never builds one: a corpus that is not there is one
    clear line."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    built = cache / str(name_or_dir)
    if "/" not in str(name_or_dir) and built.is_dir():
        return built
    raise BenchError(f"corpus {str(name_or_dir)!r} is neither a folder nor built under {cache} (training or "
                     "evaluating a model on it builds it; or pass --corpus FOLDER)")


def corpus_digest(corpus: Corpus) -> dict[str, Any]:
    """The SHA-256 of every file of the corpus's splits, and one digest over them all (name and hash, sorted)."""
    files = {p.name: sha256_file(p) for paths in corpus.paths.values() for p in paths}
    whole = hashlib.sha256("".join(f"{n} {h}\n" for n, h in sorted(files.items())).encode()).hexdigest()
    return {"corpus_digest": f"sha256:{whole}", "corpus_files": dict(sorted(files.items()))}


def _open(corpus_dir: Path | str, task: str) -> Corpus:
    path = Path(corpus_dir)
    if not path.is_dir():
        raise BenchError(f"corpus folder {path} does not exist")
    return get_corpus(path, task=task)  # a folder: read as it is, never built


def lead_baseline(corpus_dir: Path | str) -> dict[str, Any]:
    """Both lead baselines of a summarization corpus folder: k chosen on validation (``lead-k``) and the train
    synopses' median length (``lead-median``), each scored on test and test-clean as the models are; the
    validation curve k -> ROUGE-L, the rules, the settings and the corpus's digest."""
    corpus = _open(corpus_dir, "sum")
    splits = corpus.load()
    valid = splits["valid"]
    curve = lead_curve(valid.src, valid.tgt)
    k_lead = choose_k(curve)
    k_median, median = median_k(splits["train"].tgt)
    rows = [
        {"name": "lead-k", "k": k_lead, "rule": LEAD_RULE, "valid_rougeL": round(curve[k_lead], 4),
         **score_lead(splits, k_lead)},
        {"name": "lead-median", "k": k_median, "rule": MEDIAN_RULE, "median_words": median,
         "valid_rougeL": round(curve[k_median], 4) if k_median in curve else None, **score_lead(splits, k_median)},
    ]
    return {
        "kind": "lead",
        "task": "sum",
        "corpus": corpus.name,
        **corpus_digest(corpus),
        "selection": LEAD_RULE,
        "median_rule": MEDIAN_RULE,
        "k_lead": k_lead,
        "k_median": k_median,
        "valid_n": len(valid),
        "valid_rougeL": {str(k): round(v, 4) for k, v in curve.items()},
        "rouge_settings": rouge_settings(),
        "baselines": rows,
    }


def copy_source_bleu(corpus_dir: Path | str) -> dict[str, Any]:
    """BLEU and chrF of the source sentence as its own translation on test and test-clean, with sacreBLEU's
    signatures (bench.evaluation.evaluate's ``bleu_chrf``: the models' scoring exactly)."""
    from bench.evaluation.evaluate import bleu_chrf  # sacrebleu, torch: loaded only for the copy-source baseline

    corpus = _open(corpus_dir, "mt")
    splits = corpus.load()
    scores = {split.replace("-", "_"): bleu_chrf(splits[split].src, splits[split].tgt)
              for split in ("test", "test-clean") if split in splits}
    return {"kind": "copy-source", "task": "mt", "corpus": corpus.name, "src": corpus.src, "tgt": corpus.tgt,
            **corpus_digest(corpus), "rule": COPY_RULE, **scores}


def unigram_plateau(train_records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The unigram plateau the train records carry (``unigram_entropy``), per model and overall (the mean; the
    models of one corpus and tokenizer share it), with its perplexity."""
    by_model: dict[str, list[float]] = {}
    for rec in train_records:
        value = rec.get("unigram_entropy")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            by_model.setdefault(str(rec.get("model")), []).append(float(value))
    if not by_model:
        raise BenchError("no train record carries a unigram entropy (the plateau): train a model first")
    values = [v for vs in by_model.values() for v in vs]
    nats = math.fsum(values) / len(values)
    return {"kind": "unigram", "task": "lm", "rule": UNIGRAM_RULE, "unigram_entropy": round(nats, 6),
            "ppl": round(math.exp(nats), 4), "spread": round(max(values) - min(values), 6),
            "by_model": {m: round(math.fsum(v) / len(v), 6) for m, v in sorted(by_model.items())}}
