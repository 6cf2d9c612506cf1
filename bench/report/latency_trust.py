"""What a latency figure may claim: noisy figures named, and the paired ratios that compare families.

- ``latency_status`` (per row): "noisy" when one of the row's latency figures stayed above 5% CV after every
  attempt (the record's ``latency_status``; a record of older code without it is noisy when its CV exceeds
  5%), else "ok"; ``latency_noisy`` lists those figures (``forward_t1,translate_t2``) and ``latency_note``
  says why. A noisy figure is drawn hollow in the latency figures and left out of their Pareto fronts
  (:func:`split_noisy`, :func:`draw_hollow`), and ``leaderboard.md`` lists it with its reason.
- ``latency_ratio_<workload>_<t<threads>|cuda>[_<dtype>]`` with ``..._lo`` and ``..._hi`` (its 95%
  interval): the row's latency over the reference's (the Transformer) measured side by side in one process
  (``latency_compare`` records, bench.latency.compare), from the newest comparison whose members' configs are
  the reported ones; ``latency_ratio_ref`` names the reference.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.records.schema import is_record_file, read_record
from bench.report.columns import latency_suffix

CV_LIMIT = 0.05
_RATIO_RE = re.compile(r"^latency_ratio_(forward|translate)_(t(\d+)|cuda)(_[a-z0-9]+)?$")


def _setting(rec: Any) -> str:
    return f"{rec['workload']}_{latency_suffix(rec)}"


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ------------------------------------------------------------------------------------------------ status
def status_columns(lat: pd.DataFrame, row: dict[str, Any]) -> None:
    """``latency_status``, ``latency_noisy`` and ``latency_note`` of one row from its latency records."""
    noisy, notes = [], []
    for _, rec in lat.iterrows():
        status = rec.get("latency_status")
        cv = _num(rec.get("cv"))
        attempts = rec.get("attempts")
        n = len(attempts) if isinstance(attempts, list) else 1
        if status == "noisy" or (not isinstance(status, str) and cv is not None and cv > CV_LIMIT):
            key = _setting(rec)
            noisy.append(key)
            how = f"after {n} attempts" if isinstance(status, str) else "in one attempt (before re-measuring)"
            why = f"{key.replace('_', ' ')}: CV {cv:.1%} {how}" if cv is not None else f"{key}: noisy"
            if isinstance(rec.get("not_quiet"), str):
                why += f"; machine not quiet: {rec['not_quiet']}"
            notes.append(why)
    row["latency_status"] = None if lat.empty else ("noisy" if noisy else "ok")
    row["latency_noisy"] = ",".join(sorted(noisy)) or None
    row["latency_note"] = "; ".join(notes) or None


def is_noisy(row: Any, column: str) -> bool:
    """Whether ``column`` (``forward_p50_ms_t1``, ...) of a leaderboard row is a noisy figure."""
    listed = row.get("latency_noisy") if hasattr(row, "get") else None
    if not isinstance(listed, str):
        return False
    m = re.match(r"^(forward|translate)_p\d+_ms_(.+)$", column)
    return bool(m) and f"{m.group(1)}_{m.group(2)}" in listed.split(",")


def split_noisy(data: pd.DataFrame, column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows whose ``column`` can be ranked, rows whose ``column`` is noisy: hollow, off the front)."""
    mask = np.array([is_noisy(r, column) for _, r in data.iterrows()], dtype=bool)
    return data[~mask], data[mask]


def draw_hollow(ax: Any, noisy: pd.DataFrame, x: str, y: str, palette: dict[str, Any], labels: list[str],
                yerr: str | None = None) -> None:
    """The noisy rows as hollow markers in their family's colour, labelled, with a legend entry.

    Args:
        ax: the axes drawn on.
        noisy: the noisy rows.
        x: the column on x.
        y: the column on y.
        palette: family -> colour.
        labels: each row's label, in order.
        yerr: the column of error bars; None: none.
    """
    if noisy.empty:
        return
    for (_, r), label in zip(noisy.iterrows(), labels):
        ax.scatter([r[x]], [r[y]], facecolor="none", edgecolor=palette[str(r["family"])], marker="o", s=46,
                   lw=1.2, zorder=3)
        if yerr and _num(r.get(yerr)) is not None:
            ax.errorbar([r[x]], [r[y]], yerr=[r[yerr]], fmt="none", ecolor="0.6", elinewidth=1, capsize=3, zorder=2)
        ax.annotate(f"{label} (noisy)", (r[x], r[y]), xytext=(4, -10), textcoords="offset points", fontsize=7,
                    color="0.35")
    ax.scatter([], [], facecolor="none", edgecolor="0.3", marker="o", s=46, lw=1.2,
               label="noisy latency (hollow, not on the front)")


def mark(text: str, row: Any, column: str) -> str:
    """A table cell of a noisy figure says so.

    Args:
        text: the cell's text ("–", an empty cell, stays as it is).
        row: the leaderboard row.
        column: the latency column the cell shows.
    """
    return f"{text} (noisy)" if text != "–" and is_noisy(row, column) else text


# ------------------------------------------------------------------------------------------------ ratios
def compare_records(results_dir: Path | str) -> list[Any]:
    """Every paired-latency record under ``results_dir/runs/_compare-*/``."""
    runs = Path(results_dir) / "runs"
    return [read_record(p) for p in sorted(runs.glob("_compare-*/latency_compare-*.json")) if is_record_file(p)]


def add_ratio_columns(df: pd.DataFrame, results_dir: Path | str, notes: list[str]) -> pd.DataFrame:
    """The ``latency_ratio_*`` columns (module docstring), placed after the latency columns.

    Args:
        df: the leaderboard.
        results_dir: the results folder, whose runs/_compare-*/ hold the paired records.
        notes: takes a line for each paired record ignored.
    """
    base = df[df["compression"] == "none"] if "compression" in df else df
    current = {str(m): str(h) for m, h in zip(base["model"], base["config_hash"])}
    best: dict[str, Any] = {}
    for rec in compare_records(results_dir):
        members = {m["name"]: m["config_hash"] for m in rec.get("members") or []}
        if not members or any(current.get(name) != key for name, key in members.items()):
            notes.append(f"paired latency {rec.config_hash} ({rec.stage} {_setting(rec.to_dict())}): not the reported "
                         "configs, ignored")
            continue
        key = _setting(rec.to_dict())
        rank = (len(members), rec.created or "")
        if key not in best or rank > best[key][0]:
            best[key] = (rank, rec)
    new: list[str] = []
    for key, (_, rec) in sorted(best.items()):
        cols = [f"latency_ratio_{key}", f"latency_ratio_{key}_lo", f"latency_ratio_{key}_hi"]
        values = {c: [] for c in cols}
        for _, r in df.iterrows():
            ratio = rec.ratios.get(str(r["model"])) if r.get("compression", "none") == "none" else None
            ci = (ratio or {}).get("ci95") or [None, None]
            for c, v in zip(cols, [(ratio or {}).get("ratio"), *ci]):
                values[c].append(v)
        for c in cols:
            df[c] = values[c]
        new += cols
        df["latency_ratio_ref"] = rec.reference
        df["latency_ratio_method"] = rec.get("ratio_method")
    new += [c for c in ("latency_ratio_ref", "latency_ratio_method", "latency_status", "latency_noisy",
                        "latency_note") if c in df]
    cols = [c for c in df.columns if c not in new]
    last = max((i for i, c in enumerate(cols) if re.match(r"^(forward|translate)_p\d+_ms_", c)), default=len(cols) - 1)
    return df[cols[: last + 1] + new + cols[last + 1 :]]


def ratio_cell(row: Any, key: str) -> str:
    """``1.32 [1.29, 1.35]`` for the row's ratio of setting ``key`` (``forward_t1``); "–" without one."""
    r, lo, hi = (_num(row.get(f"latency_ratio_{key}{s}")) for s in ("", "_lo", "_hi"))
    if r is None:
        return "–"
    return f"{r:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else f"{r:.2f}"


def has_ratio(df: pd.DataFrame, key: str) -> bool:
    col = f"latency_ratio_{key}"
    return col in df and df[col].map(lambda v: _num(v) is not None).any()


def notes(df: pd.DataFrame, display: Any) -> list[str]:
    """The lines leaderboard.md adds: how the ratios were measured, and every noisy figure with its reason."""
    out = []
    keys = sorted({m.group(1) + "_" + m.group(2) + (m.group(4) or "") for c in df.columns
                   if (m := _RATIO_RE.match(c)) and not c.endswith(("_lo", "_hi"))})
    if keys:
        ref = display(str(df["latency_ratio_ref"].dropna().iloc[0])) if "latency_ratio_ref" in df else "the first"
        parts = []
        tasks = set(df["task"].dropna().astype(str)) if "task" in df else set()
        # the second workload is called "translate" in the records whatever the task: say what it ran
        second = {frozenset({"sum"}): "summarize", frozenset({"lm"}): "generate"}.get(frozenset(tasks), "translate")
        for key in keys:
            cells = [f"{display(str(r['model']))} {ratio_cell(r, key)}" for _, r in df.iterrows()
                     if str(r["model"]) != str(r.get("latency_ratio_ref")) and ratio_cell(r, key) != "–"]
            if cells:
                parts.append(f"{key.replace('translate', second).replace('_', ' ')}: " + ", ".join(cells))
        methods = df["latency_ratio_method"].dropna() if "latency_ratio_method" in df else []
        method = str(methods.iloc[0]) if len(methods) else ("geometric mean of the per-round ratios, 95% "
                                                            "bootstrap interval over rounds")
        out.append(f"Latency ratios vs {ref}, measured side by side (every model in one process, interleaved rounds "
                   f"in rotating order; {method}): " + "; ".join(parts) + ".")
    if "latency_note" in df and df["latency_note"].map(lambda v: isinstance(v, str)).any():
        noisy = [f"{display(str(r['model']))}: {r['latency_note']}" for _, r in df.iterrows()
                 if isinstance(r.get("latency_note"), str)]
        out.append(f"Noisy latency (CV above {CV_LIMIT:.0%} after every attempt; marked (noisy), drawn hollow, left "
                   "out of latency Pareto fronts): " + "; ".join(noisy) + ".")
    return out
