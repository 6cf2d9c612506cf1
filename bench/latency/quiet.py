"""Waiting for a quiet machine before timing: the load that is not this process's own.

A probe reads, over a short window (``window_s``):
- ``foreign_load_1m``: the 1-minute load average minus this process's own running threads (``/proc/loadavg``
  via ``os.getloadavg``, ``/proc/self/task/*/stat``);
- ``foreign_busy``: the cores other processes kept busy during the window (``/proc/stat``: user + nice +
  system + irq + softirq across all CPUs, minus this process's own CPU time, per second of the window);
- ``steal``: the fraction of CPU time the hypervisor gave to other guests during the window (``/proc/stat``).

The machine is quiet when both loads are at most ``max_load`` (cores) and the steal at most ``max_steal``.
:func:`wait_for_quiet` probes until it is, or until ``max_wait_s`` have passed (then the measurement goes on,
and its record says the machine was not quiet and why). A machine without ``/proc`` counts as quiet on the
figures it cannot read. Settings: ``LITEBENCH_QUIET_WAIT`` (s, default 60; 0 = probe once, never wait),
``LITEBENCH_QUIET_LOAD`` (default 0.5), ``LITEBENCH_QUIET_STEAL`` (default 0.05), ``LITEBENCH_QUIET_WINDOW``
(s, default 0.5).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench.errors import BenchError

ENV = {"max_wait_s": "LITEBENCH_QUIET_WAIT", "max_load": "LITEBENCH_QUIET_LOAD",
       "max_steal": "LITEBENCH_QUIET_STEAL", "window_s": "LITEBENCH_QUIET_WINDOW"}


@dataclass(frozen=True)
class QuietPolicy:
    max_wait_s: float = 60.0
    max_load: float = 0.5
    max_steal: float = 0.05
    window_s: float = 0.5

    @classmethod
    def from_env(cls, **given: float | None) -> QuietPolicy:
        """Defaults, then the environment (``LITEBENCH_QUIET_*``), then what the caller gives (None = not
        given). A value that is not a number >= 0 is an error naming its source."""
        values: dict[str, float] = {}
        for f in fields(cls):
            text, source = os.environ.get(ENV[f.name]), ENV[f.name]
            if given.get(f.name) is not None:
                text, source = str(given[f.name]), f.name
            if text is None or text == "":
                continue
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not value >= 0 or value == float("inf"):
                raise BenchError(f"{source} must be a number >= 0, got {text!r}")
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class LoadSample:
    loadavg_1m: float | None = None
    own_running: int | None = None
    foreign_load_1m: float | None = None
    foreign_busy: float | None = None
    steal: float | None = None

    def why_not_quiet(self, policy: QuietPolicy) -> list[str]:
        """What makes the machine not quiet (empty when it is)."""
        why = []
        if self.foreign_load_1m is not None and self.foreign_load_1m > policy.max_load:
            why.append(f"load average {self.loadavg_1m:.2f} ({self.foreign_load_1m:.2f} not ours) > "
                       f"{policy.max_load:g}")
        if self.foreign_busy is not None and self.foreign_busy > policy.max_load:
            why.append(f"other processes kept {self.foreign_busy:.2f} cores busy > {policy.max_load:g}")
        if self.steal is not None and self.steal > policy.max_steal:
            why.append(f"CPU steal {self.steal:.1%} > {policy.max_steal:.0%}")
        return why

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------------------ probing
def cpu_jiffies(text: str) -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of the aggregate ``cpu`` line of /proc/stat's text: busy = user + nice +
    system + irq + softirq (guest time is inside user), total = those + idle + iowait + steal."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            busy = user + nice + system + irq + softirq
            return busy, steal, busy + idle + iowait + steal
    raise ValueError("no aggregate cpu line")


def running_threads(task_dir: Path = Path("/proc/self/task")) -> int | None:
    """Threads of this process in state R (running or runnable); None where /proc cannot say."""
    try:
        n = 0
        for stat in task_dir.glob("*/stat"):
            text = stat.read_text()
            n += text[text.rindex(")") + 2 :].startswith("R")
        return n
    except (OSError, ValueError):
        return None


def _read_stat() -> tuple[int, int, int] | None:
    try:
        return cpu_jiffies(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def probe(window_s: float = 0.5) -> LoadSample:
    """The machine's load that is not this process's own, over ``window_s`` seconds (see the module)."""
    before, own0, t0 = _read_stat(), _own_cpu_s(), time.monotonic()
    time.sleep(window_s)
    after, own1, t1 = _read_stat(), _own_cpu_s(), time.monotonic()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    own = running_threads()
    busy = steal = None
    if before and after and t1 > t0:
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        d_busy, d_steal, d_total = (a - b for a, b in zip(after, before))
        busy = max(0.0, (d_busy / hz - (own1 - own0)) / (t1 - t0))
        steal = d_steal / d_total if d_total > 0 else 0.0
    foreign = None if load is None else max(0.0, load - (own or 0))
    return LoadSample(load, own, foreign, busy, steal)


def wait_for_quiet(
    policy: QuietPolicy | None = None,
    *,
    probe: Callable[[float], LoadSample] = probe,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Probe until the machine is quiet or ``policy.max_wait_s`` have passed. Returns ``quiet`` (bool),
    ``quiet_wait_s``, ``probes``, ``load`` (the last sample) and ``not_quiet`` (why, or None).

    Args:
        policy: when the machine counts as quiet, and the longest wait; None: from the environment.
        probe: window seconds -> a load sample (tests give a fake).
        clock: monotonic seconds.
        sleep: waits the given seconds.
        log: takes the waiting message; None: silent.
    """
    policy = policy or QuietPolicy.from_env()
    start = clock()
    n, told = 0, False
    while True:
        sample = probe(policy.window_s)
        n += 1
        why = sample.why_not_quiet(policy)
        waited = clock() - start
        if not why or waited >= policy.max_wait_s:
            break
        if log and not told:
            log(f"waiting up to {policy.max_wait_s:g} s for a quiet machine: {'; '.join(why)}")
            told = True
        sleep(min(1.0, max(0.0, policy.max_wait_s - waited)))
    return {"quiet": not why, "quiet_wait_s": round(waited, 3), "probes": n, "load": sample.to_dict(),
            "not_quiet": "; ".join(why) or None}
