"""What the quality columns may claim: which runs failed to train, and which differences are significant.

Failed runs. A training run failed when its final validation NLL is above, or less than ``PLATEAU_NATS``
below, the unigram entropy of the target side of its training data (it has learnt little more than token
frequencies: the plateau; a post-norm run that ended 0.07 nats under it translated at BLEU 0.1), or more than
``DRIFT_NATS`` above the best validation it reached during training (it diverged or collapsed late). The
plateau is judged on the final NLL of the whole validation split; the drift on the final NLL of the sample the
run validated on during training (``final_sample_valid_nll``), so that both sides of that comparison are on one
sample: the whole split and the sample differ by a few hundredths of a nat, by family, which is a fair share of
the margin. A late rise while the training loss kept falling is overfitting, not a failure to train (the row is
ok and its reason says so: a long schedule without dropout overfits). The figures are in the train record
(``valid_nll``, ``best_valid_nll``, ``final_sample_valid_nll``,
``unigram_entropy``); older records without some of them are judged on what they carry, their curve included
(without the sample's final NLL, drift is judged on the whole split's). A row with a failed seed is
``failed``: it is named in the leaderboard, drawn hollow, and left out of every Pareto front.

Pairwise differences. For two rows A and B (each with one or more seeds), the difference of the seed-mean test BLEU
(summarization: ROUGE-L F1, the mean over summaries) and of the seed-mean validation NLL, with a 95% interval and a
p-value from a two-level paired bootstrap: each resample draws seeds with replacement for each row, then one set of
sentences with replacement shared by both rows (paired); BLEU is recomputed from sacreBLEU's per-sentence
statistics, ROUGE-L from the per-summary scores, NLL from the per-sentence (a language model: per-block) sums. The
interval is the 2.5-97.5 percentile of the resampled differences; the p-value is sacreBLEU's (the share of mean-
centred |differences| above the observed one, +1 smoothed; 1.0 where both rows tie in every resample). With one seed
per row the seed level does nothing and the test is sacreBLEU's ``--paired-bs`` exactly (same seed, same resamples;
but for that tie, to which sacreBLEU gives its floor p-value). The seed level makes the interval
honest about training noise, which a test-set bootstrap alone ignores; with three seeds it is coarse, and the table
says how many seeds each side had.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DRIFT_NATS = 0.1
OVERFIT_WINDOW = 25  # logged training losses (500 updates at the recipe's log_every 20) either side of the test
PLATEAU_NATS = 0.1  # a run must end at least this far below the unigram entropy to count as having trained
N_SAMPLES = 1000
SEED = 12345  # sacreBLEU's default (SACREBLEU_SEED)


# ---------------------------------------------------------------------------------------------- failures
def failed_reason(final: float | None, best: float | None, plateau: float | None,
                  final_sample: float | None = None) -> str | None:
    """Why a run with final validation NLL ``final`` (whole split) failed, or None: above the unigram
    ``plateau`` or less than PLATEAU_NATS below it, or its final NLL on the in-training sample (``final_sample``;
    ``final`` where unknown) more than DRIFT_NATS above its ``best`` in-training validation.

    Args:
        final: the final validation NLL on the whole split (nats per token).
        best: the best in-training validation NLL; None: unknown.
        plateau: the unigram entropy of the training targets; None: unknown.
        final_sample: the final NLL on the in-training sample; None: ``final`` stands for it.
    """
    if final is None or not math.isfinite(final):
        return "no finite final validation NLL"
    if plateau is not None and final > plateau:
        return f"final validation NLL {final:.2f} is above the unigram entropy {plateau:.2f} (the plateau)"
    if plateau is not None and final > plateau - PLATEAU_NATS:
        return (f"final validation NLL {final:.2f} is less than {PLATEAU_NATS} below the unigram entropy "
                f"{plateau:.2f} (the plateau: little learnt beyond token frequencies)")
    late = final if final_sample is None else final_sample
    where = "" if final_sample is None else " on the in-training sample"
    if best is not None and late > best + DRIFT_NATS:
        return f"final validation NLL{where} {late:.2f} is more than {DRIFT_NATS} above its best, {best:.2f}"
    return None


def overfit(curve: Any, window: int = OVERFIT_WINDOW) -> tuple[float, float] | None:
    """(mean training loss over the ``window`` logged steps up to the best in-training validation, the same over
    the last ``window``) when training loss kept falling after that best, by more than DRIFT_NATS: validation rose
    because the model fitted its training data ever closer (overfitting), not because training diverged or
    collapsed (then training loss rises too). None otherwise, or when the curve is too short to say."""
    if not isinstance(curve, (list, tuple)):
        return None
    rows = [e for e in curve if isinstance(e, dict) and not e.get("final")]
    valid = [e for e in rows if e.get("valid_nll") is not None]
    losses = [(e["step"], float(e["train_loss"])) for e in rows if e.get("train_loss") is not None]
    if not valid or len(losses) < 2 * window:
        return None
    best_step = min(valid, key=lambda e: e["valid_nll"])["step"]
    upto = [v for s, v in losses if s <= best_step][-window:]
    later = [v for s, v in losses if s > best_step]
    if len(upto) < window or len(later) < window:
        return None
    before, first, after = float(np.mean(upto)), float(np.mean(later[:window])), float(np.mean(later[-window:]))
    # falling through to the end: below the best's window, and not above the window just after the best (a
    # collapse that starts after the best rises from there, even when it ends under the earlier, steeper part)
    return (before, after) if after < before - DRIFT_NATS and after <= first else None


def _best_in_curve(curve: Any) -> float | None:
    if not isinstance(curve, (list, tuple)):
        return None
    vals = [e.get("valid_nll") for e in curve if isinstance(e, dict) and not e.get("final")]
    vals = [float(v) for v in vals if v is not None]
    return min(vals) if vals else None


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def row_status(train: pd.DataFrame, evals: pd.DataFrame | None = None) -> tuple[str, str | None]:
    """("ok" | "failed", reason) of one leaderboard row from its train (and eval) records, one per seed. The
    final validation NLL is the eval record's (whole split) where there is one, else the train record's. A seed
    whose only fault is the late rise and whose training loss kept falling (:func:`overfit`) trained: it is ok,
    and the reason names the overfitting."""
    reasons, notes = [], []
    final_by_seed = {}
    if evals is not None and not evals.empty:
        final_by_seed = {int(r["seed"]): _number(r.get("valid_nll")) for _, r in evals.iterrows()}
    for _, rec in train.sort_values("seed").iterrows():
        seed = int(rec["seed"])
        final = final_by_seed.get(seed, _number(rec.get("valid_nll")))
        best = _number(rec.get("best_valid_nll"))
        if best is None:
            best = _best_in_curve(rec.get("curve"))
        plateau, sample = _number(rec.get("unigram_entropy")), _number(rec.get("final_sample_valid_nll"))
        why = failed_reason(final, best, plateau, sample)
        fitted = overfit(rec.get("curve")) if why and "above its best" in why else None
        if fitted:
            notes.append(f"seed {seed}: overfit, not failed: {why}, while its training loss fell from "
                         f"{fitted[0]:.2f} to {fitted[1]:.2f} (means of {OVERFIT_WINDOW} logged steps)")
        elif why:
            reasons.append(f"seed {seed}: {why}")
    if reasons:
        return "failed", "; ".join(reasons + notes)
    return "ok", "; ".join(notes) or None


# -------------------------------------------------------------------------------------------- bootstrap
def _bleu(stats: np.ndarray) -> float:
    import sacrebleu  # sacrebleu: loaded only when BLEU is bootstrapped

    return sacrebleu.BLEU()._compute_score_from_stats(stats.tolist()).score


def _p_value(a: np.ndarray, b: np.ndarray, observed: float) -> float:
    """sacreBLEU's paired-bootstrap p-value: share of mean-centred |a - b| above |observed|, +1 smoothed; 1.0
    where A and B tie in every resample and on the data (the same system twice: no difference, where sacreBLEU's
    formula would give its floor, 1/(n+1))."""
    if observed == 0 and np.array_equal(a, b):
        return 1.0
    sample = np.abs(a - b)
    return float((np.sum(sample - sample.mean() > abs(observed)) + 1) / (len(sample) + 1))


def _indices(n: int, n_samples: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, rng.choice(n, size=(n_samples, n), replace=True)  # sacreBLEU's draw, first


def _seed_draws(rng: np.random.Generator, k: int, n_samples: int) -> np.ndarray:
    if k == 1:
        return np.zeros((n_samples, 1), dtype=int)  # nothing to resample: no draw, sacreBLEU's test exactly
    return rng.choice(k, size=(n_samples, k), replace=True)


def paired_bleu(
    stats_a: Sequence[np.ndarray], stats_b: Sequence[np.ndarray], n_samples: int = N_SAMPLES, seed: int = SEED
) -> dict[str, Any]:
    """Seed-mean corpus BLEU of A minus B, interval and p-value. ``stats_*``: one (sentences, 10) array of
    sacreBLEU statistics per seed, all on the same test sentences in the same order.

    Args:
        stats_a: A's statistics, one array per seed.
        stats_b: B's, on the same sentences.
        n_samples: bootstrap resamples.
        seed: the resampling's seed.
    """
    a = [np.asarray(s, dtype=np.int64) for s in stats_a]
    b = [np.asarray(s, dtype=np.int64) for s in stats_b]
    n = a[0].shape[0]
    if any(s.shape != (n, 10) for s in (*a, *b)):
        raise ValueError("BLEU statistics must be (sentences, 10) arrays on the same sentences")
    observed = float(np.mean([_bleu(s.sum(0)) for s in a]) - np.mean([_bleu(s.sum(0)) for s in b]))
    rng, idx = _indices(n, n_samples, seed)
    seeds_a, seeds_b = _seed_draws(rng, len(a), n_samples), _seed_draws(rng, len(b), n_samples)
    ra, rb = np.empty(n_samples), np.empty(n_samples)
    for i in range(n_samples):
        ra[i] = np.mean([_bleu(a[k][idx[i]].sum(0)) for k in seeds_a[i]])
        rb[i] = np.mean([_bleu(b[k][idx[i]].sum(0)) for k in seeds_b[i]])
    return _summary(observed, ra, rb)


def paired_nll(
    nll_a: Sequence[Sequence[float]],
    tok_a: Sequence[Sequence[int]],
    nll_b: Sequence[Sequence[float]],
    tok_b: Sequence[Sequence[int]],
    n_samples: int = N_SAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Seed-mean validation NLL (nats per token) of A minus B from per-sentence sums and token counts.

    Args:
        nll_a: A's per-sentence NLL sums (nats), one row per seed.
        tok_a: their token counts.
        nll_b: B's, on the same sentences.
        tok_b: their token counts.
        n_samples: bootstrap resamples.
        seed: the resampling's seed.
    """
    na, ta = np.asarray(nll_a, dtype=np.float64), np.asarray(tok_a, dtype=np.float64)
    nb, tb = np.asarray(nll_b, dtype=np.float64), np.asarray(tok_b, dtype=np.float64)
    if na.ndim != 2 or na.shape != ta.shape or nb.shape != tb.shape or na.shape[1] != nb.shape[1]:
        raise ValueError("per-sentence NLL and token counts must be (seeds, sentences) on the same sentences")
    observed = float((na.sum(1) / ta.sum(1)).mean() - (nb.sum(1) / tb.sum(1)).mean())
    rng, idx = _indices(na.shape[1], n_samples, seed)
    seeds_a, seeds_b = _seed_draws(rng, len(na), n_samples), _seed_draws(rng, len(nb), n_samples)
    per_a = na[:, idx].sum(-1) / ta[:, idx].sum(-1)  # (seeds, samples)
    per_b = nb[:, idx].sum(-1) / tb[:, idx].sum(-1)
    cols = np.arange(n_samples)[:, None]
    ra = per_a.T[cols, seeds_a].mean(1)
    rb = per_b.T[cols, seeds_b].mean(1)
    return _summary(observed, ra, rb)


def _summary(observed: float, ra: np.ndarray, rb: np.ndarray) -> dict[str, Any]:
    diffs = ra - rb
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": observed, "ci95": [float(lo), float(hi)], "p_value": _p_value(ra, rb, observed),
            "n_samples": len(diffs)}


# ------------------------------------------------------------------------------------------ the table
def _per_seed(evals: pd.DataFrame, key: str) -> list[Any]:
    if key not in evals.columns:
        return []
    return [v for v in evals.sort_values("seed")[key] if isinstance(v, (list, tuple)) and len(v)]


def paired_rouge(rouge_a: Sequence[Sequence[Sequence[float]]], rouge_b: Sequence[Sequence[Sequence[float]]],
                 n_samples: int = N_SAMPLES, seed: int = SEED) -> dict[str, Any]:
    """Seed-mean test ROUGE-L F1 (x100, the mean over summaries, as rouge-score reports a corpus) of A minus B
    from each seed's per-summary [ROUGE-1, ROUGE-2, ROUGE-L] F1: the NLL test's resampling with one unit of
    weight per summary.

    Args:
        rouge_a: A's per-summary [ROUGE-1, ROUGE-2, ROUGE-L] F1 in [0, 1], one list per seed.
        rouge_b: B's, on the same summaries.
        n_samples: bootstrap resamples.
        seed: the resampling's seed.
    """
    la = np.asarray(rouge_a, dtype=np.float64)[..., 2] * 100
    lb = np.asarray(rouge_b, dtype=np.float64)[..., 2] * 100
    return paired_nll(la, np.ones_like(la), lb, np.ones_like(lb), n_samples, seed)


def pairwise_table(records: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """For each pair of rows (default: every pair of rows whose eval records carry per-sentence data), the
    test-metric differences (BLEU for translation, ROUGE-L for summarization; a language model's test NLL is
    not kept per block, so none) and the validation-NLL differences, with intervals and p-values.
    ``records``: the report's records."""
    evals = records[records["stage"] == "eval"]
    if "compression" in evals.columns:
        evals = evals[evals["compression"].isna() | (evals["compression"] == "none")]
    data = {}
    for model, part in evals.groupby("model", sort=False):
        bleu, rouge = _per_seed(part, "test.bleu_stats"), _per_seed(part, "test.rouge_sentences")
        nll, tok = _per_seed(part, "valid_sentence_nll"), _per_seed(part, "valid_sentence_tokens")
        if bleu or rouge or nll:
            data[str(model)] = {"bleu": bleu, "rouge": rouge, "nll": nll, "tok": tok, "seeds": len(part)}
    if pairs is None:
        pairs = list(itertools.combinations(sorted(data), 2))
    rows = []
    for a, b in pairs:
        if a not in data or b not in data:
            continue
        da, db = data[a], data[b]
        row: dict[str, Any] = {"a": a, "b": b, "seeds_a": da["seeds"], "seeds_b": db["seeds"]}
        if da["bleu"] and db["bleu"] and len(da["bleu"][0]) == len(db["bleu"][0]):
            row["bleu"] = paired_bleu(da["bleu"], db["bleu"])
        if da["rouge"] and db["rouge"] and len(da["rouge"][0]) == len(db["rouge"][0]):
            row["rouge_l"] = paired_rouge(da["rouge"], db["rouge"])
        if da["nll"] and db["nll"] and len(da["nll"][0]) == len(db["nll"][0]):
            row["valid_nll"] = paired_nll(da["nll"], da["tok"], db["nll"], db["tok"])
        rows.append(row)
    return rows


def render_pairwise(rows: list[dict[str, Any]], name=lambda m: m) -> list[str]:
    """Markdown lines of the pairwise table (empty when there is nothing to compare)."""
    if not rows:
        return []

    def cell(r: dict[str, Any] | None, fmt: str) -> list[str]:
        if not r:
            return ["–", "–", "–"]
        lo, hi = r["ci95"]
        return [f"{r['diff']:+{fmt}}", f"[{lo:+{fmt}}, {hi:+{fmt}}]", f"{r['p_value']:.3f}"]

    # the test metric's columns: the one the rows carry (summarization's ROUGE-L, else BLEU), none for a
    # language model (its table compares validation NLL only)
    test = next((k for k in ("rouge_l", "bleu") if any(k in r for r in rows)), None)
    # NLL first: at these quality levels one nat is about 20 BLEU, so the test metric magnifies differences
    label = {"rouge_l": " ΔROUGE-L (A−B) | 95% interval | p |", "bleu": " ΔBLEU (A−B) | 95% interval | p |"}
    out = [
        f"| A | B | seeds A/B | Δvalid NLL (A−B) | 95% interval | p |{label.get(test, '')}",
        "|:---|:---|---:|" + "---:|" * (6 if test else 3),
    ]
    for r in rows:
        cells = [name(r["a"]), name(r["b"]), f"{r['seeds_a']}/{r['seeds_b']}"]
        cells += cell(r.get("valid_nll"), ".3f") + (cell(r.get(test), ".2f") if test else [])
        out.append("| " + " | ".join(cells) + " |")
    return out


def pairwise_note(rows: list[dict[str, Any]]) -> str:
    """What the pairwise table compares and how (the paragraph under it)."""
    if any("rouge_l" in r for r in rows):
        test = "ROUGE-L F1 x100 on test, the mean over summaries, beam as above"
        units, one = "test summaries or validation sentences", "a paired bootstrap over them"
    elif any("bleu" in r for r in rows):
        test, units, one = "BLEU on test, beam as above", "test or validation sentences", "sacreBLEU's paired bootstrap"
    else:
        test = "no test column: a language model's test NLL is not kept per block"
        units, one = "validation blocks", "a paired bootstrap over them"
    return (f"Differences of the seed means (A minus B; NLL on the whole validation split first, lower is "
            f"better; then {test}). Interval and p-value: a two-level paired bootstrap, {N_SAMPLES} resamples "
            f"(seeds drawn with replacement per row, then {units} shared by both rows); with one seed per row it is "
            f"{one}. p < 0.05 with an interval that excludes 0 is what the README calls significant.")


def default_pairs(df: pd.DataFrame, records: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """The pairs the pairwise table compares: every two families' primary rows, then each variant row
    against its family's primary row, then the rows of one variant across families (``records``' ``variant``
    keys ``<family>-<kind>``: e.g. ``transformer-searched`` against ``lite_transformer-searched``, the searched
    shapes compared among themselves as the primary rows are; rows that trained, status ok)."""
    base = df[(df["compression"] == "none") & df["status"].notna()]
    names = {str(m): str(f) for m, f in zip(base["model"], base["family"])}
    primary = sorted(m for m, f in names.items() if m == f)
    pairs = [(a, b) for i, a in enumerate(primary) for b in primary[i + 1 :]]
    pairs += [(m, f) for m, f in sorted(names.items()) if m != f and f in names]
    if records is None or "variant" not in records:
        return pairs
    ok = {str(m) for m, st in zip(base["model"], base["status"]) if st == "ok"}  # a failed row is not compared
    kinds: dict[str, list[tuple[str, str]]] = {}  # kind -> [(family, row label)]
    seen = records[records["variant"].notna()][["variant", "family", "model"]].drop_duplicates()
    for key, fam, label in seen.itertuples(index=False):
        key, fam, label = str(key), str(fam), str(label)
        if label in ok and names[label] == fam and key.startswith(f"{fam}-"):
            kinds.setdefault(key[len(fam) + 1:], []).append((fam, label))
    for kind in sorted(kinds):
        rows = [label for _, label in sorted(set(kinds[kind]))]
        pairs += [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    return pairs
