"""Reports: run records -> leaderboard (CSV, Markdown, LaTeX) and Pareto figures, from the records alone.

``python -m bench report --budget 100M [--task mt|lm|sum] [--results DIR] [--combine B ...]`` rebuilds, in
``results/<budget>`` (``results/<budget>-lm`` for language models, ``-sum`` for summarization):
``leaderboard.csv``, ``leaderboard.md``, ``leaderboard.tex`` and ``figures/*.png|pdf``; and, when other budgets of
the same task have records beside it, ``results/combined[-lm|-sum]/quality_vs_macs.png|pdf`` with every budget
on one plot.

Python: ``load_records``, ``build_leaderboard``, ``write_leaderboard``, ``write_figures``,
``write_combined_figure``, ``pareto_front`` (imported lazily: ``import bench.report`` stays cheap).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.records.schema import is_record_file

_LAZY = {
    "load_records": "records",
    "build_leaderboard": "leaderboard",
    "write_leaderboard": "render",
    "write_figures": "figures",
    "write_combined_figure": "combined",
    "pareto_front": "figures",
}
__all__ = [*_LAZY, "has_records", "results_dir_for"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _results_name(budget: str, task: str) -> str:
    name = budget
    if budget.endswith((".yaml", ".yml")) or "/" in budget:
        from bench.budget.spec import load_budget  # yaml, torch: loaded only for a budget given as a file

        name = load_budget(budget, task=task).name
    return name if task == "mt" else f"{name}-{task}"


def results_dir_for(budget: str, task: str = "mt", root: Path | str = "results") -> Path:
    """``results/100M`` for (100M, mt), ``results/100M-lm`` for (100M, lm), ``results/100M-sum`` for sum.

    Args:
        budget: a budget name, or a budget file (its name is read).
        task: mt, lm or sum.
        root: the results root.
    """
    return Path(root) / _results_name(budget, task)


def has_records(folder: Path) -> bool:
    """Whether ``folder/runs`` holds at least one record file."""
    runs = Path(folder) / "runs"
    return runs.is_dir() and any(is_record_file(p) for p in runs.glob("*/*.json"))
