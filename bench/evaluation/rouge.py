"""ROUGE for the summarization task: ROUGE-1, ROUGE-2 and ROUGE-L F1 with Google's ``rouge-score`` (a
reimplementation of the Perl ROUGE-1.5.5 that the summarization literature reports).

Settings, stored beside every score as its ``rouge_settings`` string (BLEU carries sacreBLEU's signature the
same way): rouge-score's default tokenizer (lower-cased, every run of characters other than ``a-z0-9`` a
separator, so non-ASCII letters split words), the Porter stemmer on (for tokens longer than 3 characters, as
rouge-score does), no stop-word removal, ROUGE-L on the whole summary as one sequence (``rougeL``, not the
per-sentence ``rougeLsum``: a synopsis is one line), one reference per summary. The corpus figure is the mean
of the per-summary F1 scores, times 100; an empty summary scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_settings() -> str:
    """The settings string stored with every ROUGE score, e.g.
    ``rouge-score:0.1.2|rouge1,rouge2,rougeL|F1|stem:porter|tok:default|agg:mean|x100``."""
    # importlib.metadata (~60 modules): loaded only when a score is recorded
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("rouge-score")
    except PackageNotFoundError:  # pragma: no cover - the package is a dependency
        v = "?"
    return f"rouge-score:{v}|{','.join(ROUGE_TYPES)}|F1|stem:porter|tok:default|agg:mean|x100"


def sentence_rouge(hyps: Sequence[str], refs: Sequence[str],
                   types: Sequence[str] = ROUGE_TYPES) -> dict[str, list[float]]:
    """{rouge type: per-summary F1 in [0, 1]} for aligned hypotheses and references (``types``: a subset of
    ROUGE_TYPES, scored with the same settings; all three by default).

    Args:
        hyps: the summaries.
        refs: their references, aligned.
        types: the ROUGE types scored (a subset of ROUGE_TYPES).
    """
    from rouge_score import rouge_scorer  # rouge_score, nltk: loaded only when summaries are scored

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} summaries but {len(refs)} references")
    unknown = [t for t in types if t not in ROUGE_TYPES]
    if unknown or not types:
        raise ValueError(f"ROUGE types must be among {', '.join(ROUGE_TYPES)}, got {list(types)}")
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    out: dict[str, list[float]] = {t: [] for t in types}
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(ref, hyp)  # rouge-score's order: (target, prediction)
        for t in types:
            out[t].append(float(scores[t].fmeasure))
    return out


def rouge(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Corpus ROUGE-1/2/L F1 (x100, the mean over summaries), the settings string and n."""
    per = sentence_rouge(hyps, refs)
    n = len(hyps)
    result: dict[str, Any] = {t: round(100 * sum(v) / n, 4) if n else 0.0 for t, v in per.items()}
    result.update({"rouge_settings": rouge_settings(), "n": n})
    return result
