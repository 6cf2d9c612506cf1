"""The ablation table (``bench run --ablations``; ``<results>/ablations/ablations.md`` and ``ablations.csv``): each
ablation of a budget's ``ablations:`` against its family's row of the comparison, NLL first.

An ablation changes one thing of a family's row (a config knob, a recipe key, or the training time: see
bench.budget.spec ``ablations:``) and is solved to the same budget, trained with the same recipe otherwise, and
evaluated as the rows are. Its row here: what it changes, its shape and MACs, seeds, validation NLL and test BLEU
(or ROUGE-L), and the difference to the family's row (A minus B, the family's current configuration in the
comparison's own folder) with the suite's two-level paired bootstrap (bench.report.quality.pairwise_table): the
validation NLL over the whole validation split first, then the test metric. An ablation whose training failed
is listed as failed (the leaderboard's failed-run rule) and never paired, nor is one whose family row failed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.budget.spec import Budget
from bench.errors import BenchError
from bench.infra.atomic import write_text
from bench.report.leaderboard import current_records
from bench.report.quality import N_SAMPLES, pairwise_table, row_status

TABLE = "ablations.md"
CSV = "ablations.csv"
SEEDS_WHEN_UNSURE = 3  # an ablation whose one-seed NLL interval crosses zero gets a second and third seed


def _mean(part: pd.DataFrame, key: str) -> float | None:
    if key not in part:
        return None
    values = [float(v) for v in part[key] if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def ablation_rows(ablations_dir: Path, base_dir: Path, budget: Budget) -> list[dict[str, Any]]:
    """One row per ablation that has records: its settings, results and its paired differences to its family.

    Args:
        ablations_dir: the ablations' folder (``<results>/ablations``).
        base_dir: the comparison's folder, whose current rows are the references.
        budget: the budget whose ``ablations:`` section names them.
    """
    own = current_records(ablations_dir)
    try:
        base = current_records(base_dir)
    except BenchError:  # the comparison has not run here (a smoke run): the rows stand alone, unpaired
        base = own.iloc[0:0]
    records = pd.concat([own, base], ignore_index=True)
    rows = []
    for key, v in budget.ablations.items():
        mine = own[own["model"].astype(str) == key]
        if mine.empty:
            continue
        train, evals = mine[mine["stage"] == "train"], mine[mine["stage"] == "eval"]
        prof = mine[mine["stage"] == "profile"]
        row: dict[str, Any] = {
            "ablation": key, "family": v.model, "what": v.what,
            "set": ", ".join(f"{k}={val}" for k, val in v.sets.items()) or "–",
            "recipe": ", ".join(f"{k}={val}" for k, val in v.train.items()) or "–",
            "d_model": _mean(prof, "config.d_model"), "ffn_dim": _mean(prof, "config.ffn_dim"),
            "macs": _mean(prof, "macs"),
            "train_tokens": _mean(train, "train_tokens"),
            "seeds": int(len(evals)),
            "valid_nll": _mean(evals, "valid_nll") if "valid_nll" in evals else _mean(train, "valid_nll"),
            "bleu": _mean(evals, "test.bleu"), "rouge_l": _mean(evals, "test.rougeL"),
        }
        row["status"], row["status_reason"] = _status(train, evals)
        if v.wall_time_of:
            tokens = "" if row["train_tokens"] is None else f": {row['train_tokens']:,.0f} target tokens"
            row["recipe"] = f"the training time of {v.wall_time_of}{tokens}"
        family = base[base["model"].astype(str) == v.model]
        family_status, family_reason = _status(family[family["stage"] == "train"], family[family["stage"] == "eval"])
        if family_status != "ok":  # never a difference to a row that failed or has not been evaluated
            row["status_reason"] = "; ".join(filter(None, [row["status_reason"],
                                                           f"{v.model}'s row {family_status}" +
                                                           (f" ({family_reason})" if family_reason else "")]))
        pair = pairwise_table(records, [(key, v.model)]) if row["status"] == family_status == "ok" else []
        if pair:
            p = pair[0]
            row["seeds_family"] = p["seeds_b"]
            for metric in ("valid_nll", "bleu", "rouge_l"):
                if metric in p:
                    row[f"d_{metric}"] = p[metric]["diff"]
                    row[f"d_{metric}_lo"], row[f"d_{metric}_hi"] = p[metric]["ci95"]
                    row[f"d_{metric}_p"] = p[metric]["p_value"]
            lo, hi = row.get("d_valid_nll_lo"), row.get("d_valid_nll_hi")
            if lo is not None and lo <= 0 <= hi and row["seeds"] < SEEDS_WHEN_UNSURE:
                row["status_reason"] = "; ".join(filter(None, [row["status_reason"], (
                    f"its NLL interval crosses 0 with {row['seeds']} seed(s): "
                    f"{SEEDS_WHEN_UNSURE} wanted (--seeds {','.join(map(str, range(2, SEEDS_WHEN_UNSURE + 1)))})")]))
        rows.append(row)
    return rows


def _status(train: pd.DataFrame, evals: pd.DataFrame) -> tuple[str, str | None]:
    """("ok" | "failed" | "training" | "not evaluated", reason): the leaderboard's failed-run rule
    (bench.report.quality.row_status) once a row has evaluated seeds."""
    if evals.empty:
        return ("training" if train.empty else "not evaluated"), None
    return row_status(train, evals)


def _cell(row: dict[str, Any], metric: str, fmt: str) -> str:
    if f"d_{metric}" not in row:
        return "–"
    return (f"{row[f'd_{metric}']:+{fmt}} [{row[f'd_{metric}_lo']:+{fmt}}, {row[f'd_{metric}_hi']:+{fmt}}] "
            f"(p {row[f'd_{metric}_p']:.3f})")


def render(rows: list[dict[str, Any]], budget: Budget) -> str:
    """The markdown table and the paragraph that says how to read it."""
    test = "rouge_l" if any(r.get("rouge_l") is not None for r in rows) else "bleu"
    name = {"bleu": "BLEU", "rouge_l": "ROUGE-L"}[test]
    head = ["ablation", "family", "what it changes", "d", "ffn", "MACs (M)", "target tokens (M)", "seeds",
            "valid NLL", "Δ NLL vs family [95%] (p)", f"test {name}", f"Δ {name} vs family [95%] (p)", "status"]
    lines = [f"# Ablations at {budget.name} ({budget.task})", "",
             "| " + " | ".join(head) + " |", "|" + ":---|" * 3 + "---:|" * (len(head) - 4) + ":---|"]
    for r in rows:
        def num(key: str, fmt: str, scale: float = 1.0, r=r) -> str:
            return "–" if r.get(key) is None else format(r[key] / scale, fmt)

        lines.append("| " + " | ".join([
            r["ablation"], r["family"], r["what"], num("d_model", ".0f"), num("ffn_dim", ".0f"),
            num("macs", ".1f", 1e6), num("train_tokens", ".2f", 1e6), str(r["seeds"]), num("valid_nll", ".3f"),
            _cell(r, "valid_nll", ".3f"), num(test, ".2f"), _cell(r, test, ".2f"),
            r["status"] + (f": {r['status_reason']}" if r.get("status_reason") else "")]) + " |")
    lines += ["", (
        "Each ablation changes one thing of its family's row and is solved to the same budget (so a change that "
        "saves MACs buys width), trained with the same recipe and the family's tuned peak rate otherwise, and "
        "evaluated as the rows are. Δ: the ablation minus its family's row of the comparison (its current "
        "configuration, all its seeds), the validation NLL over the whole validation split first (lower is "
        f"better), then test {name}; interval and p-value: the suite's two-level paired bootstrap, {N_SAMPLES} "
        "resamples (seeds, then sentences shared by both rows). One seed per ablation unless the seeds column "
        "says more: its interval then leaves out training noise (0.01-0.03 nats between seeds at 100M). An "
        f"ablation whose NLL interval crosses zero is trained with {SEEDS_WHEN_UNSURE} seeds; until then its "
        "status says so.")]
    return "\n".join(lines) + "\n"


def write_ablations(ablations_dir: Path, base_dir: Path, budget: Budget) -> list[Path]:
    """``ablations.md`` and ``ablations.csv`` in ``ablations_dir``; BenchError when no ablation has records.

    Args:
        ablations_dir: the ablations' folder.
        base_dir: the comparison's folder (the references).
        budget: the budget whose ``ablations:`` names them.
    """
    rows = ablation_rows(Path(ablations_dir), Path(base_dir), budget) if (Path(ablations_dir) / "runs").is_dir() \
        else []
    if not rows:
        raise BenchError(f"no ablation records under {ablations_dir} (run `python -m bench run --budget "
                         f"{budget.name} --ablations` first)")
    md = write_text(Path(ablations_dir) / TABLE, render(rows, budget))
    csv = write_text(Path(ablations_dir) / CSV, pd.DataFrame(rows).to_csv(index=False))
    return [md, csv]
