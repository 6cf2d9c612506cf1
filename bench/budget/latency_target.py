"""A latency budget's target and setting, as its budget file states them (``target_latency_ms``, ``latency:``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.budget.keys import check_keys
from bench.errors import BenchError

LATENCY_KEYS = ("tolerance", "device", "threads", "workload", "dtype", "backend")
AIM = 0.5  # the fine knob steps until the p50 is within this share of the tolerance (confirmation: all of it)


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget: every family solved to the same measured p50 (ms, within ``tolerance``) in one
    setting. The defaults are the protocol's headline setting: CPU, 1 thread, the forward pass, fp32, eager."""

    target_ms: float
    tolerance: float = 0.03
    device: str = "cpu"
    threads: int = 1
    workload: str = "forward"
    dtype: str = "fp32"
    backend: str = "eager"

    @property
    def low(self) -> float:
        return self.target_ms * (1 - self.tolerance)

    @property
    def high(self) -> float:
        return self.target_ms * (1 + self.tolerance)

    @property
    def inner(self) -> tuple[float, float]:
        """The inner share (AIM) of the tolerance that the fine knob and the confirmation aim at."""
        return self.target_ms * (1 - AIM * self.tolerance), self.target_ms * (1 + AIM * self.tolerance)

    def setting(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("device", "threads", "workload", "dtype", "backend")}




def parse_latency(raw: dict[str, Any], where: str, target_ms: float | None) -> LatencyTarget | None:
    """The latency target of a budget: ``target_latency_ms`` and its setting (``latency:``), or the spec's.

    Args:
        raw: the budget file's mapping.
        where: the file, named in errors.
        target_ms: the spec's target in ms (``6ms``), which replaces the file's ``target_latency_ms``; None: the file's.
    """
    if target_ms is None and "target_latency_ms" not in raw:
        if "latency" in raw:
            raise BenchError(f"{where}: 'latency' (the setting of a latency budget) needs 'target_latency_ms'")
        return None
    setting = raw.get("latency") or {}
    if not isinstance(setting, dict):
        raise BenchError(f"{where}: 'latency' must map {', '.join(LATENCY_KEYS)} to values")
    check_keys(setting, LATENCY_KEYS, where, "'latency'")
    try:
        ms = float(raw["target_latency_ms"] if target_ms is None else target_ms)
        out = LatencyTarget(ms, **{k: (int(v) if k == "threads" else float(v) if k == "tolerance" else str(v))
                                   for k, v in setting.items()})
    except (TypeError, ValueError):
        raise BenchError(f"{where}: target_latency_ms and the latency setting's tolerance and threads must be "
                         "numbers") from None
    if not (math.isfinite(out.target_ms) and out.target_ms > 0 and 0 < out.tolerance < 1 and out.threads >= 1):
        raise BenchError(f"{where}: target_latency_ms must be positive, tolerance in (0, 1), threads >= 1")
    from bench.latency.backends import BACKENDS  # torch (bench.latency): loaded only for a budget with a latency target
    from bench.latency.workloads import DTYPES, WORKLOADS  # torch (bench.latency): only for a latency budget

    for what, value, valid in (("workload", out.workload, WORKLOADS), ("dtype", out.dtype, DTYPES),
                               ("backend", out.backend, BACKENDS), ("device", out.device.split(":")[0],
                                                                    ("cpu", "cuda"))):
        if value not in valid:
            raise BenchError(f"{where}: unknown latency {what} {value!r}; valid: {', '.join(valid)}")
    return out
