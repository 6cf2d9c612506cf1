"""The floors beside the models: what ``python -m bench baseline`` left in ``<results>/baselines/``.

- Summarization (``lead.json``): rows ``lead-k (k=N)`` and ``lead-median (k=M)`` in the leaderboard, family
  and status ``baseline``, their ROUGE on test and test-clean and nothing else (no MACs, parameters, latency,
  seeds); each family's primary row against lead-k in the pairwise table and in the CSV's LEAD_COLUMNS
  (ΔROUGE-L, the suite's paired bootstrap over the per-summary scores, lead-k a single deterministic "seed"); a
  sentence stating the baseline and how k was chosen; lead-k as a horizontal reference line in the quality figures.
- Translation (``copy.json``) and language modelling (``unigram.json``): one sentence beside the table, the
  copy-source BLEU or the unigram plateau.

A baseline row is never a model: it is not ranked, never on a Pareto front (the figures drop it), never a
failed run, and the across-budget and across-task summaries read families only. Without a ``baselines/``
folder nothing here adds anything: the report is exactly what it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.evaluation.rouge import ROUGE_TYPES
from bench.report.columns import present
from bench.report.quality import PLATEAU_NATS, paired_rouge

FOLDER = "baselines"
STATUS = "baseline"  # the status and the family of a baseline row
RECORDS = {"sum": "lead", "mt": "copy", "lm": "unigram"}  # task -> the record its leaderboard reads
KINDS = {"lead": "lead", "copy": "copy-source", "unigram": "unigram"}  # record -> the kind it says it is


def read_baseline(results_dir: Path | str, kind: str) -> dict[str, Any] | None:
    """The record ``<results_dir>/baselines/<kind>.json`` (``kind``: lead, copy, unigram), or None without one. A
    record that does not parse is one clear line naming it."""
    path = Path(results_dir) / FOLDER / f"{kind}.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path} is not a baseline record ({exc}); rebuild it with `python -m bench baseline`") \
            from None
    if not isinstance(rec, dict) or rec.get("kind") != KINDS[kind]:
        raise BenchError(f"{path} is not a {KINDS[kind]} baseline record; rebuild it with `python -m bench baseline`")
    return rec


def row_name(baseline: dict[str, Any]) -> str:
    """``lead-k (k=7)``: a baseline's name in the tables and figures."""
    return f"{baseline['name']} (k={baseline['k']})"


def lead_k(lead: dict[str, Any]) -> dict[str, Any] | None:
    """The validation-chosen baseline of a lead record."""
    return next((b for b in lead.get("baselines", []) if b.get("name") == "lead-k"), None)


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """Which rows of a leaderboard are baselines."""
    if "status" not in df:
        return pd.Series(False, index=df.index)
    return df["status"].astype(object).eq(STATUS)


def models_only(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard without its baseline rows (the very same frame when it has none)."""
    mask = is_baseline(df)
    return df[~mask] if mask.any() else df


def _lead_rows(lead: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
    rows = []
    for b in lead.get("baselines", []):
        row: dict[str, Any] = {c: None for c in columns}
        row.update({"model": row_name(b), "family": STATUS, "compression": "none", "task": "sum",
                    "budget": lead.get("budget"), "status": STATUS, "status_reason": b.get("rule"),
                    "rouge_settings": b.get("test", {}).get("rouge_settings") or lead.get("rouge_settings")})
        for split in ("test", "test_clean"):
            for t in ROUGE_TYPES:
                if t in b.get(split, {}):
                    row[f"{t}_{split}"] = b[split][t]
        row["test_n"] = b.get("test", {}).get("n")
        rows.append(row)
    return rows


def lead_pairs(records: pd.DataFrame, df: pd.DataFrame, lead: dict[str, Any], notes: list[str]) -> list[dict]:
    """Each family's primary row (status present, no compression) against lead-k on test ROUGE-L: the seeds'
    per-summary scores paired with lead-k's (bench.report.quality.paired_rouge; lead-k is one "seed").

    Args:
        records: the folder's records (bench.report.records).
        df: the leaderboard.
        lead: the lead baseline's record.
        notes: takes a line for each family left unpaired.
    """
    base = lead_k(lead)
    ref = (base or {}).get("test", {}).get("rouge_sentences")
    if not ref or "test.rouge_sentences" not in records:
        return []
    evals = records[records["stage"] == "eval"]
    if "compression" in evals:
        evals = evals[evals["compression"].isna() | (evals["compression"] == "none")]
    rows = df[(df["compression"] == "none") & (df["model"].astype(str) == df["family"].astype(str))]
    out = []
    for model in sorted(str(m) for m, s in zip(rows["model"], rows["status"]) if present(s)):
        part = evals[evals["model"].astype(str) == model].sort_values("seed")
        seeds = [v for v in part["test.rouge_sentences"] if isinstance(v, (list, tuple)) and len(v)]
        if not seeds:
            continue
        if any(len(v) != len(ref) for v in seeds):
            notes.append(f"{model}: not paired with {row_name(base)} (its evaluations scored "
                         f"{', '.join(sorted({str(len(v)) for v in seeds}))} summaries, the baseline {len(ref)})")
            continue
        out.append({"a": model, "b": row_name(base), "seeds_a": len(seeds), "seeds_b": 1,
                    "rouge_l": paired_rouge(seeds, [ref])})
    return out


#: The CSV's columns of a family's primary row against lead-k: its seed-mean test ROUGE-L minus lead-k's, the
#: paired interval (95%) and p-value of lead_pairs. Empty on every other row.
LEAD_COLUMNS = ("rougeL_minus_lead_k", "rougeL_minus_lead_k_lo", "rougeL_minus_lead_k_hi", "rougeL_minus_lead_k_p")


def _with_lead_columns(df: pd.DataFrame, pairs: list[dict]) -> pd.DataFrame:
    """``df`` with LEAD_COLUMNS, filled on the rows that lead_pairs paired with lead-k."""
    df = df.copy()
    for col in LEAD_COLUMNS:
        df[col] = None
    for p in pairs:
        r = p["rouge_l"]
        at = (df["model"].astype(str) == p["a"]) & (df["compression"] == "none")
        df.loc[at, list(LEAD_COLUMNS)] = [r["diff"], r["ci95"][0], r["ci95"][1], r["p_value"]]
    return df


def with_baselines(df: pd.DataFrame, records: pd.DataFrame, results_dir: Path | str) -> pd.DataFrame:
    """The leaderboard with the baselines of its task (module docstring); ``df`` itself when there are none.
    ``attrs["baselines"]`` holds the record the task reads.

    Args:
        df: the leaderboard.
        records: the folder's records.
        results_dir: the results folder, whose baselines/ holds the baseline records.
    """
    tasks = {str(t) for t in df["task"] if present(t)} if "task" in df else set()
    task = next(iter(tasks)) if len(tasks) == 1 else None
    kind = RECORDS.get(task or "")
    rec = read_baseline(results_dir, kind) if kind else None
    if rec is None:
        return df
    attrs = dict(df.attrs)
    attrs["baselines"] = {kind: rec}
    if kind == "lead" and rec.get("baselines"):
        extra = pd.DataFrame(_lead_rows(rec, list(df.columns)), dtype=object)
        notes = attrs.setdefault("notes", [])
        pairs = lead_pairs(records, df, rec, notes)
        attrs["pairwise"] = list(attrs.get("pairwise") or []) + pairs
        df = pd.concat([_with_lead_columns(df, pairs), extra], ignore_index=True)
    df.attrs = attrs
    return df


# ------------------------------------------------------------------------------------------------ text
def _split_note(scores: dict[str, Any], key: str, fmt: str) -> str:
    return f"{scores[key]:{fmt}}" if isinstance(scores, dict) and key in scores else "–"


def floor_notes(df: pd.DataFrame) -> list[str]:
    """The sentence beside the table stating the task's floor (none without a baseline record)."""
    found = df.attrs.get("baselines") or {}
    out = []
    if "lead" in found:
        lead = found["lead"]
        base = lead_k(lead) or {}
        rows = {b.get("name"): b for b in lead.get("baselines", [])}
        median = rows.get("lead-median")
        out.append(
            "Baseline rows (status baseline: not models, never ranked, on no Pareto front): the first k words of the "
            "description as its synopsis, scored as the models are (the same rouge-score settings, the whole test "
            f"split, n = {base.get('test', {}).get('n', '?')}). {row_name(base) if base else 'lead-k'}: k chosen on "
            f"validation, {lead.get('selection')}"
            + (f"; {row_name(median)}: {lead.get('median_rule')}" if median else "")
            + f". lead-k scores ROUGE-L {_split_note(base.get('test'), 'rougeL', '.2f')} on test, "
            f"{_split_note(base.get('test_clean'), 'rougeL', '.2f')} on test-clean.")
    if "copy" in found:
        rec = found["copy"]
        test, clean = rec.get("test", {}), rec.get("test_clean")
        out.append(f"Floor: copying the source sentence as its translation scores BLEU "
                   f"{_split_note(test, 'bleu', '.2f')} (chrF {_split_note(test, 'chrf', '.1f')}) on test"
                   + (f", BLEU {_split_note(clean, 'bleu', '.2f')} on test-clean" if clean else "")
                   + f" (n = {test.get('n', '?')}; sacreBLEU as the models: {test.get('bleu_signature', '?')}).")
    if "unigram" in found:
        rec = found["unigram"]
        nats = rec.get("unigram_entropy")
        ppl = f"{math.exp(nats):.1f}" if isinstance(nats, (int, float)) else "?"
        out.append(f"Floor: the unigram plateau, a model of token frequencies alone, {nats:.3f} nats per token "
                   f"(perplexity per token {ppl}; the unigram entropy of the training text, from the train records): "
                   f"a run whose final validation NLL is less than {PLATEAU_NATS} nats below it counts as failed."
                   if isinstance(nats, (int, float)) else "Floor: the unigram plateau (not recorded).")
    return out


def pair_note(df: pd.DataFrame) -> list[str]:
    """What the pairwise rows against lead-k compare (nothing without them)."""
    lead = (df.attrs.get("baselines") or {}).get("lead")
    base = lead_k(lead) if lead else None
    if not base or not any(r.get("b") == row_name(base) for r in df.attrs.get("pairwise") or []):
        return []
    return ["", f"Rows against {row_name(base)}: the family's seed-mean test ROUGE-L minus the baseline's, paired "
                "summary by summary (the baseline is deterministic: one seed); it has no validation NLL."]


# ------------------------------------------------------------------------------------------------ figures
def reference_lines(ax: Any, df: pd.DataFrame, q: dict[str, Any] | None) -> None:
    """lead-k as a horizontal line at its test ROUGE-L where a figure's y axis is test ROUGE-L (nothing
    otherwise). Drawn before the points, so that their labels are placed on the final axes.

    Args:
        ax: the figure's axes.
        df: the leaderboard (its ``attrs`` hold the baselines).
        q: the figure's quality axis (its ``col``); None: none.
    """
    lead = (df.attrs.get("baselines") or {}).get("lead")
    base = lead_k(lead) if lead else None
    value = (base or {}).get("test", {}).get("rougeL")
    if not q or q.get("col") != "rougeL_test" or not isinstance(value, (int, float)):
        return
    ax.axhline(value, color="0.2", lw=1.1, ls=(0, (5, 2, 1, 2)), zorder=1, label=row_name(base))
