"""Timing statistics: time single calls under the protocol's minima and derive p50, p90, mean, IQR and CV
from the raw samples, with a warning when the spread is too wide to trust."""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.latency.machine import synchronize

# the protocol's minima
MIN_WARMUP = 10
MIN_RUNS = 30
MIN_TIME_S = 1.0
MAX_RUNS = 100_000  # bounds the record of a very fast call
# when the spread is too wide to trust
CV_WARN = 0.05
IQR_WARN = 0.10
# a figure whose CV exceeds CV_WARN is timed again, at most MAX_TRIES times in all (LITEBENCH_LATENCY_TRIES)
MAX_TRIES = 3
TRIES_ENV = "LITEBENCH_LATENCY_TRIES"


@dataclass
class Measurement:
    """Raw per-call times (ms) and the statistics derived from them (cf. torch.utils.benchmark.Measurement).

    Percentiles are numpy's default (linear interpolation); ``cv`` is the sample standard deviation
    (ddof=1) over the mean; ``iqr_ms`` = p75 - p25.
    """

    samples_ms: list[float]
    label: str = ""
    min_runs: int = MIN_RUNS
    min_time_s: float = MIN_TIME_S
    warmup: int = MIN_WARMUP

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def _pct(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples_ms, dtype=np.float64), q)) if self.n else math.nan

    @property
    def p50_ms(self) -> float:
        return self._pct(50)

    @property
    def p90_ms(self) -> float:
        return self._pct(90)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms)) if self.n else math.nan

    @property
    def iqr_ms(self) -> float:
        return self._pct(75) - self._pct(25)

    @property
    def cv(self) -> float:
        if self.n < 2:
            return math.nan
        return float(np.std(self.samples_ms, ddof=1) / np.mean(self.samples_ms))

    @property
    def total_s(self) -> float:
        return float(np.sum(self.samples_ms)) / 1e3

    @property
    def warning(self) -> str | None:
        """Why these samples should not be trusted, in one line; None when they can be."""
        why = []
        if self.n < MIN_RUNS or self.total_s < MIN_TIME_S or self.warmup < MIN_WARMUP:
            why.append(
                f"below the protocol's minima ({self.warmup} warm-up, {self.n} calls, {self.total_s:.2f} s; "
                f"needs >= {MIN_WARMUP}, >= {MIN_RUNS}, >= {MIN_TIME_S:g} s)"
            )
        if self.n >= 2 and self.cv > CV_WARN:
            why.append(f"CV {self.cv:.1%} > {CV_WARN:.0%}")
        if self.n and self.p50_ms > 0 and self.iqr_ms / self.p50_ms > IQR_WARN:
            why.append(f"IQR {self.iqr_ms / self.p50_ms:.1%} of the median > {IQR_WARN:.0%}")
        return "; ".join(why) or None

    def stats(self) -> dict[str, Any]:
        return {
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "iqr_ms": self.iqr_ms,
            "cv": self.cv,
            "n": self.n,
            "warning": self.warning,
        }

    def __repr__(self) -> str:
        head = f"{self.label}: " if self.label else ""
        return (
            f"{head}p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, IQR {self.iqr_ms:.3f} ms, "
            f"CV {self.cv:.1%}, n={self.n}" + (f" [warning: {self.warning}]" if self.warning else "")
        )


def time_callable(
    fn: Callable[[], Any],
    *,
    device: str | torch.device = "cpu",
    warmup: int = MIN_WARMUP,
    min_runs: int = MIN_RUNS,
    min_time_s: float = MIN_TIME_S,
    max_runs: int = MAX_RUNS,
    label: str = "",
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Measurement:
    """Call ``fn`` ``warmup`` times, then time single calls until at least ``min_runs`` calls and at least
    ``min_time_s`` seconds of timed calls (or ``max_runs`` calls). CPU: wall time per call (``clock``, in
    nanoseconds: ``time.perf_counter_ns``; tests give a synthetic one); CUDA: events around each call and a
    synchronisation after it, so a sample is the call's full latency.

    Args:
        fn: the call timed, without arguments.
        device: "cpu" or a CUDA device.
        warmup: untimed calls first.
        min_runs: the fewest timed calls.
        min_time_s: the least total time of timed calls, in seconds.
        max_runs: the most timed calls.
        label: names the measurement in its messages.
        clock: the CPU timer in ns.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    for _ in range(warmup):
        fn()
    synchronize(dev)
    samples: list[float] = []
    total_ms = 0.0
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while (len(samples) < min_runs or total_ms < min_time_s * 1e3) and len(samples) < max_runs:
            if cuda:
                start.record()
                fn()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = clock()
                fn()
                ms = (clock() - t0) / 1e6
            samples.append(ms)
            total_ms += ms
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(samples, label=label, min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)


# ============================================================================================ re-measuring
@dataclass
class Steady:
    """The attempts of one figure: ``chosen`` (the first attempt with CV <= the limit, else the one with the
    lowest CV), every attempt's statistics and samples, and ``status``: "ok" or "noisy" (no attempt met it)."""

    chosen: Measurement
    attempts: list[dict[str, Any]]
    status: str
    tries: int
    chosen_attempt: int  # 1-based


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}


def measure_steady(time_once: Callable[[], Measurement], *, tries: int = MAX_TRIES, cv_max: float = CV_WARN,
                   before: Callable[[], dict[str, Any]] | None = None) -> Steady:
    """Time a figure (``time_once``) and, while its CV exceeds ``cv_max``, time it again, at most ``tries``
    times in all. ``before`` runs before every attempt (the wait for a quiet machine) and its dict is kept
    with the attempt. Every attempt stays in the result.

    Args:
        time_once: times the figure once.
        tries: attempts at most (>= 1).
        cv_max: the CV above which the figure is timed again.
        before: runs before every attempt, its dict kept with it; None: nothing.
    """
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise BenchError(f"tries must be a positive integer, got {tries!r}")
    measured: list[Measurement] = []
    attempts: list[dict[str, Any]] = []
    for i in range(tries):
        context = before() if before is not None else {}
        m = time_once()
        measured.append(m)
        attempts.append(_finite({"attempt": i + 1, **m.stats(), **context, "samples_ms": list(m.samples_ms)}))
        if m.n >= 2 and m.cv <= cv_max:
            break
    steady = [i for i, m in enumerate(measured) if m.n >= 2 and m.cv <= cv_max]
    pick = steady[0] if steady else min(range(len(measured)),
                                        key=lambda i: measured[i].cv if measured[i].n >= 2 else math.inf)
    return Steady(measured[pick], attempts, "ok" if steady else "noisy", tries, pick + 1)


def tries_from_env() -> int:
    """``LITEBENCH_LATENCY_TRIES`` (default 3): how often a noisy figure is timed in all."""
    text = os.environ.get(TRIES_ENV) or str(MAX_TRIES)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise BenchError(f"{TRIES_ENV} must be a positive integer, got {text!r}")
    return value
