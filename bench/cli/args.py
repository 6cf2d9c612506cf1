"""Argument validators of the command line: each turns one word into a value or raises BenchError with one
line naming the option, what it got and what it takes."""

from __future__ import annotations

import math
import re

from bench.errors import BenchError
from bench.infra.cluster import DEFAULT_TIME_MIN, Resources, parse_time
from bench.infra.launcher import EXECUTORS
from bench.latency.machine import check_threads


def words(text: str | None) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]`` (commas and/or spaces separate; empty -> [])."""
    return [w for w in re.split(r"[,\s]+", (text or "").strip()) if w]


def integer(option: str, text: str | int | None, minimum: int = 1) -> int | None:
    """An integer >= ``minimum`` (None stays None).

    Args:
        option: the option, named in the error.
        text: the value given; None stays None.
        minimum: the smallest value allowed.
    """
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise BenchError(f"{option} must be an integer >= {minimum}, got {text!r}")
    return value


def integers(option: str, text: str | None, minimum: int = 0) -> list[int] | None:
    """Integers separated by commas (None or empty -> None).

    Args:
        option: the option, named in the error.
        text: integers separated by commas.
        minimum: the smallest value allowed.
    """
    if not words(text):
        return None
    out = []
    for w in words(text):
        try:
            value = int(w)
        except ValueError:
            raise BenchError(f"{option} must be integers separated by commas, got {text!r}") from None
        if value < minimum:
            raise BenchError(f"{option} must be integers >= {minimum}, got {text!r}")
        out.append(value)
    return out


def number(option: str, text: str | float | None, minimum: float = 0.0) -> float | None:
    """A finite number >= ``minimum`` (None stays None).

    Args:
        option: the option, named in the error.
        text: the value given; None stays None.
        minimum: the smallest value allowed.
    """
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= minimum):
        raise BenchError(f"{option} must be a number >= {minimum:g}, got {text!r}")
    return value


def threads(option: str, text: str | int | None) -> int:
    """A thread count: a positive integer, or "all" (every core this process may use)."""
    try:
        return check_threads(text)
    except BenchError:
        raise BenchError(f"{option} must be a positive integer or 'all', got {text!r}") from None


def latency_threads(option: str, text: str | int | None) -> int:
    """A thread count to time with: as :func:`threads`, and at most the cores this process may use (more
    threads than cores time the measurement's own threads contending, counted as other processes' load)."""
    from bench.latency.machine import all_cores  # looked up per call: tests replace bench.latency.machine.all_cores

    n, cores = threads(option, text), all_cores()
    if n > cores:
        raise BenchError(f"{option} {text}: this process may use {cores} core(s); a latency measurement times at "
                         f"most that many threads (give {cores} or 'all')")
    return n


def thread_list(option: str, text: str | None, latency: bool = False) -> list[int] | None:
    """Thread counts separated by commas, each a positive integer or "all" (None or empty -> None); ``latency``:
    each at most the cores this process may use (:func:`latency_threads`).

    Args:
        option: the option, named in the error.
        text: thread counts separated by commas, each an integer or "all".
        latency: hold each count to the cores this process may use.
    """
    if not words(text):
        return None
    return [(latency_threads if latency else threads)(option, w) for w in words(text)]


def choice(option: str, value: str, valid: tuple[str, ...] | list[str]) -> str:
    """``value`` when it is one of ``valid``; otherwise a BenchError naming them.

    Args:
        option: the option, named in the error.
        value: the value given.
        valid: the values allowed.
    """
    if value not in valid:
        raise BenchError(f"unknown {option} {value!r}; valid: {', '.join(valid)}")
    return value


def executor(text: str) -> str:
    return choice("--executor", text, EXECUTORS)


def resources(args: object) -> object:
    """bench.infra.cluster.Resources from --slurm-partition/-cpus/-time/-gpus; those flags need --executor slurm."""
    flags = {"--slurm-partition": "slurm_partition", "--slurm-cpus": "slurm_cpus", "--slurm-time": "slurm_time",
             "--slurm-gpus": "slurm_gpus"}
    given = [flag for flag, name in flags.items() if getattr(args, name, None) is not None]
    if given and getattr(args, "executor", "local") != "slurm":
        raise BenchError(f"{', '.join(given)}: only with --executor slurm")
    partition = getattr(args, "slurm_partition", None)
    if partition is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*", partition):
        raise BenchError(f"--slurm-partition must be partition names separated by commas, got {partition!r}")
    return Resources(
        partition=partition,
        cpus=integer("--slurm-cpus", getattr(args, "slurm_cpus", None)) or 1,
        time_min=parse_time(getattr(args, "slurm_time", None)) or DEFAULT_TIME_MIN,
        gpus=integer("--slurm-gpus", getattr(args, "slurm_gpus", None), 0) or 0,
    )
