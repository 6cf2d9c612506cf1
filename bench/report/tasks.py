"""Across tasks: does the families' order at equal MACs hold for translation, summarization and language
modelling? ``results/tasks.md``, rebuilt by ``bench report`` whenever some budget has results for two or more
tasks (the folders ``<budget>``, ``<budget>-sum``, ``<budget>-lm``).

Per budget, two tables. The first puts each family's primary row (its own name, no compression) side by side
across the tasks: the task's own quality figure (BLEU, ROUGE-L or perplexity, mean ± sample std over seeds)
and its validation NLL. The second compares every pair of families in every task on validation NLL, the one
figure every task has with a paired interval (the leaderboard's two-level paired bootstrap over seeds and
validation sentences): the difference A − B, its 95% interval and p-value, and a verdict over the tasks. A
difference counts as a separation when p < 0.05 and the interval excludes 0 (the rule docs/protocol.md states). A pair
*reverses* when one task separates it one way and another the other way; the order *holds* when no pair
reverses. A row whose status is not ``ok`` is named and left out, as on every leaderboard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.infra.atomic import write_text
from bench.report import has_records
from bench.report.columns import present
from bench.report.leaderboard import build_leaderboard, display_name

FOLDER = re.compile(r"([0-9.]+[KMGT])(-lm|-sum)?")
TASKS = (("", "mt", "translation"), ("-sum", "sum", "summarization"), ("-lm", "lm", "language modelling"))
ALPHA = 0.05


def task_folders(root: Path | str) -> dict[str, dict[str, Path]]:
    """``{budget: {task: folder}}`` for the budget folders under ``root`` that hold run records (the
    fine-schedule and smoke folders, e.g. ``100M-full`` or ``100M-quick``, are other studies: not included)."""
    out: dict[str, dict[str, Path]] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        m = FOLDER.fullmatch(d.name)
        if d.is_dir() and m and has_records(d):
            task = next(t for suffix, t, _ in TASKS if suffix == (m.group(2) or ""))
            out.setdefault(m.group(1), {})[task] = d
    return out


def primary_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The families' own rows without compression, those with status ``ok``; and the others, named."""
    base = df[(df["compression"] == "none") & (df["model"].astype(str) == df["family"].astype(str))]
    trained = base[base["status"].map(present)] if "status" in base else base.iloc[0:0]
    ok = trained[trained["status"] == "ok"]
    left_out = [f"{display_name(str(r['model']))} ({r['status']})" for _, r in trained.iterrows()
                if r["status"] != "ok"]
    return ok, left_out


def _separation(diff: dict[str, Any] | None) -> int:
    """-1: A lower (better) NLL, separated; +1: B better, separated; 0: not separated (or no interval)."""
    if not diff:
        return 0
    lo, hi = diff["ci95"]
    if not all(math.isfinite(v) for v in (diff["diff"], lo, hi, diff["p_value"])):
        return 0  # a broken interval separates nothing
    if diff["p_value"] >= ALPHA or lo <= 0 <= hi:
        return 0
    return -1 if diff["diff"] < 0 else 1


def _pair_diff(pairwise: Sequence[dict[str, Any]], a: str, b: str) -> dict[str, Any] | None:
    """The validation-NLL difference A − B from the leaderboard's pairwise rows (either orientation)."""
    for r in pairwise:
        d = r.get("valid_nll")
        if not d:
            continue
        if (r["a"], r["b"]) == (a, b):
            return d
        if (r["a"], r["b"]) == (b, a):
            lo, hi = d["ci95"]
            return {**d, "diff": -d["diff"], "ci95": [-hi, -lo]}
    return None


def verdict(signs: dict[str, int | None], a: str, b: str) -> str:
    """Words for one pair over the tasks; ``signs``: task name -> :func:`_separation` (None: no interval).

    Args:
        signs: task name -> -1 (``a`` ahead), 0 (not separated) or 1 (``b`` ahead); None: no interval.
        a: the first model's name.
        b: the second's.
    """
    named = {t: s for t, s in signs.items() if s is not None}
    a_wins = [t for t, s in named.items() if s < 0]
    b_wins = [t for t, s in named.items() if s > 0]
    ties = [t for t, s in named.items() if s == 0]
    blind = [t for t, s in signs.items() if s is None]
    tail = f"; no interval in {', '.join(blind)}" if blind else ""
    if a_wins and b_wins:
        return f"reverses: {a} ahead in {', '.join(a_wins)}, {b} in {', '.join(b_wins)}"
    if not a_wins and not b_wins:
        return (f"not separated in {', '.join(ties)}{tail}" if ties else "no interval")
    winner, where = (a, a_wins) if a_wins else (b, b_wins)
    if len(where) == len(signs):
        return f"{winner} ahead in every task"
    return f"{winner} ahead in {', '.join(where)}" + (f"; not separated in {', '.join(ties)}" if ties else "") + tail


def _quality(df: pd.DataFrame, row: pd.Series) -> str:
    from bench.report.figures import quality_spec  # matplotlib, seaborn: loaded only when tasks.md is written

    q = quality_spec(df)
    if not q or q["col"] == "valid_nll" or not present(row.get(q["col"])):
        return "–"  # no test figure (validation NLL has its own column)
    fmt = ".1f" if q["col"] == "ppl" else ".2f"
    std = row.get(q["std"])
    return f"{q['name']} {row[q['col']]:{fmt}}" + (f" ± {std:{fmt}}" if present(std) else "")


def _nll(row: pd.Series) -> str:
    std = row.get("valid_nll_std")
    n = row.get("n_eval")
    seeds = f" ({int(n)})" if present(n) else ""
    return f"{row['valid_nll']:.3f}" + (f" ± {std:.3f}" if present(std) else "") + seeds


def budget_section(budget: str, boards: dict[str, pd.DataFrame]) -> tuple[list[str], list[str]]:
    """Markdown lines for one budget (``boards``: task -> leaderboard, in TASKS order) and the pairs that
    reverse."""
    names = {t: label for _, t, label in TASKS}
    tasks = [t for _, t, _ in TASKS if t in boards]
    rows = {t: primary_rows(boards[t]) for t in tasks}
    families = sorted({str(f) for t in tasks for f in rows[t][0]["family"]})
    out = [f"## {budget}", ""]
    heads = ["family"] + [f"{names[t]}: quality" for t in tasks] + [f"{names[t]}: valid NLL (seeds)" for t in tasks]
    out += ["| " + " | ".join(heads) + " |", "|:---|" + "---:|" * (len(heads) - 1)]
    for fam in families:
        cells = [display_name(fam)]
        picked = {t: rows[t][0][rows[t][0]["family"].astype(str) == fam] for t in tasks}
        cells += [_quality(boards[t], picked[t].iloc[0]) if len(picked[t]) else "–" for t in tasks]
        cells += [_nll(picked[t].iloc[0]) if len(picked[t]) and present(picked[t].iloc[0].get("valid_nll"))
                  else "–" for t in tasks]
        out.append("| " + " | ".join(cells) + " |")
    left = [f"{names[t]}: {', '.join(rows[t][1])}" for t in tasks if rows[t][1]]
    if left:
        out += ["", "Left out (not `ok`): " + "; ".join(left) + "."]
    diff_heads = " | ".join(f"{names[t]}: Δ valid NLL (A−B) [95%], p" for t in tasks)
    out += ["", f"| A | B | {diff_heads} | over the tasks |", "|:---|:---|" + "---:|" * len(tasks) + ":---|"]
    reversed_pairs, compared = [], 0
    for i, a in enumerate(families):
        for b in families[i + 1:]:
            cells, signs = [], {}
            for t in tasks:
                families_present = set(rows[t][0]["family"].astype(str))
                d = _pair_diff(boards[t].attrs.get("pairwise", []), a, b) if {a, b} <= families_present else None
                if d is None:
                    cells.append("–")
                    signs[names[t]] = None
                    continue
                lo, hi = d["ci95"]
                cells.append(f"{d['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], {d['p_value']:.3f}")
                signs[names[t]] = _separation(d)
            text = verdict(signs, display_name(a), display_name(b))
            compared += sum(s is not None for s in signs.values()) >= 2
            if text.startswith("reverses"):
                reversed_pairs.append(f"{display_name(a)} vs {display_name(b)}")
            out.append(f"| {display_name(a)} | {display_name(b)} | " + " | ".join(cells) + f" | {text} |")
    out.append("")
    if reversed_pairs:
        out.append(f"**The order changes across tasks** at {budget}: {'; '.join(reversed_pairs)} reverse(s).")
    elif not compared:
        out.append(f"**Cannot tell at {budget}**: no pair of families has an interval in two tasks.")
    else:
        out.append(f"**No pair reverses across tasks at {budget}**: where two tasks both separate a pair, they put "
                   "it in the same order (pairs not separated in a task are ties there).")
    return out + [""], reversed_pairs


def tasks_summary(root: Path | str) -> str | None:
    """The Markdown of ``results/tasks.md``; None when no budget has results for two tasks."""
    folders = {b: f for b, f in task_folders(root).items() if len(f) >= 2}
    if not folders:
        return None
    out = [
        "# Across tasks: does the order of the families at equal MACs hold?",
        "",
        "Each family's primary row (the row under its own name: no variant, no compression; status `ok`) in "
        "every task measured at a budget. "
        "Quality: each task's own figure on its test split, mean ± sample std over seeds. The pairs are compared "
        "on validation NLL (nats per target token, lower is better), the figure every task has with a paired "
        "interval: the leaderboard's two-level paired bootstrap (seeds, then validation sentences; for language "
        "modelling, blocks of the validation stream). A pair is "
        "separated in a task when p < 0.05 and the interval excludes 0; it reverses when two tasks separate it "
        "in opposite directions. NLLs of different tasks are on different scales: compare within a column.",
        "",
    ]
    for budget in sorted(folders, key=lambda b: float(b[:-1]) * {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[b[-1]]):
        boards = {t: build_leaderboard(folders[budget][t]) for _, t, _ in TASKS if t in folders[budget]}
        out += budget_section(budget, boards)[0]
    out.append("Generated by `python -m bench report` from the leaderboards of the folders named above.")
    return "\n".join(out) + "\n"


def write_tasks_summary(root: Path | str) -> Path | None:
    """``<root>/tasks.md`` (written atomically), or None when no budget has two tasks' results."""
    text = tasks_summary(root)
    if text is None:
        return None
    path = Path(root) / "tasks.md"
    write_text(path, text)
    return path
