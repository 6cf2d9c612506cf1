"""Solving a budget: every family (or variant) to a MAC budget by the MAC solver, or to a latency budget by
measurement (latency_solve, the families then confirmed together: latency_together)."""

from __future__ import annotations

from pathlib import Path

from bench.budget.latency_together import solve_latency_budget
from bench.budget.mac_solver import Solution, solve_mac_model
from bench.budget.spec import Budget
from bench.errors import BenchError


def solve_model(budget: Budget, model: str, confirm: bool = True, cache_dir: Path | None = None) -> Solution:
    """The config of ``model`` whose MACs land within the budget's tolerance, as close to the family's own
    shape as the scaling rule allows. Deterministic. Raises BenchError when no config on the grid fits.
    A latency budget is solved by measurement instead (bench.budget.latency_solve, its families then confirmed
    together: bench.budget.latency_together; ``cache_dir`` keeps the measurements, by default under
    results/<budget>/latency-solve).

    Args:
        budget: the loaded budget (MAC or latency).
        model: a family or a variant of the budget.
        confirm: a MAC budget: count the chosen config with the budget's counter (bench.budget.mac_solver).
        cache_dir: a latency budget's measurement folder; None: results/<budget>/latency-solve.
    """
    if model in budget.skipped:
        raise BenchError(f"{model} is left out of budget {budget.name}'s {budget.task} comparison: "
                         f"{budget.skipped[model]}")
    if model in budget.searched:
        raise BenchError(f"{model} takes its shape from budget {budget.name}'s shape search, which has not "
                         f"confirmed one yet: run `python -m bench shapes --budget {budget.name} --confirm`")
    if model not in budget.models and model not in budget.variants:
        raise BenchError(f"model {model!r} is not in budget {budget.name}; it has: {', '.join(budget.rows())}")
    if budget.latency is not None:
        return solve_latency_budget(budget, model, cache_dir=cache_dir)
    return solve_mac_model(budget, model, confirm=confirm)


def solve_budget(budget: Budget, models: list[str] | None = None, confirm: bool = True) -> list[Solution]:
    """Every model's :func:`solve_model` at ``budget``, in order.

    Args:
        budget: the loaded budget.
        models: the rows to solve; None: the budget's families.
        confirm: as for :func:`solve_model`.
    """
    names = models or list(budget.models)
    return [solve_model(budget, m, confirm=confirm) for m in names]
