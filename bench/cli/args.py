"""Argument validators of the command line: each turns one word into a value or raises BenchError with one
line naming the option, what it got and what it takes."""

from __future__ import annotations

import math
import re

from bench.errors import BenchError


def words(text: str | None) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]`` (commas and/or spaces separate; empty -> [])."""
    return [w for w in re.split(r"[,\s]+", (text or "").strip()) if w]


def integer(option: str, text: str | int | None, minimum: int = 1) -> int | None:
    """An integer >= ``minimum`` (None stays None)."""
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
    """Integers separated by commas (None or empty -> None)."""
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
    """A finite number >= ``minimum`` (None stays None)."""
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
    from bench.machine import check_threads

    try:
        return check_threads(text)
    except BenchError:
        raise BenchError(f"{option} must be a positive integer or 'all', got {text!r}") from None


def thread_list(option: str, text: str | None) -> list[int] | None:
    """Thread counts separated by commas, each a positive integer or "all" (None or empty -> None)."""
    if not words(text):
        return None
    return [threads(option, w) for w in words(text)]


def choice(option: str, value: str, valid: tuple[str, ...] | list[str]) -> str:
    if value not in valid:
        raise BenchError(f"unknown {option} {value!r}; valid: {', '.join(valid)}")
    return value
