"""The MAC solver: the config of a family whose MACs land within a MAC budget's tolerance, as close to the
family's own shape as its scaling rule allows (a latency budget is solved by measurement: latency_solve)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.budget.spec import MAX_FINE_DEPARTURE, Budget
from bench.cost.analytic import Protocol, analytic_macs, has_formula
from bench.cost.counting import PRIMARY, count_macs, search_macs
from bench.errors import BenchError
from bench.train.tasks import model_task
from models import ConfigError, ModelConfig, create_model, resolve_config


@dataclass
class Solution:
    model: str
    config: ModelConfig
    macs: int  # confirmed by the budget's counter (paper convention)
    analytic_macs: int | None  # the hand formula's count; None for a family without one
    target_macs: int
    tolerance: float
    candidates: list[dict[str, Any]] = field(default_factory=list)
    # a latency budget's solution: target_ms, p50_ms (the confirming measurement), rel_error, setting, ...
    latency: dict[str, Any] | None = None
    solved_by: str = "analytic"  # what counted the candidates: the hand formula, or the primary counter

    @property
    def rel_error(self) -> float:
        return self.macs / self.target_macs - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config.to_dict(),
            "macs": self.macs,
            **({"analytic_macs": self.analytic_macs} if self.analytic_macs is not None else {}),
            "solved_by": self.solved_by,
            "target_macs": self.target_macs,
            "tolerance": self.tolerance,
            "rel_error": round(self.rel_error, 6),
            **({"latency": self.latency} if self.latency is not None else {}),
        }



SEARCH_COUNTER = PRIMARY  # what counts a candidate of a family without a hand formula
PAST_THE_BOUND = 4  # widths counted past the budget's upper bound: the nearest candidates are never beyond them


def count_config_macs(model: str, task: str, protocol: Protocol, overrides: dict[str, Any],
                      why: list[str] | None = None) -> tuple[ModelConfig, int] | None:
    """The config of ``model`` with ``overrides`` and its MACs (the hand formula, else the primary counter on a
    shape-only model on the meta device, bench.cost.counting.search_macs); None when the knobs make no valid member
    of the family (the registry's reason appended to ``why``).

    Args:
        model: the family.
        task: the model's task (bench.train.tasks.model_task).
        protocol: the inputs counted: batch, source and target tokens.
        overrides: config keys set on the family's defaults.
        why: takes the registry's reason when the knobs make no valid member; None: not told.
    """
    try:
        cfg = resolve_config(model, task, **overrides)
    except ConfigError as exc:
        if why is not None:
            why.append(str(exc))
        return None  # not a valid member of the family (e.g. heads do not divide d)
    if has_formula(cfg):
        return cfg, analytic_macs(cfg, protocol)["macs"]
    # a family without a hand formula (e.g. one just added in a single file): count the model on the meta device
    return cfg, search_macs(lambda: create_model(model, **cfg.to_dict()), protocol)


def grid_widths(budget: Budget, model: str, base: dict[str, Any],
                stop_above: int | None = None) -> list[tuple[int, ModelConfig, int]]:
    """The valid widths of ``model``'s grid, the family's fine-knob rule or rule.ffn_ratio: (width, config, MACs).

    Args:
        budget: the budget whose scaling rule gives the grid.
        model: the family.
        base: the knobs every candidate shares (the budget's fixed and shared ones).
        stop_above: MACs grow with width, so the search stops ``PAST_THE_BOUND`` valid widths after the first
            above this count (the nearest candidates to a target below it are never further out); a family
            without a hand formula is bisected to the target instead (each count builds the model). None: the
            whole grid, every width counted.
    """
    rule, task, proto = budget.models[model], model_task(budget.task), budget.protocol
    if stop_above is not None and not _has_formula(budget, model, base):
        return _bisected_widths(budget, model, base)
    widths, why, past = [], [], 0
    for d in range(rule.low, rule.high + 1, rule.step):
        ratio = {"ffn_dim": max(1, round(rule.ffn_ratio * d))} if rule.ffn_ratio is not None else {}
        got = count_config_macs(model, task, proto, {**base, rule.vary_key: d, **ratio}, why)
        if got is not None:
            widths.append((d, got[0], got[1]))
            past += stop_above is not None and got[1] > stop_above
            if past >= PAST_THE_BOUND:
                break
    if not widths:
        reason = f": {why[0]}" if why else ""
        raise BenchError(f"no valid {model} config on the grid {rule.vary_key}={rule.low}..{rule.high}{reason}")
    return widths


def _grid_configs(budget: Budget, model: str, base: dict[str, Any], why: list[str]) -> list[tuple[int, ModelConfig]]:
    """Every valid (width, config) of the grid; resolving a config builds no model, so this is cheap."""
    rule, task = budget.models[model], model_task(budget.task)
    out = []
    for d in range(rule.low, rule.high + 1, rule.step):
        ratio = {"ffn_dim": max(1, round(rule.ffn_ratio * d))} if rule.ffn_ratio is not None else {}
        try:
            out.append((d, resolve_config(model, task, **{**base, rule.vary_key: d, **ratio})))
        except ConfigError as exc:
            why.append(str(exc))
    return out


class LazyGrid:
    """The valid widths of a family's grid (resolved, cheap), each counted only when asked (the hand formula,
    else the primary counter on the meta device, which builds the model), once. MACs grow with width, so the
    searches below bisect: a search over the whole grid counts a dozen widths, not all of them (a grid to
    d_model 4096 has ~500; counting every one of a family without a formula takes minutes).

    Args:
        budget: the budget whose scaling rule gives the grid and whose protocol counts.
        model: the family.
        base: the knobs every candidate shares.
    """

    def __init__(self, budget: Budget, model: str, base: dict[str, Any]) -> None:
        why: list[str] = []
        self.configs = _grid_configs(budget, model, base, why)
        if not self.configs:
            rule = budget.models[model]
            reason = f": {why[0]}" if why else ""
            raise BenchError(f"no valid {model} config on the grid {rule.vary_key}={rule.low}..{rule.high}{reason}")
        self._budget, self._model = budget, model
        self.counts: dict[int, int] = {}  # index -> MACs, of the widths counted so far
        self.formula = has_formula(self.configs[0][1])

    def __len__(self) -> int:
        return len(self.configs)

    def macs(self, i: int) -> int:
        if i not in self.counts:
            cfg = self.configs[i][1]
            self.counts[i] = analytic_macs(cfg, self._budget.protocol)["macs"] if self.formula else \
                search_macs(lambda: create_model(self._model, **cfg.to_dict()), self._budget.protocol)
        return self.counts[i]

    @property
    def counted(self) -> int:
        """How many widths were counted so far."""
        return len(self.counts)

    def first_at_least(self, x: float, lo: int = 0) -> int | None:
        """The first index >= ``lo`` whose MACs are >= ``x``; None when none is."""
        i = self._first(lambda m: m >= x, lo, len(self))
        return i if i < len(self) else None

    def last_at_most(self, x: float, hi: int | None = None) -> int | None:
        """The last index <= ``hi`` (default: the grid's end) whose MACs are <= ``x``; None when none is."""
        first_over = self.first_over(x, 0, len(self) if hi is None else hi + 1)
        return first_over - 1 if first_over > 0 else None

    def first_over(self, x: float, lo: int, hi: int) -> int:
        """The first index in [lo, hi) whose MACs are > ``x``; ``hi`` when none is.

        Args:
            x: the MAC count.
            lo: the first index looked at.
            hi: one past the last index looked at.
        """
        return self._first(lambda m: m > x, lo, hi)

    def _first(self, holds: Callable[[int], bool], lo: int, hi: int) -> int:
        """The first index in [lo, hi) whose MACs satisfy ``holds`` (false, then true, as width grows); ``hi``
        when none does: a bisection."""
        while lo < hi:
            mid = (lo + hi) // 2
            if holds(self.macs(mid)):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def nearest(self, x: float) -> int:
        """The index whose MACs are nearest ``x`` (the lower on a tie)."""
        above = self.first_at_least(x)
        if above is None:
            return len(self) - 1
        if above == 0:
            return 0
        return above - 1 if x - self.macs(above - 1) <= self.macs(above) - x else above


def _has_formula(budget: Budget, model: str, base: dict[str, Any]) -> bool:
    """Whether the family's configs on this grid have a hand formula (the first valid one decides)."""
    rule, task = budget.models[model], model_task(budget.task)
    for d in range(rule.low, rule.high + 1, rule.step):
        ratio = {"ffn_dim": max(1, round(rule.ffn_ratio * d))} if rule.ffn_ratio is not None else {}
        try:
            return has_formula(resolve_config(model, task, **{**base, rule.vary_key: d, **ratio}))
        except ConfigError:
            continue
    return False


def _bisected_widths(budget: Budget, model: str, base: dict[str, Any]) -> list[tuple[int, ModelConfig, int]]:
    """A family without a hand formula: each count builds and runs the model (on the meta device), so the widths
    are bisected (MACs grow with width) to the first above the target, galloping up from the smallest; it and its
    ``PAST_THE_BOUND`` neighbours either side are counted: the candidates nearest the target are among them."""
    grid = LazyGrid(budget, model, base)
    # galloping from the small end (a bisection's first midpoint would build a model of half the grid's width),
    # then bisecting: the first index whose MACs exceed the target lies in [lo, hi]
    lo, hi, step = 0, 0, 1
    while hi < len(grid) and grid.macs(hi) <= budget.target_macs:
        lo, hi, step = hi + 1, hi + step, step * 2
    first = grid.first_over(budget.target_macs, lo, min(hi, len(grid)))
    for i in range(max(0, first - PAST_THE_BOUND), min(len(grid), first + PAST_THE_BOUND)):
        grid.macs(i)
    return [(*grid.configs[i], grid.counts[i]) for i in sorted(grid.counts)]


def _predicted(model: str, task: str, knobs: dict[str, Any], macs: float) -> tuple[ModelConfig, int] | None:
    try:
        return resolve_config(model, task, **knobs), round(macs)
    except ConfigError:
        return None


def confirmed_macs(budget: Budget, model: str, cfg: ModelConfig) -> int:
    """The budget's counter's MACs of ``cfg`` (the real model, paper convention).

    Args:
        budget: the budget whose counter and protocol count.
        model: the family.
        cfg: its resolved config.
    """
    report = count_macs(create_model(model, **cfg.to_dict()), counters=(budget.counter,), protocol=budget.protocol)
    return report.macs_by_counter[budget.counter]


def solve_mac_model(budget: Budget, model: str, confirm: bool = True) -> Solution:
    """The config of ``model`` (a family or a variant of ``budget``) whose MACs land within the budget's
    tolerance, as close to the family's own shape as the scaling rule allows. Deterministic. Raises
    BenchError when no config on the grid fits.

    Args:
        budget: a MAC budget (a latency budget is solved by budget.solve.solve_model).
        model: a family or a variant of the budget.
        confirm: count the chosen config with the budget's counter (the real model) and refuse a disagreement.
    """
    variant = budget.variants.get(model)
    if variant is not None and variant.ffn_ratio is not None:  # a shape's FFN ratio replaces the family's rule
        family = variant.model
        budget = replace(budget, models={**budget.models, family: replace(budget.models[family],
                                                                          ffn_ratio=variant.ffn_ratio)})
    base = budget.base_config(model)
    if _has_formula(budget, budget.family_of(model), base):
        return _solve(budget, model, base, confirm, predict=False)
    # without a formula each count builds a model: the fine knob's candidates are predicted from the line
    # through two counts (MACs are linear in it) and the chosen one counted; a miss counts every candidate
    sol = _solve(budget, model, base, True, predict=True)
    return sol if budget.low <= sol.macs <= budget.high else _solve(budget, model, base, confirm, predict=False)


def _solve(budget: Budget, model: str, base: dict[str, Any], confirm: bool, predict: bool) -> Solution:
    model = budget.family_of(model)
    rule, task, proto = budget.models[model], model_task(budget.task), budget.protocol
    target = budget.target_macs

    # 1. the width: every grid point, the family's own ffn rule
    widths = grid_widths(budget, model, base, stop_above=budget.high)
    smallest, largest = widths[0], widths[-1]

    # 2. the fine step: MACs are linear in ffn_dim at a fixed width; solve, round to the step, check
    candidates = []
    nearest = sorted(widths, key=lambda w: abs(w[2] - target))[:4]
    for d, cfg, macs in nearest:
        f0 = getattr(cfg, rule.fine_key)
        probe = count_config_macs(model, task, proto, {**base, rule.vary_key: d, rule.fine_key: f0 + rule.fine_step})
        if probe is None:
            continue
        slope = (probe[1] - macs) / rule.fine_step
        ideal = f0 + (target - macs) / slope if slope > 0 else f0
        for f in {
            max(rule.fine_step, rule.fine_step * round(ideal / rule.fine_step) + k * rule.fine_step) for k in (-1, 0, 1)
        }:
            if not f0 / MAX_FINE_DEPARTURE <= f <= f0 * MAX_FINE_DEPARTURE:
                continue  # the fine knob tunes; it does not reshape the model
            knobs = {**base, rule.vary_key: d, rule.fine_key: f}
            got = _predicted(model, task, knobs, macs + slope * (f - f0)) if predict else \
                count_config_macs(model, task, proto, knobs)
            if got is None or not budget.low <= got[1] <= budget.high:
                continue
            departure = abs(math.log(f / f0))
            candidates.append((departure, abs(got[1] - target), d, f, got[0], got[1]))
    if not candidates:
        if smallest[2] > budget.high:
            raise BenchError(
                f"budget {budget.name} ({target:,} MACs) is infeasible for {model}: its smallest config on the grid "
                f"({rule.vary_key}={smallest[0]}) already needs {smallest[2]:,} MACs"
            )
        if largest[2] < budget.low:
            raise BenchError(
                f"budget {budget.name} ({target:,} MACs) is beyond {model}'s grid: its largest config "
                f"({rule.vary_key}={largest[0]}) needs only {largest[2]:,} MACs"
            )
        raise BenchError(f"no {model} config within +-{budget.tolerance:.0%} of {target:,} MACs on the grid")
    candidates.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
    _, _, d, f, cfg, macs = candidates[0]
    confirmed = macs
    if predict:
        confirmed = confirmed_macs(budget, model, cfg)  # the caller falls back when it is outside the budget
    elif confirm:
        confirmed = confirmed_macs(budget, model, cfg)
        if not budget.low <= confirmed <= budget.high:
            raise BenchError(
                f"{model}: the {budget.counter} counter gives {confirmed:,} MACs for the solved config, outside the "
                f"budget although the analytic formula gives {macs:,}; the formula and the model disagree"
            )
    table = [{rule.vary_key: c[2], rule.fine_key: c[3], "macs": c[5]} for c in candidates]
    formula = has_formula(cfg)
    return Solution(model, cfg, confirmed, macs if formula else None, target, budget.tolerance, table,
                    solved_by="analytic" if formula else SEARCH_COUNTER)
