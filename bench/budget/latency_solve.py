"""Latency budgets: every family solved to the same measured p50 in one setting, not to the same MAC count.

A MAC budget hides what a device pays per operator: at equal MACs Lite and ET are slower than the Transformer
on a CPU at batch 1. ``--budget 6ms`` asks the other question, which family is best at the same latency. The
search (:func:`solve_latency`), per family, on the family's own grid and scaling rule:

1. Bracket with MACs. Measure the width whose MACs are nearest the budget's anchor (100M), scale MACs by
   ``target / measured`` to estimate where the target lies, and take the widths within a factor 4 of that
   estimate in MACs (widened to the grid's ends when the measurements at the bracket's ends demand it).
2. Bisect the bracket on measured p50 (latency grows with width) down to two neighbouring widths, one at
   or under the target, one over it.
3. At the nearer of the two (then the other), move the fine knob (ffn_dim, in its step, within a factor 2 of
   the family rule, as the MAC solver does) by secant steps until the p50 is within half the tolerance (1.5%;
   the nearest step within the tolerance when the knob cannot get closer), so that families each confirmed
   within the tolerance end near one another.
4. Confirm: the chosen config is measured four more times, each in a new process, and is solved when the
   median of all its measurements lies within half the tolerance (one process's figure moves by a few percent
   from the next's, as much as the tolerance, and the reference level moves as its figures come in); a miss
   feeds the secant again (three rounds at most), and after the last round the config confirmed within the
   whole tolerance nearest the target is the one solved. When the fine knob cannot steer through the noise,
   the nearest config measured so far is the one confirmed.
5. A budget's families are then confirmed together, timed as one set (bench.budget.latency_together).

Every candidate is measured in a fresh process (bench.infra.launcher), under the machine lock and the quiet-machine
wait, side by side with a reference (the Transformer at the budget's MAC anchor, 100M) in interleaved rounds
(bench.latency.compare): a fresh process's figure moves by 5-10% from the next's for the small ET and Lite
configs, more than the tolerance, while a ratio to a model timed in the same process moves by about 1%. A
candidate's estimate is the median of its ratios times the median of every process's reference figure, over
every family of the folder (one reference level for all, so that their estimates compare as their ratios do;
timed beside a candidate, the reference runs as it does alone: measured 6.06 ms beside, 6.08 alone).
(Summarization times both at its own shapes.) Measurements are kept in
``results/<budget>/latency-solve/<model>.json`` (keyed by the setting, the family's base config without the
dropouts, which inference does not read, the machine's CPU model and the torch version), so that an
interrupted solve resumes and a solved one costs nothing; a config measured more than once counts with the
median of its measurements. A target that no config on the grid can meet fails in one line.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.budget.latency_target import AIM
from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.records.provenance import REPO
from bench.train.tasks import model_task

BRACKET = 4.0  # the MAC estimate's factor either side that the first bracket spans
MAX_SECANT = 4  # fine-knob steps per width
PAIRED_ROUNDS = 12  # interleaved rounds of a candidate beside the reference
MAX_CONFIRM = 3  # rounds of confirmation
CONFIRMS = 4  # new measurements of the chosen config per round (one process's ratio moves by +-2.5%)
SHARED_KEY = ("setting", "task", "protocol", "cpu", "torch", "reference")  # rows that share a reference level
SOLVE_VERSION = 4  # 2: confirmed by the median of fresh measurements; 3: timed beside a reference; 4: one
# reference level per folder, the fine knob aiming at half the tolerance, four confirmations

# ------------------------------------------------------------------------------------------------ the book
Measure = Callable[[dict[str, Any]], dict[str, Any]]  # a config -> {"p50_ms", "cv", "latency_status"}


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    got = sorted(values)
    mid = len(got) // 2
    return got[mid] if len(got) % 2 else (got[mid - 1] + got[mid]) / 2


TRAINING_ONLY = ("dropout", "attention_dropout", "activation_dropout", "weight_dropout")  # no-ops at inference


def timing_key(key: dict[str, Any]) -> dict[str, Any]:
    """``key`` as JSON sees it, without the knobs that only training reads (the dropouts) in the row's base config
    and the reference's: a budget that changes its regularisation times the same models and keeps its solve."""
    key = json.loads(json.dumps(key, default=str))
    if isinstance(key.get("base"), dict):
        key["base"] = {k: v for k, v in key["base"].items() if k not in TRAINING_ONLY}
    ref = key.get("reference")
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], dict):
        key["reference"] = [ref[0], {k: v for k, v in ref[1].items() if k not in TRAINING_ONLY}]
    return key


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(timing_key(key), sort_keys=True).encode()).hexdigest()[:12]


class MeasurementLog:
    """The measurements of one family's solve, kept in a JSON file (written after every measurement, atomically)
    so that a solve resumes; measurements of another setting, base config (dropouts aside: :func:`timing_key`),
    machine or torch are not reused."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.path, self.key = path, key
        self.digest = _digest(key)
        self.rows: list[dict[str, Any]] = []
        self.solution: dict[str, Any] | None = None
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if data.get("version") == SOLVE_VERSION and _digest(data.get("key") or {}) == self.digest:
                self.rows, self.solution = list(data.get("measurements", [])), data.get("solution")
        self.shared = self._other_references()

    def _other_references(self) -> list[float]:
        """The reference's figures the other rows of this folder measured in the same setting, on the same
        machine, beside the same reference: every family's estimate scales its ratios by one reference level."""
        if self.path is None or not self.path.parent.is_dir():
            return []
        common = {k: timing_key(self.key).get(k) for k in SHARED_KEY}
        out = []
        for other in sorted(self.path.parent.glob("*.json")):
            if other == self.path:
                continue
            try:
                data = json.loads(other.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            key = timing_key(data.get("key") or {})
            if data.get("version") == SOLVE_VERSION and {k: key.get(k) for k in SHARED_KEY} == common:
                out += [r["ref_p50_ms"] for r in data.get("measurements", []) if r.get("ref_p50_ms") is not None]
        return out

    def reference_level(self) -> float:
        """The median of every process's reference figure, this row's and the folder's other rows'."""
        return median(self.shared + [r["ref_p50_ms"] for r in self.rows if r.get("ref_p50_ms") is not None])

    def p50(self, d: int, f: int) -> float | None:
        """The estimate of (width d, fine knob f), None when it was never measured: measured beside the
        reference, the median of its ratios times the reference level (:meth:`reference_level`); measured
        alone, the median of its p50s."""
        mine = [r for r in self.rows if r["width"] == d and r["fine"] == f]
        if not mine:
            return None
        if all(r.get("ratio") is not None for r in mine):
            return median([r["ratio"] for r in mine]) * self.reference_level()
        return median([r["p50_ms"] for r in mine])

    def add(self, d: int, f: int, purpose: str, got: dict[str, Any]) -> None:
        """Record one measurement of (width, fine knob) and save the book.

        Args:
            d: the width knob's value.
            f: the fine knob's value.
            purpose: why it was timed ("width", "fine", ...), kept with the row.
            got: the measurement: ``p50_ms`` and, when timed beside the reference, ``ratio``, ``ref_p50_ms``.
        """
        self.rows.append({"width": d, "fine": f, "purpose": purpose, "p50_ms": float(got["p50_ms"]),
                          "ratio": got.get("ratio"), "ref_p50_ms": got.get("ref_p50_ms"),
                          "cv": got.get("cv"), "latency_status": got.get("latency_status"),
                          "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        self.save()

    def discard(self) -> None:
        """Remove the book, and the folders it created that stay empty: a target no config can meet leaves no
        results folder behind (a noisy miss keeps its book, so that a re-run goes on from it)."""
        if self.path is None:
            return
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break

    def save(self) -> None:
        if self.path is None:
            return
        write_json(self.path, {"version": SOLVE_VERSION, "key": self.key, "key_digest": self.digest,
                               "measurements": self.rows, "solution": self.solution})


# ------------------------------------------------------------------------------------------------ the solver
def reference_config(budget: Any) -> tuple[str, dict[str, Any]]:
    """The model every candidate is timed beside: the Transformer (else the budget's first family) solved at
    the budget's MAC anchor (100M unless the file says otherwise)."""
    from bench.budget.mac_solver import solve_mac_model  # models, torch: loaded only when a latency budget is solved

    family = "transformer" if "transformer" in budget.models else next(iter(budget.models))
    return family, solve_mac_model(replace(budget, latency=None), family).config.to_dict()


def timed_shape(budget: Any) -> dict[str, int] | None:
    """The shapes a latency budget's candidates (and the reference) are timed at: summarization's own, else
    the protocol's 30 + 30 (None)."""
    return {"src_len": budget.protocol.src_tokens, "tgt_len": budget.protocol.tgt_tokens} \
        if budget.task == "sum" else None


def measure_in_child(budget: Any, model: str, reference: tuple[str, dict[str, Any]] | None = None) -> Measure:
    """The default measurement, in a fresh process, in the budget's latency setting: the candidate timed side
    by side with the reference (:func:`reference_config`; bench.latency.compare, interleaved rounds), so that
    its figure is a ratio to a model measured in the same process, under the same conditions (summarization:
    both at its own shapes).

    Args:
        budget: a latency budget (its setting: workload, threads, device, dtype, backend).
        model: the family whose candidates are timed.
        reference: (family, config) timed beside each candidate; None: :func:`reference_config`.
    """
    lat = budget.latency
    shape = timed_shape(budget)
    ref_family, ref_config = reference or reference_config(budget)

    def paired(config: dict[str, Any]) -> dict[str, Any]:
        # torch (bench.latency): loaded only when candidates are timed
        from bench.latency.compare import compare_in_subprocess

        res = compare_in_subprocess([("reference", ref_family, ref_config), ("candidate", model, config)],
                                    workload=lat.workload, threads=lat.threads, device=lat.device, dtype=lat.dtype,
                                    backend=lat.backend, rounds=PAIRED_ROUNDS, shape=shape)
        return {"p50_ms": res["p50_ms"]["candidate"], "ratio": res["ratios"]["candidate"]["ratio"],
                "ref_p50_ms": res["p50_ms"]["reference"], "cv": res["cv"]["candidate"],
                "latency_status": None if res.get("machine_quiet", True) else "not quiet"}

    return paired


def solve_latency(budget: Any, row: str, *, measure: Measure | None = None, cache_dir: Path | None = None,
                  log: Callable[[str], None] = log_stderr) -> Any:
    """The config of row ``row`` (a family or a variant) whose measured p50 in ``budget.latency``'s setting is
    within its tolerance of the target (module docstring). Returns a bench.budget.Solution whose ``latency``
    says what was measured. ``measure``: a config dict -> {"p50_ms", ...} (tests give a deterministic fake;
    default: :func:`measure_in_child`). ``cache_dir``: where the measurements are kept (default
    results/<budget>/latency-solve; tests give a temporary folder).

    Args:
        budget: a latency budget.
        row: a family or a variant of it.
        measure: config dict -> {"p50_ms", ...}; None: :func:`measure_in_child`.
        cache_dir: where the measurements are kept; None: results/<budget>/latency-solve.
        log: takes each progress line (default: stderr).
    """
    # models, torch: loaded only when a latency budget is solved
    from bench.budget.mac_solver import LazyGrid, Solution, confirmed_macs
    from bench.latency.machine import cpu_model_name  # torch: loaded only when a latency budget is solved
    from models import resolve_config  # the model registry (torch): loaded only when a latency budget is solved

    lat = budget.latency
    base = budget.base_config(row)
    model = budget.family_of(row)
    rule = budget.models[model]
    task = model_task(budget.task)
    if measure is None:
        import torch  # torch: loaded only when this process times the candidates

        reference = reference_config(budget)
        measure = measure_in_child(budget, model, reference)
        machine = {"cpu": cpu_model_name(), "torch": torch.__version__, "reference": reference}
    else:
        machine = {"cpu": "given", "torch": "given"}
    folder = Path(cache_dir) if cache_dir is not None else REPO / "results" / budget.results_name() / "latency-solve"
    key = {"setting": lat.setting(), "task": budget.task, "base": base, "rule": [rule.vary_key, rule.step, rule.low,
           rule.high, rule.fine_key, rule.fine_step], "protocol": [budget.protocol.src_tokens,
           budget.protocol.tgt_tokens], **machine}
    book = MeasurementLog(folder / f"{row}.json", key)
    target, tol = lat.target_ms, lat.tolerance

    def config(d: int, f: int) -> Any:
        return resolve_config(model, task, **{**base, rule.vary_key: d, rule.fine_key: f})

    if book.solution is not None:  # solved before in this setting: nothing to measure
        sol = book.solution
        cfg = config(sol["width"], sol["fine"])
        log(f"  {row}: latency solve done before ({book.path}), {sol['p50_ms']:.3f} ms")
        return Solution(model, cfg, sol["macs"], sol["analytic_macs"], budget.target_macs, budget.tolerance,
                        latency=_summary(lat, sol, book))
    grid = LazyGrid(budget, model, base)  # counted only where the bracket and the bisection look
    widths = grid.configs
    rule_fine = {d: getattr(cfg, rule.fine_key) for d, cfg in widths}

    def t(i: int, f: int | None = None, purpose: str = "width") -> float:
        d = widths[i][0]
        f = rule_fine[d] if f is None else f
        known = book.p50(d, f)
        if known is not None and purpose != "confirm":
            return known
        got = measure(config(d, f).to_dict())
        book.add(d, f, purpose, got)
        ratio = f", {got['ratio']:.3f} x the reference's {got['ref_p50_ms']:.3f} ms" if got.get("ratio") else ""
        log(f"  {row}: {rule.vary_key}={d}, {rule.fine_key}={f}: {float(got['p50_ms']):.3f} ms{ratio} ({purpose})")
        return book.p50(d, f)  # type: ignore[return-value]

    # 1. the MAC bracket around the anchor's estimate, moved until the target lies inside it
    # (MACs grow with width: each search below bisects the grid, counting a few widths, not all of them)
    last = len(widths) - 1
    anchor = grid.nearest(budget.target_macs)
    est = grid.macs(anchor) * target / t(anchor, purpose="anchor")
    lo = _or(grid.first_at_least(est / BRACKET), last)
    hi = _or(grid.last_at_most(est * BRACKET), 0)
    lo, hi = min(lo, hi), max(lo, hi)
    if t(lo, purpose="bracket") > target:
        while t(lo, purpose="bracket") > target and lo > 0:
            hi, lo = lo, _or(grid.last_at_most(grid.macs(lo) / BRACKET, hi=lo - 1), 0)
    elif t(hi, purpose="bracket") <= target:
        while t(hi, purpose="bracket") <= target and hi < last:
            lo, hi = hi, _or(grid.first_at_least(grid.macs(hi) * BRACKET, lo=hi + 1), last)
    name = f"{budget.name} ({target:g} ms, {setting_label(lat)})"
    if t(lo) > lat.high:
        book.discard()
        raise BenchError(f"latency budget {name} is infeasible for {row}: its smallest config on the grid "
                         f"({rule.vary_key}={widths[lo][0]}) already takes {t(lo):.3f} ms")
    if t(hi) < lat.low:
        book.discard()
        raise BenchError(f"latency budget {name} is beyond {row}'s grid: its largest config "
                         f"({rule.vary_key}={widths[hi][0]}) takes only {t(hi):.3f} ms")
    # 2. bisect to neighbours: t(lo) <= target < t(hi), or the grid's end
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t(mid, purpose="bisect") <= target:
            lo = mid
        else:
            hi = mid
    # 3 + 4. the fine knob at the nearer width (then the other), then the confirmation: CONFIRMS more
    # measurements of the chosen config, each in a new process, and it is solved when the median of all its
    # measurements lies within half the tolerance (one process's figure can move by as much as the tolerance,
    # and the reference level moves as its figures come in); a miss steps the fine knob again from the
    # updated medians; after the last round, the config confirmed within the tolerance nearest the target
    order = sorted({lo, hi}, key=lambda i: abs(math.log(t(i) / target)))
    near = {widths[j][0] for j in order}
    aim = lat.inner
    confirmed: list[tuple[int, int]] = []  # confirmed within the tolerance, not within its inner half
    for round_ in range(MAX_CONFIRM):
        found = None
        for i in order:
            found = _secant_on_fine_knob(i, widths[i][0], rule_fine[widths[i][0]], rule.fine_step, t, lat)
            if found is not None:
                break
        if found is None:  # the knob could not steer through the noise: the nearest config measured so far
            best = min((r for r in book.rows if r["width"] in near),
                       key=lambda r: abs(math.log(book.p50(r["width"], r["fine"]) / target)))
            found = next(j for j in order if widths[j][0] == best["width"]), best["fine"]
        i, f = found
        for _ in range(CONFIRMS):
            t(i, f, purpose="confirm")
        median = book.p50(widths[i][0], f)
        if aim[0] <= median <= aim[1]:
            break
        if lat.low <= median <= lat.high:
            confirmed.append((i, f))
        log(f"  {row}: {'not ' if (i, f) not in confirmed else ''}confirmed within {tol:.0%} ({rule.vary_key}="
            f"{widths[i][0]} {rule.fine_key}={f}: median {median:.3f} ms over its measurements), not within "
            f"{AIM * tol:.1%}" + ("; stepping again" if round_ < MAX_CONFIRM - 1 else ""))
    else:
        # the reference level moves as measurements come in: the confirmed config nearest the target now
        near_now = [c for c in confirmed if lat.low <= book.p50(widths[c[0]][0], c[1]) <= lat.high]
        if near_now:
            i, f = min(near_now, key=lambda c: abs(math.log(book.p50(widths[c[0]][0], c[1]) / target)))
    if not (lat.low <= book.p50(widths[i][0], f) <= lat.high):
        best = min(book.rows, key=lambda r: abs(math.log(book.p50(r["width"], r["fine"]) / target)))
        raise BenchError(
            f"no {row} config confirmed within +-{tol:.0%} of {target:g} ms ({setting_label(lat)}) on the grid: the "
            f"nearest measured, {rule.vary_key}={best['width']} {rule.fine_key}={best['fine']}, takes "
            f"{book.p50(best['width'], best['fine']):.3f} ms (median; a noisy machine? see {book.path})")
    d = widths[i][0]
    cfg = config(d, f)
    analytic = formula_macs(budget, model, cfg)
    counted = confirmed_macs(budget, model, cfg)
    book.solution = {"width": d, "fine": f, "p50_ms": book.p50(d, f), "macs": counted, "analytic_macs": analytic,
                     "measurements": len(book.rows)}
    book.save()
    return Solution(model, cfg, counted, analytic, budget.target_macs, budget.tolerance,
                    latency=_summary(lat, book.solution, book))


def _or(i: int | None, default: int) -> int:
    return default if i is None else i


def _secant_on_fine_knob(i: int, d: int, f0: int, step: int, t: Callable[..., float],
                         lat: Any) -> tuple[int, int] | None:
    """Secant steps on the fine knob at width index ``i`` (f0: the family rule's value) until the p50 lands in
    the inner half of the tolerance (AIM: so that the families of a folder, each confirmed within the
    tolerance, still end near one another); (i, f), the nearest within the tolerance when the knob cannot
    reach the inner half, or None when its range (f0 / 2 .. 2 f0, in its step) cannot reach the tolerance."""
    target = lat.target_ms
    aim = lat.inner
    lo_f, hi_f = fine_range(f0, step)
    within: list[tuple[float, int]] = []  # (|log departure|, f) of every step inside the tolerance

    def done(f: int, t_f: float) -> bool:
        if lat.low <= t_f <= lat.high:
            within.append((abs(math.log(t_f / target)), f))
        return aim[0] <= t_f <= aim[1]

    def nearest() -> tuple[int, int] | None:
        return (i, min(within)[1]) if within else None

    f_prev, t_prev = f0, t(i, f0)
    if done(f0, t_prev):
        return i, f0
    f = clamp(step * round(f0 * (1.5 if t_prev < target else 1 / 1.5) / step), lo_f, hi_f)
    if within:  # already inside the tolerance: small steps toward the target, not the first jump
        f = clamp(f0 + step * (1 if t_prev < target else -1), lo_f, hi_f)
    tried = {f0}
    for _ in range(MAX_SECANT):
        if f in tried:
            return nearest()
        tried.add(f)
        t_f = t(i, f, purpose="fine")
        if done(f, t_f):
            return i, f
        if t_f == t_prev:
            return nearest()
        slope = (t_f - t_prev) / (f - f_prev)
        if slope <= 0:  # noise larger than the knob's effect: nothing to steer by
            return nearest()
        f_prev, t_prev = f, t_f
        f = clamp(step * round((f + (target - t_f) / slope) / step), lo_f, hi_f)
    return nearest()


def fine_range(f0: int, step: int) -> tuple[int, int]:
    """The fine knob's range: within a factor 2 of the family rule's value ``f0``, in its step."""
    return max(step, step * math.ceil(f0 / 2 / step)), step * math.floor(2 * f0 / step)


def clamp(f: int, low: int, high: int) -> int:
    """``f`` held to [``low``, ``high``], as an int.

    Args:
        f: the value.
        low: the smallest allowed.
        high: the largest allowed.
    """
    return int(min(max(f, low), high))


def formula_macs(budget: Any, model: str, cfg: Any) -> int | None:
    """The hand formula's MACs of ``cfg``; None for a family without one (a record's ``analytic_macs`` is
    never another counter's number).

    Args:
        budget: the budget whose protocol counts.
        model: the family.
        cfg: its resolved config.
    """
    # bench.cost.analytic loads the model registry (torch): only when MACs are counted
    from bench.cost.analytic import analytic_macs, has_formula

    return analytic_macs(cfg, budget.protocol)["macs"] if has_formula(cfg) else None


def estimate_macs(budget: Any, model: str, cfg: Any) -> int:
    """MACs to steer a search by: the hand formula, else the budget's counter on the real model.

    Args:
        budget: the budget whose protocol and counter count.
        model: the family.
        cfg: its resolved config.
    """
    from bench.budget.mac_solver import confirmed_macs  # models, torch: loaded only when MACs are counted

    got = formula_macs(budget, model, cfg)
    return got if got is not None else confirmed_macs(budget, model, cfg)


def setting_label(lat: Any) -> str:
    return f"{lat.device}, {lat.threads} thread{'s' if lat.threads != 1 else ''}, {lat.workload}, {lat.dtype}, " \
           f"{lat.backend}"


def _summary(lat: Any, sol: dict[str, Any], book: MeasurementLog) -> dict[str, Any]:
    return {"target_ms": lat.target_ms, "tolerance": lat.tolerance, "p50_ms": round(sol["p50_ms"], 4),
            "rel_error": round(sol["p50_ms"] / lat.target_ms - 1, 5), "setting": lat.setting(),
            "measurements": sol["measurements"], "record": str(book.path) if book.path else None}
