"""A budget file's tuning plan (``tune:``), read by bench.budget and used by bench.train.tune.

``tune: {grid: [5e-4, 1e-3, 2e-3], trials_per_seed: 3, trials: truncated}`` names the peak rates ``bench tune``
searches, the share of one seed's target tokens each trial trains (a trial gets the recipe's tokens /
``trials_per_seed``; by default the grid's size, so that tuning a family costs one seed) and what a trial is
(``trials``, bench.train.tune.TRIAL_KINDS): "truncated" (the default), the recipe itself stopped after the trial's
tokens, or "compressed", the recipe shrunk to them. A task may have its own plan under its name
(``tune: {..., lm: {grid: [...]}, sum: {...}}``): translation's search says nothing about another task's rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.budget.keys import check_keys
from bench.errors import BenchError

PLAN_KEYS = ("grid", "trials_per_seed", "trials")
TRIAL_KINDS = ("truncated", "compressed")
TASK_PLANS = ("lm", "sum")  # tasks that may have a plan of their own (translation's is the top level)


@dataclass(frozen=True)
class TunePlan:
    grid: tuple[float, ...]
    trials_per_seed: int | None = None
    trials: str = "truncated"


def parse_tune_plan(raw: Any, where: str, task: str = "mt") -> TunePlan | None:
    """The plan for ``task``: its own section when the file has one, else the top level (None: no section).

    Args:
        raw: the file's ``tune:`` value; None when the file has none.
        where: the file, named in errors.
        task: the task whose plan is read: mt, lm or sum.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: 'tune' must be a mapping with {', '.join(PLAN_KEYS)}")
    check_keys(raw, (*PLAN_KEYS, *TASK_PLANS), where, "'tune'")
    plans = {t: _plan(raw[t], where, f"'tune: {t}'") for t in TASK_PLANS if t in raw}
    if task in plans:
        return plans[task]
    return _plan({k: v for k, v in raw.items() if k in PLAN_KEYS}, where, "'tune'")


def _plan(raw: Any, where: str, section: str) -> TunePlan:
    if not isinstance(raw, dict):
        raise BenchError(f"{where}: {section} must be a mapping with {', '.join(PLAN_KEYS)}")
    check_keys(raw, PLAN_KEYS, where, section)
    try:  # YAML reads 1e-3 (no dot) as a string
        grid = [float(v) for v in raw.get("grid") if not isinstance(v, bool)]
    except (TypeError, ValueError):
        grid = []
    if not grid or len(grid) != len(raw["grid"]) or min(grid) <= 0 or len(set(grid)) != len(grid):
        raise BenchError(f"{where}: {section[:-1]}: grid' must be a list of distinct positive peak rates")
    share = raw.get("trials_per_seed")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int) or share < 1):
        raise BenchError(f"{where}: {section[:-1]}: trials_per_seed' must be a positive integer")
    kind = raw.get("trials", "truncated")
    if kind not in TRIAL_KINDS:
        raise BenchError(f"{where}: {section[:-1]}: trials' must be one of {', '.join(TRIAL_KINDS)}, got {kind!r}")
    return TunePlan(tuple(grid), share, kind)
