"""Paired latency over several processes: the ratio's interval covers what changes from one process to the next.

Within one process the rounds of a comparison agree closely, and a bootstrap over them gives a narrow
interval; but a second process can give a ratio a few percent away (measured here: 3.5-4.8% on the translate
workload of the 100M models, far outside the first process's interval), because the state a process starts in
(memory layout, caches, the core it runs on, the machine's clock) weighs differently on a family of a few large
GEMMs and one of many small ops. :func:`compare_processes` therefore runs the comparison in ``processes``
fresh processes one after another (each ``rounds / processes`` rounds, at least 2) and pools them: a model's
ratio is the geometric mean over every round of every process; its 95% interval is a two-level percentile
bootstrap, processes drawn with replacement and then rounds within each drawn process; its ``p50_ms`` and
``cv`` are the medians of the processes' figures. The per-process ratios stay in the result
(``process_ratios``), so a reader sees the spread the interval summarises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.errors import BenchError

from . import compare
from .compare import RESAMPLES, ROUNDS

PROCESSES = 5


def pooled_ratios(per_process: Sequence[np.ndarray], resamples: int = RESAMPLES,
                  seed: int = 0) -> list[dict[str, Any]]:
    """``per_process``: one (rounds, models) array of round figures per process. Per model: the geometric mean
    over all rounds of its figure over model 0's in the same round, and the 95% two-level bootstrap interval
    (processes, then rounds within each)."""
    logs = [np.log(a) - np.log(a[:, :1]) for a in per_process]
    pooled = np.concatenate(logs)
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, pooled.shape[1]))
    for b in range(resamples):
        chosen = rng.integers(0, len(logs), size=len(logs))
        draws = [logs[p][rng.integers(0, len(logs[p]), size=len(logs[p]))] for p in chosen]
        boot[b] = np.exp(np.concatenate(draws).mean(axis=0))
    out = []
    for j in range(pooled.shape[1]):
        lo, hi = np.percentile(boot[:, j], [2.5, 97.5])
        out.append({"ratio": float(np.exp(pooled[:, j].mean())), "ci95": [float(lo), float(hi)]})
    return out


def merge(runs: Sequence[dict[str, Any]], resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """One result from the results of several processes (each as :func:`compare_latency` returns it)."""
    first = runs[0]
    names = first["models"]
    arrays = [np.array([r["round_ms"][n] for n in names], dtype=float).T for r in runs]
    ratios = pooled_ratios(arrays, resamples, seed)
    ratios[0] = {"ratio": 1.0, "ci95": [1.0, 1.0]}
    not_quiet = [r["not_quiet"] for r in runs if not r.get("machine_quiet", True)]
    return {
        **first,
        "processes": len(runs),
        "rounds": sum(r["rounds"] for r in runs),
        "rounds_per_process": [r["rounds"] for r in runs],
        "p50_ms": {n: float(np.median([r["p50_ms"][n] for r in runs])) for n in names},
        "cv": {n: float(np.median([r["cv"][n] for r in runs])) for n in names},
        "ratios": dict(zip(names, ratios)),
        "process_ratios": {n: [r["ratios"][n]["ratio"] for r in runs] for n in names},
        "process_p50_ms": {n: [r["p50_ms"][n] for r in runs] for n in names},
        "ratio_method": f"geometric mean over the rounds of {len(runs)} processes of (round median / reference's "
                        "round median); 95% two-level percentile bootstrap, processes then rounds within each, "
                        f"{resamples} resamples",
        "round_ms": {n: [v for a in arrays for v in a[:, j].tolist()] for j, n in enumerate(names)},
        "round_process": [p for p, a in enumerate(arrays) for _ in range(len(a))],
        "lock_wait_s": round(sum(r.get("lock_wait_s") or 0.0 for r in runs), 3),
        "quiet_wait_s": round(sum(r.get("quiet_wait_s") or 0.0 for r in runs), 3),
        "machine_quiet": not not_quiet,
        "not_quiet": not_quiet[0] if not_quiet else None,
    }


def compare_processes(members: Sequence[tuple[str, str, dict[str, Any]]], *, processes: int = PROCESSES,
                      rounds: int = ROUNDS, **kwargs: Any) -> dict[str, Any]:
    """The comparison in ``processes`` fresh processes, one after another, pooled (module docstring); one
    process is :func:`bench.latency.compare.compare_in_subprocess` itself."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise BenchError(f"--processes must be a positive integer, got {processes!r}")
    if processes == 1:
        return compare.compare_in_subprocess(members, rounds=rounds, **kwargs)
    per = max(2, math.ceil(rounds / processes))
    runs = [compare.compare_in_subprocess(members, rounds=per, **kwargs) for _ in range(processes)]
    return merge(runs, resamples=kwargs.get("resamples", RESAMPLES), seed=kwargs.get("seed", 0))
