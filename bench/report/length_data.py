"""The length study's data: a budget's results folder and its longer-schedule siblings (``100M``, ``100M-x4``,
``100M-x16``), read into per-length figures (each family's primary row and, where trained, its searched-shape
row: seeds, validation NLL, the task's test metric, in-training curves) with the pairwise gaps, and the measures
taken from the curves (the 16x dropout rule, the tokens to reach a validation NLL). bench.report.length renders
them as the study's table and figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report import has_records
from bench.report.leaderboard import current_records
from bench.report.quality import pairwise_table, row_status
from bench.report.style import family_order
from bench.train.schedules import LONGER

OVERFIT_RISE = 0.02  # nats above the curve's best that decide the longest schedule's dropout
# the test metric per task: the eval record's key, the pairwise table's key, its name (a language model: none)
METRICS = {"mt": ("test.bleu", "bleu", "BLEU"), "sum": ("test.rougeL", "rouge_l", "ROUGE-L")}


def family_pairs(present: list[str] | set[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Every two families, the later in the registry's order first (A minus B): against the Transformer first,
    then the others (Lite minus Transformer, ET minus Transformer, Lite minus ET for the paper's three)."""
    order = family_order(present)
    return [(b, a) for i, a in enumerate(order) for b in reversed(order[i + 1:])]


def length_folders(base: Path | str) -> list[tuple[int, Path]]:
    """(factor on the short schedule's tokens, folder) for ``base`` and each longer sibling with records."""
    base = Path(base)
    out = [(1, base)] if has_records(base) else []
    for name, (parent, factor) in LONGER.items():
        folder = base.parent / f"{base.name}-{name}"
        if parent == "short" and has_records(folder):
            out.append((factor, folder))
    return sorted(out)


def _primary(records: pd.DataFrame) -> pd.DataFrame:
    rows = records[records["model"].astype(str) == records["family"].astype(str)]
    if "compression" in rows.columns:
        rows = rows[rows["compression"].isna() | (rows["compression"] == "none")]
    return rows


def task_of(folder: Path | str) -> str:
    """The task of a budget's results folder by its name: ``100M-sum`` summarization, ``100M-lm`` language
    modelling, else translation."""
    name = re.sub(r"-x[0-9]+$", "", Path(folder).name)
    return next((t for t in ("sum", "lm") if name.endswith(f"-{t}")), "mt")


def _figures(part: pd.DataFrame, key: str | None) -> dict[str, Any] | None:
    """One row's figures at one length (its train and eval records): status, mean target tokens, per-seed
    validation NLL and test metric, in-training curves; None when it has not trained."""
    train, evals = part[part["stage"] == "train"], part[part["stage"] == "eval"]
    if train.empty:
        return None
    status, reason = row_status(train, evals)
    test = {int(s): float(b) for s, b in zip(evals["seed"], evals.get(key, []), strict=False)
            if b is not None and not (isinstance(b, float) and math.isnan(b))}
    return {
        "model": str(train["model"].iloc[0]),
        "status": status,
        "reason": reason,
        "tokens": float(np.mean(train["train_tokens"])),
        "nll": {int(s): float(v) for s, v in zip(train["seed"], train["valid_nll"], strict=True)},
        "test": test,
        "curves": {int(s): [e for e in c if e.get("valid_nll") is not None and not e.get("final")]
                   for s, c in zip(train["seed"], train["curve"], strict=True) if isinstance(c, list)},
    }


def _searched(records: pd.DataFrame, variants: Sequence[str] | set[str]) -> pd.DataFrame:
    """The searched-shape rows (the budget's ``shape: searched`` variants) among ``records``."""
    if not variants or "variant" not in records.columns:
        return records.iloc[0:0]
    rows = records[records["variant"].isin(list(variants))]
    if "compression" in rows.columns:
        rows = rows[rows["compression"].isna() | (rows["compression"] == "none")]
    return rows


def collect(folders: Sequence[tuple[int, Path]], searched: Sequence[str] | set[str] = ()) -> dict[str, Any]:
    """Per length: the folder, its primary records, per-family seed figures (``test``: the task's test metric,
    METRICS) and the pairwise gaps; with ``searched`` (the budget's searched-shape variants), per family its
    searched-shape row's figures and gaps too (``searched``, ``searched_pairs``: the searched rows against each
    other, and each against its family's paper-shape row)."""
    key = METRICS.get(task_of(folders[0][1]) if folders else "mt", (None,))[0]
    lengths = []
    for factor, folder in folders:
        every = current_records(folder)
        recs = _primary(every)
        fams = {str(fam): f for fam, part in recs.groupby("family", sort=True)
                if (f := _figures(part, key)) is not None}
        if not fams:
            continue  # a length whose runs have not trained yet (only profiles): nothing to compare
        ok = sorted(f for f, v in fams.items() if v["status"] == "ok")
        pairs = [(a, b) for a, b in family_pairs(ok) if a in ok and b in ok]
        rows = {(r["a"], r["b"]): r for r in pairwise_table(recs, pairs)} if pairs else {}
        trained = recs[recs["stage"] == "train"]
        dropout = sorted({float(d) for d in trained.get("config.dropout", pd.Series(dtype=float)).dropna()})
        shaped = _searched(every, searched)
        found = {str(fam): f for fam, part in shaped.groupby("family", sort=True)
                 if (f := _figures(part, key)) is not None}
        good = sorted(f for f, v in found.items() if v["status"] == "ok")
        spairs = [(a, b) for a, b in family_pairs(good) if a in good and b in good]
        by_model = [(found[a]["model"], found[b]["model"]) for a, b in spairs] \
            + [(found[f]["model"], f) for f in good if f in ok]
        srows = {(r["a"], r["b"]): r for r in pairwise_table(pd.concat([recs, shaped]), by_model)} if by_model else {}
        lengths.append({"factor": factor, "folder": folder, "families": fams, "pairs": rows, "dropout": dropout,
                        "searched": found, "searched_pairs": srows})
    return {"lengths": lengths, "task": task_of(folders[0][1]) if folders else "mt"}


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def overfit_rule(curves: dict[str, list[dict[str, Any]]], rise: float = OVERFIT_RISE) -> dict[str, Any]:
    """Each family's largest rise of its in-training validation curve above its best so far, and whether any
    family rose more than ``rise`` (then the longest schedule trains with dropout 0.1 for every family)."""
    per = {}
    for fam, curve in curves.items():
        if not curve:
            continue
        best, worst = math.inf, 0.0
        for e in curve:
            best = min(best, e["valid_nll"])
            worst = max(worst, e["valid_nll"] - best)
        per[fam] = {"best": best, "rise": worst, "last": curve[-1]["valid_nll"] if curve else None}
    return {"per_family": per, "dropout": 0.1 if any(v["rise"] > rise for v in per.values()) else 0.0}


def tokens_to_reach(curve: list[dict[str, Any]], level: float) -> int | None:
    """The target tokens at the curve's first validation at or below ``level`` (None: never)."""
    for e in curve:
        if e["valid_nll"] <= level:
            return int(e["tokens"])
    return None



def mean_tokens(ln: dict[str, Any]) -> float:
    return float(np.mean([f["tokens"] for f in ln["families"].values()]))
