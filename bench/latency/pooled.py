"""Paired latency over several processes: the ratio's interval covers what changes from one process to the next.

Within one process the rounds of a comparison agree closely, and a bootstrap over them gives a narrow
interval; but a second process can give a ratio a few percent away (measured here: 3.5-4.8% on the translate
workload of the 100M models, far outside the first process's interval), because the state a process starts in
(memory layout, caches, the core it runs on, the machine's clock) weighs differently on a family of a few large
GEMMs and one of many small ops. :func:`compare_processes` therefore runs the comparison in ``processes``
fresh processes one after another (each ``rounds / processes`` rounds, at least 2) and pools them: a model's
ratio is the geometric mean over every round of every process; its 95% interval is Student's t over the
processes' mean log-ratios (the process is the unit that varies; a bootstrap over five processes gives
intervals too narrow to hold a second comparison); its ``p50_ms`` and ``cv`` are the medians of the processes'
figures. The per-process ratios stay in the result
(``process_ratios``), so a reader sees the spread the interval summarises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.latency import compare
from bench.latency.compare import ROUNDS

PROCESSES = 5


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (``q`` in (0.5, 1)): bisection on its CDF, the density integrated by Simpson's rule."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def cdf(x: float, n: int = 4000) -> float:
        h = x / n
        ys = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
        return 0.5 + h / 3 * (ys[0] + ys[-1] + 4 * sum(ys[1:-1:2]) + 2 * sum(ys[2:-1:2]))

    lo, hi = 0.0, 1.0
    while cdf(hi) < q:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2


def pooled_ratios(per_process: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """``per_process``: one (rounds, models) array of round figures per process (two or more). Per model: the
    geometric mean over all rounds of its figure over model 0's in the same round, and the 95% Student t
    interval over the processes' mean log-ratios (processes - 1 degrees of freedom): with a handful of
    processes a bootstrap over them is too narrow."""
    logs = [np.log(a) - np.log(a[:, :1]) for a in per_process]
    if len(logs) < 2:
        raise BenchError("a pooled comparison needs two or more processes")
    pooled = np.concatenate(logs)
    means = np.stack([lg.mean(axis=0) for lg in logs])  # (processes, models)
    half = t_quantile(0.975, len(logs) - 1) * means.std(axis=0, ddof=1) / math.sqrt(len(logs))
    center = pooled.mean(axis=0)
    return [{"ratio": float(np.exp(center[j])), "ci95": [float(np.exp(center[j] - half[j])),
                                                         float(np.exp(center[j] + half[j]))]}
            for j in range(pooled.shape[1])]


def merge(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from the results of several processes (each as :func:`compare_latency` returns it)."""
    first = runs[0]
    names = first["models"]
    arrays = [np.array([r["round_ms"][n] for n in names], dtype=float).T for r in runs]
    ratios = pooled_ratios(arrays)
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
                        f"round median); 95% Student t interval over the processes' mean log-ratios "
                        f"({len(runs) - 1} degrees of freedom)",
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
    process is :func:`bench.latency.compare.compare_in_subprocess` itself.

    Args:
        members: (name, registered family, solved config) of each model, the reference first.
        processes: fresh processes, one after another.
        rounds: rounds in all, shared among the processes (at least 2 each).
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise BenchError(f"--processes must be a positive integer, got {processes!r}")
    if processes == 1:
        return compare.compare_in_subprocess(members, rounds=rounds, **kwargs)
    per = max(2, math.ceil(rounds / processes))
    runs = [compare.compare_in_subprocess(members, rounds=per, **kwargs) for _ in range(processes)]
    return merge(runs)
