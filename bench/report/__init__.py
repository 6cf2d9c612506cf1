"""Reports: run records -> leaderboard (CSV, Markdown, LaTeX) and Pareto figures, from the records alone.

``python -m bench report --budget 100M [--task mt|lm] [--results DIR] [--combine B ...]`` rebuilds, in
``results/<budget>`` (``results/<budget>-lm`` for language models): ``leaderboard.csv``, ``leaderboard.md``,
``leaderboard.tex`` and ``figures/*.png|pdf``; and, when other budgets of the same task have records beside it,
``results/combined[-lm]/quality_vs_macs.png|pdf`` with every budget on one plot.

Python: ``load_records``, ``build_leaderboard``, ``write_leaderboard``, ``write_figures``,
``write_combined_figure``, ``pareto_front`` (imported lazily: ``import bench.report`` stays cheap for the CLI).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchError

HELP = "rebuild leaderboard tables (CSV, Markdown, LaTeX) and Pareto figures from the run records"

_LAZY = {
    "load_records": "records",
    "read_record": "records",
    "build_leaderboard": "leaderboard",
    "write_leaderboard": "leaderboard",
    "write_figures": "figures",
    "write_combined_figure": "figures",
    "pareto_front": "figures",
}
__all__ = [*_LAZY, "HELP", "add_parser", "run", "results_dir_for"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` command to ``subparsers`` (the object ``add_subparsers`` returned)."""
    p = subparsers.add_parser("report", help=HELP, description=HELP)
    p.add_argument("--budget", help="100M, 500M, ... or a budget YAML file (its name picks results/<name>)")
    p.add_argument("--task", choices=["mt", "lm"], default="mt", help="lm reads results/<budget>-lm")
    p.add_argument(
        "--results",
        metavar="DIR",
        help="the results root holding <budget>[-lm]/ (default: results), or one results folder itself "
        "(a folder with runs/ inside)",
    )
    p.add_argument(
        "--combine",
        nargs="*",
        metavar="BUDGET",
        help="budgets to draw together in results/combined[-lm]/ (default: every budget of this task with "
        "records; give no value to skip)",
    )
    return p


def _results_name(budget: str, task: str) -> str:
    name = budget
    if budget.endswith((".yaml", ".yml")) or "/" in budget:
        from bench.budget import load_budget

        name = load_budget(budget, task=task).name
    return f"{name}-lm" if task == "lm" else name


def results_dir_for(budget: str, task: str = "mt", root: Path | str = "results") -> Path:
    """``results/100M`` for (100M, mt), ``results/100M-lm`` for (100M, lm)."""
    return Path(root) / _results_name(budget, task)


def _has_records(folder: Path) -> bool:
    from .records import is_record_file

    runs = folder / "runs"
    return runs.is_dir() and any(is_record_file(p) for p in runs.glob("*/*.json"))


def run(args: argparse.Namespace) -> int:
    """``python -m bench report``: rebuild tables and figures; prints the files written (stdout) and what could
    not be drawn yet (stderr, ``note:`` lines). Raises BenchError for a missing folder or no records."""
    from .figures import write_combined_figure, write_figures
    from .leaderboard import build_leaderboard, write_leaderboard

    given = Path(args.results) if args.results else None
    if given is not None and (given / "runs").is_dir():
        results_dir, root = given, given.parent
    else:
        if not args.budget:
            raise BenchError("report: give --budget (e.g. 100M), or --results pointing at a folder with runs/ inside")
        root = given or Path("results")
        results_dir = results_dir_for(args.budget, args.task, root)
    if not results_dir.is_dir():
        budget = args.budget or results_dir.name
        raise BenchError(f"no results folder {results_dir} (run `make bench BUDGET={budget}` first)")
    if not _has_records(results_dir):
        raise BenchError(f"no run records under {results_dir / 'runs'} (run `make bench` for this budget first)")

    lm = args.task == "lm" or results_dir.name.endswith("-lm")
    if args.combine is None:  # every budget of this task with records, when there are several
        folders = (
            [
                d
                for d in sorted(root.iterdir())
                # budget folders only (100M, 500M-lm, ...): not smoke runs (-quick) nor other studies
                if d.is_dir()
                and re.fullmatch(r"[0-9.]+[KMGT](-lm)?", d.name)
                and d.name.endswith("-lm") == lm
                and _has_records(d)
            ]
            if root.is_dir()
            else []
        )
        folders = folders if len(folders) >= 2 and results_dir.resolve() in [d.resolve() for d in folders] else []
        strict = False
    else:  # asked for: every folder must exist and have records, checked before anything is written
        folders = [
            Path(b) if Path(b).is_dir() else results_dir_for(b, "lm" if lm else "mt", root) for b in args.combine
        ]
        for folder in folders:
            if not _has_records(folder):
                raise BenchError(f"--combine: no run records under {folder / 'runs'}")
        strict = True

    notes: list[str] = list(build_leaderboard(results_dir).attrs.get("notes", []))
    written = list(write_leaderboard(results_dir).values())
    written += write_figures(results_dir, notes)
    if folders:
        out = root / ("combined-lm" if lm else "combined") / "quality_vs_macs"
        try:
            written += write_combined_figure(folders, out)
        except BenchError as exc:
            if strict:
                raise
            notes.append(f"combined figure: skipped, {exc}")

    for path in written:
        print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
