"""Latency budgets, the families confirmed together: every family of a latency budget, solved one by one
(bench.budget.latency_solve), is then timed side by side with the others in the same processes, and its fine knob
moved until the families' estimates from those shared processes are within the tolerance of the target and
of one another.

Why a second step. Each family's own solve measures its candidates beside a reference model (the Transformer
at the MAC anchor), each family at its own time, and on a shared machine the families' speeds relative to one
another move with the machine's state (results/README.md gives the measured case: configs each confirmed within
1.5% on its own were 6-7% apart when timed together). Solved one by one, the families carry the machine state
of their own minutes; timed together, they share it.

The step, after every family's own solve:

1. Time the set (every family's current config, and the reference) in ``JOINT_PROCESSES`` fresh processes,
   interleaved rounds in each (bench.latency.compare, as the own solves do). A family's estimate is the
   median of its ratios to the reference over every process that timed its config in a set, times the
   reference's level: the median of its figures over every process of the families' own solves and of this
   step (one level for all families, over all the minutes the budget was measured in: the last set's own
   reference figures move by several percent from minute to minute, and the knobs would chase them).
2. The set is confirmed when every estimate is within the tolerance of the target and the largest is within
   the tolerance of the smallest. Otherwise every family outside the inner half of the tolerance moves its
   fine knob: a secant step over its configs timed in sets at that width, or, with only one, a step that
   assumes latency moves with MACs; then the new set is timed (``MAX_JOINT_ROUNDS`` rounds at most).
3. Of every set timed, the confirmed one whose farthest family is nearest the target is the solution; none
   confirmed fails in one line, naming the nearest set and the record.

The measurements are kept in ``results/<budget>/latency-solve/together.json`` (keyed by the setting, the
target, the families' own solutions, the machine and torch), so that the step resumes and a confirmed set costs
nothing. A variant row (post-norm, ...) keeps its own solve.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.budget.latency_solve import (
    PAIRED_ROUNDS,
    REPO,
    clamp,
    estimate_macs,
    fine_range,
    formula_macs,
    log_stderr,
    median,
    reference_config,
    setting_label,
    solve_latency,
    timed_shape,
    timing_key,
)
from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.train.tasks import model_task

JOINT_PROCESSES = 4  # fresh processes per set (one process's ratio moves by +-2.5%)
MAX_JOINT_ROUNDS = 4  # sets timed at most: the families' own solutions, then three steps
TOGETHER_VERSION = 2  # 2: the reference level over the own solves' processes too
TOGETHER_FILE = "together.json"
MeasureSet = Callable[[dict[str, tuple[str, dict[str, Any]]]], dict[str, Any]]


def measure_set_in_child(budget: Any, reference: tuple[str, dict[str, Any]] | None = None) -> MeasureSet:
    """The default measurement of a set: every row's config and the reference in one fresh process, in the
    budget's latency setting (interleaved rounds, rotating order). Returns each row's ratio to the reference
    and the reference's p50 in that process."""
    lat = budget.latency
    shape = timed_shape(budget)
    ref_family, ref_config = reference or reference_config(budget)

    def measure(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        # torch (bench.latency): loaded only when a set is timed
        from bench.latency.compare import compare_in_subprocess

        members = [("reference", ref_family, ref_config)] + [(row, fam, cfg) for row, (fam, cfg) in configs.items()]
        res = compare_in_subprocess(members, workload=lat.workload, threads=lat.threads, device=lat.device,
                                    dtype=lat.dtype, backend=lat.backend, rounds=PAIRED_ROUNDS, shape=shape)
        return {"ratios": {row: res["ratios"][row]["ratio"] for row in configs},
                "ref_p50_ms": res["p50_ms"]["reference"], "p50_ms": {row: res["p50_ms"][row] for row in configs},
                "quiet": bool(res.get("machine_quiet", True))}

    return measure


class TogetherLog:
    """The sets timed together, kept in a JSON file (written after every measurement, atomically)."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.path, self.key = path, key
        self.rows: list[dict[str, Any]] = []
        self.solution: dict[str, Any] | None = None
        self.own_refs: list[float] = []
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if data.get("version") == TOGETHER_VERSION and timing_key(data.get("key") or {}) == key:
                self.rows, self.solution = list(data.get("measurements", [])), data.get("solution")

    def level(self) -> float:
        """The reference's level: the median of its figures over every process of the families' own solves
        (``own_refs``) and of this step, so that an estimate carries the machine's speed over all the minutes
        the budget was measured in, not over the last set's (which moves by several percent from minute to
        minute and would have the fine knobs chase it)."""
        return median(self.own_refs + [r["ref_p50_ms"] for r in self.rows])

    def sets(self) -> list[dict[str, list[int]]]:
        """Every set timed, in the order of its first measurement."""
        out: list[dict[str, list[int]]] = []
        for m in self.rows:
            if m["configs"] not in out:
                out.append(m["configs"])
        return out

    def times(self, configs: dict[str, list[int]]) -> int:
        return sum(r["configs"] == configs for r in self.rows)

    def estimate(self, row: str, width: int, fine: int) -> float | None:
        """The estimated p50 (ms) of ``row`` at (``width``, ``fine``): the median of its ratios in the sets timed, times
        :meth:`level`; None when never timed.

        Args:
            row: a family of the budget.
            width: the value of the family's width knob.
            fine: the value of its fine knob.
        """
        mine = [r["ratios"][row] for r in self.rows if r["configs"].get(row) == [width, fine]]
        return median(mine) * self.level() if mine else None

    def add(self, configs: dict[str, list[int]], got: dict[str, Any]) -> None:
        self.rows.append({"configs": configs, "ratios": got["ratios"], "ref_p50_ms": float(got["ref_p50_ms"]),
                          "p50_ms": got.get("p50_ms"), "quiet": got.get("quiet", True),
                          "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        write_json(self.path, {"version": TOGETHER_VERSION, "key": self.key, "measurements": self.rows,
                               "solution": self.solution})


def solve_latency_budget(budget: Any, row: str, *, cache_dir: Path | None = None,
                         measures: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
                         measure_set: MeasureSet | None = None, log: Callable[[str], None] = log_stderr) -> Any:
    """The config of ``row`` at a latency budget: a family's is confirmed together with the budget's other
    families (module docstring); a variant's is its own solve. ``measures`` (row -> config -> figure) and
    ``measure_set`` replace the fresh-process measurements (tests give deterministic fakes).

    Args:
        budget: a latency budget.
        row: a family or a variant of it.
        cache_dir: where the measurements are kept; None: results/<budget>/latency-solve.
        measures: row -> a measurement that replaces its own solve's (tests); None: fresh processes.
        measure_set: replaces the measurement of a set of configs together (tests); None: a fresh process.
        log: takes each progress line (default: stderr).
    """
    # models, torch: loaded only when a latency budget is solved
    from bench.budget.mac_solver import LazyGrid, Solution, confirmed_macs

    measures = measures or {}
    families = list(budget.models)
    if row not in families or len(families) < 2:
        return solve_latency(budget, row, measure=measures.get(row), cache_dir=cache_dir, log=log)
    solo = {r: solve_latency(budget, r, measure=measures.get(r), cache_dir=cache_dir, log=log) for r in families}
    lat = budget.latency
    rules = {r: budget.models[r] for r in families}
    start = {r: [getattr(s.config, rules[r].vary_key), getattr(s.config, rules[r].fine_key)] for r, s in solo.items()}
    if measure_set is None:
        import torch  # torch: loaded only when this process times the sets

        # torch (bench.latency): loaded only when this process times the sets
        from bench.latency.machine import cpu_model_name

        reference = reference_config(budget)
        measure_set = measure_set_in_child(budget, reference)
        machine = {"cpu": cpu_model_name(), "torch": torch.__version__, "reference": list(reference)}
    else:
        machine = {"cpu": "given", "torch": "given"}
    folder = Path(cache_dir) if cache_dir is not None else REPO / "results" / budget.results_name() / "latency-solve"
    key = {"setting": lat.setting(), "target_ms": lat.target_ms, "tolerance": lat.tolerance, "task": budget.task,
           "base": {r: timing_key({"base": budget.base_config(r)})["base"] for r in families}, "own": start,
           **machine}
    joint = TogetherLog(folder / TOGETHER_FILE, timing_key(key))
    joint.own_refs = _own_references(folder, families)

    def solution_for(configs: dict[str, list[int]]) -> Any:
        d, f = configs[row]
        model = budget.family_of(row)
        cfg = _config(budget, row, d, f)
        p50 = joint.estimate(row, d, f)
        est = {r: joint.estimate(r, *configs[r]) for r in families}
        summary = {"target_ms": lat.target_ms, "tolerance": lat.tolerance, "p50_ms": round(p50, 4),
                   "rel_error": round(p50 / lat.target_ms - 1, 5), "setting": lat.setting(),
                   "measurements": sum(r["configs"].get(row) == [d, f] for r in joint.rows),
                   "record": str(joint.path) if joint.path else None,
                   "together": {"p50_ms": {r: round(v, 4) for r, v in est.items()},
                                "spread": round(max(est.values()) / min(est.values()) - 1, 5),
                                "own": {r: start[r] for r in families}}}
        return Solution(model, cfg, confirmed_macs(budget, model, cfg), formula_macs(budget, model, cfg),
                        budget.target_macs, budget.tolerance, latency=summary)

    if joint.solution is not None:
        log(f"  {row}: confirmed together before ({joint.path})")
        return solution_for(joint.solution)

    def confirmed(configs: dict[str, list[int]]) -> tuple[bool, float]:
        est = [joint.estimate(r, *configs[r]) for r in families]
        far = max(abs(math.log(e / lat.target_ms)) for e in est)
        return all(lat.low <= e <= lat.high for e in est) and max(est) / min(est) - 1 <= lat.tolerance, far

    fine0 = {r: {d: getattr(cfg, rules[r].fine_key) for d, cfg in LazyGrid(budget, budget.family_of(r),
                                                                            budget.base_config(r)).configs}
             for r in families}  # the family rule's fine knob per width: resolved, nothing counted
    current = {r: list(v) for r, v in start.items()}
    for round_ in range(MAX_JOINT_ROUNDS):
        recorded = joint.sets()
        if round_ < len(recorded):  # resuming: the sets an interrupted step chose, in their order
            current = {r: list(v) for r, v in recorded[round_].items()}
        for _ in range(JOINT_PROCESSES - joint.times(current)):
            got = measure_set({r: (budget.family_of(r), _config(budget, r, *current[r]).to_dict()) for r in families})
            joint.add({r: list(v) for r, v in current.items()}, got)
        est = {r: joint.estimate(r, *current[r]) for r in families}
        ok, _ = confirmed(current)
        log(f"  together ({setting_label(lat)}), set {round_ + 1}: " + ", ".join(
            f"{r} {rules[r].vary_key}={current[r][0]} {rules[r].fine_key}={current[r][1]} {est[r]:.3f} ms"
            for r in families) + (": confirmed" if ok else ""))
        if ok:
            break
        moved = False
        for r in families:
            low, high = lat.inner
            if low <= est[r] <= high:
                continue
            step = _next_fine_value(joint, budget, r, current[r], fine0[r][current[r][0]], lat.target_ms)
            if step != current[r][1]:
                current[r] = [current[r][0], step]
                moved = True
        if not moved:
            break
    sets = joint.sets()
    good = [(confirmed(s)[1], i) for i, s in enumerate(sets) if confirmed(s)[0]]
    if not good:
        far = min(sets, key=lambda s: confirmed(s)[1])
        desc = ", ".join(f"{r} {joint.estimate(r, *far[r]):.3f} ms" for r in families)
        raise BenchError(f"no set of {', '.join(families)} configs confirmed together within +-{lat.tolerance:.0%} "
                         f"of {lat.target_ms:g} ms ({setting_label(lat)}) and of one another: the nearest, {desc} "
                         f"(a noisy machine? see {joint.path})")
    joint.solution = sets[min(good)[1]]
    joint.save()
    return solution_for(joint.solution)


def _own_references(folder: Path, families: list[str]) -> list[float]:
    """The reference's figures in the families' own solves (their books, just read back by their solves)."""
    out: list[float] = []
    for r in families:
        try:
            data = json.loads((folder / f"{r}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out += [m["ref_p50_ms"] for m in data.get("measurements", []) if m.get("ref_p50_ms") is not None]
    return out


def _config(budget: Any, row: str, d: int, f: int) -> Any:
    from models import resolve_config  # the model registry (torch): loaded only when a config is resolved

    rule = budget.models[budget.family_of(row)]
    return resolve_config(budget.family_of(row), model_task(budget.task),
                          **{**budget.base_config(row), rule.vary_key: d, rule.fine_key: f})


def _next_fine_value(joint: TogetherLog, budget: Any, row: str, current: list[int], f0: int, target: float) -> int:
    """The fine knob's next value for ``row`` at its width: a secant over its configs timed together at that
    width (the two nearest the target), else a step that assumes latency moves in proportion to MACs (latency
    has a part that does not move with MACs, so this undershoots and the secant finishes); within a factor 2
    of the family rule (f0), at least one step toward the target."""
    d, f = current
    rule = budget.models[budget.family_of(row)]
    step = rule.fine_step
    seen = sorted({m["configs"][row][1] for m in joint.rows if m["configs"][row][0] == d})
    points = sorted(((abs(math.log(joint.estimate(row, d, g) / target)), g, joint.estimate(row, d, g))
                     for g in seen), key=lambda p: p[0])
    t = joint.estimate(row, d, f)
    slope = None
    if len(points) >= 2:
        (_, g1, t1), (_, g2, t2) = points[:2]
        slope = (t2 - t1) / (g2 - g1) if t2 > t1 and g2 > g1 or t2 < t1 and g2 < g1 else None
    if slope is None:
        macs = estimate_macs(budget, budget.family_of(row), _config(budget, row, d, f))
        more = estimate_macs(budget, budget.family_of(row), _config(budget, row, d, f + step))
        slope = t * (more - macs) / step / macs
    lo_f, hi_f = fine_range(f0, step)
    new = step * round((f + (target - t) / slope) / step) if slope > 0 else f
    if new == f:
        new = f + (step if t < target else -step)
    return clamp(new, lo_f, hi_f)
