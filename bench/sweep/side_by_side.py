"""The sweep's paired-latency stage: all of a sweep's models timed side by side in one process
(bench.latency.compare), once per latency setting (device, threads, workload).

Each comparison is one record, ``<results>/runs/_compare-<hash>/latency_compare-<device>-t<threads>-<workload>.json``
(stage ``latency_compare``), written like every other stage's: under its stage lock, skipped when it exists,
holding the machine lock exclusively. The Transformer row is the reference (the sweep's first model when it
has none); the hash covers the members' names and config hashes, so another set of models or another config
gets its own folder and never reuses a stale comparison. The report turns the records into the leaderboard's
``latency_ratio_*`` columns (bench.report.latency_trust).

A latency budget's own figure (its setting's lone p50, the median of five fresh processes, which the
tolerance is checked against) is measured for every model of the sweep in interleaved rounds
(:func:`lone_stages`): process 1 of each model, then process 2 of each, in rotating order, so that the
machine's speed, which moves by several percent from minute to minute on a shared machine, weighs on every
family alike instead of on whichever family's turn it was.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.infra.stage_lock import locked
from bench.records.provenance import config_hash
from bench.records.schema import StageRecord, finished_record, write_record

if TYPE_CHECKING:
    from bench.sweep.runner import ModelRun, Sweep

REFERENCE = "transformer"
FOLDER_PREFIX = "_compare-"


@dataclass
class CompareGroup:
    """The models of one comparison, reference first; what the runner's stage machinery needs of a "run"."""

    runs: list[ModelRun]
    folder: Path
    key: str

    @property
    def names(self) -> list[str]:
        return [r.common()["model"] for r in self.runs]

    @property
    def model(self) -> str:
        return "+".join(self.names)

    def members(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(name, r.model, r.solution.config.to_dict()) for name, r in zip(self.names, self.runs)]

    def common(self) -> dict[str, Any]:
        first = self.runs[0].common()
        return {
            "model": self.model,
            "budget": first["budget"],
            "target_macs": first["target_macs"],
            "task": first["task"],
            "config_hash": self.key,
            "config": {name: cfg for name, _, cfg in self.members()},
            "schedule": first["schedule"],
            "corpus": first["corpus"],
            "members": [{"name": n, "model": r.model, "config_hash": r.key} for n, r in zip(self.names, self.runs)],
        }


def compare_group(sweep: Sweep) -> CompareGroup | None:
    """The sweep's models as one comparison (None with fewer than two)."""
    runs = [sweep.plan(m) for m in sweep.models]
    if len(runs) < 2:
        return None
    runs.sort(key=lambda r: r.row != REFERENCE)  # stable: the Transformer first, the others in sweep order
    key = config_hash({"members": [[r.row, r.key] for r in runs]})
    return CompareGroup(runs, sweep.results / "runs" / f"{FOLDER_PREFIX}{key}", key)


def compare_stages(sweep: Sweep) -> list[StageRecord]:
    """One paired comparison per latency setting (skipped when its record exists)."""
    from bench.latency import pooled  # torch (bench.latency): loaded only when models are timed

    group = compare_group(sweep)
    if group is None:
        sweep.opts.log("paired latency: skipped (fewer than two models)")
        return []
    sweep.opts.log(f"paired latency of {', '.join(group.names)} (reference {group.names[0]}):")
    # smoke runs time fewer rounds in one process (their records say so); a real sweep pools five processes,
    # so that the intervals cover what changes between processes (bench.latency.pooled)
    timing = {"rounds": 10, "warmup": 3, "processes": 1} if sweep.opts.quick else {}
    out = []
    for device, threads, workload in sweep.latency_settings():

        def measure(d: str = device, t: int = threads, w: str = workload) -> dict[str, Any]:
            res = pooled.compare_processes(group.members(), workload=w, threads=t, device=d,
                                           **sweep._latency_shape(), **timing)
            res.pop("configs", None)  # the record's config holds them
            return res

        out.append(sweep._stage(group, f"latency_compare-{device}-t{threads}-{workload}", measure))
    return out


def lone_stages(sweep: Sweep) -> list[StageRecord]:
    """A latency budget's own-setting records (``latency-<device>-t<threads>-<workload>``) of every model of
    the sweep that lacks one (all with ``--force``), measured in interleaved rounds of fresh processes
    (module docstring); the per-model stage then finds them written. Nothing with fewer than two such models
    (one model's stage measures it alone, as before), for a MAC budget, or on a smoke run."""
    from bench.cost.profiling import paper_macs  # torch, the model registry: loaded only when models are timed
    from bench.latency import LONE_PROCESSES, measure_in_subprocess, median_of_processes  # torch: only for timing

    lat = sweep.budget.latency
    if lat is None or sweep.opts.quick or (lat.dtype, lat.backend) != ("fp32", "eager") \
            or (lat.device, lat.threads, lat.workload) not in sweep.latency_settings():
        return []
    name = f"latency-{lat.device}-t{lat.threads}-{lat.workload}"
    runs = [sweep.plan(m) for m in sweep.models]
    with ExitStack() as stack:
        for r in runs:
            stack.enter_context(locked(r.folder, name))
        todo = [r for r in runs if sweep.opts.force or finished_record(r.folder / f"{name}.json") is None]
        if len(todo) < 2:
            return []
        sweep.opts.log(f"{name} of {', '.join(r.row for r in todo)}: {LONE_PROCESSES} fresh processes each, "
                       "in interleaved rounds")
        got: dict[str, list[dict[str, Any]]] = {r.row: [] for r in todo}
        started = time.perf_counter()
        with sweep._machine(name) as span:
            for i in range(LONE_PROCESSES):
                for r in todo[i % len(todo):] + todo[:i % len(todo)]:
                    config = r.solution.config.to_dict()
                    got[r.row].append(measure_in_subprocess(
                        r.model, config, workload=lat.workload, threads=lat.threads, device=lat.device,
                        paper_macs=paper_macs(r.model, config, sweep.budget.protocol), **sweep._latency_shape()))
        wall = time.perf_counter() - started
        out, figures = [], []
        for r in todo:
            rec = median_of_processes(got[r.row])
            figures.append(f"{r.row} {rec['p50_ms']:.3f} ms")
            rec.pop("model", None)
            rec.pop("config", None)
            rec["interleaved_with"] = [o.row for o in todo if o is not r]
            record = sweep._record(r, name, rec, wall, span)
            write_record(r.folder / f"{name}.json", record)
            sweep.fresh.add(r.folder / f"{name}.json")
            out.append(record)
        sweep.opts.log(f"  {name}: {wall:.1f} s ({', '.join(figures)})")
        return out
