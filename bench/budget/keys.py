"""The one check of a budget file section's keys, shared by every part of the budget file's parser."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError


def check_keys(raw: Any, valid: tuple[str, ...], where: str, section: str) -> None:
    """A misspelled key is an error naming it and the valid ones, not a silently ignored setting.

    Args:
        raw: the section as read from the file (anything but a mapping is left to the caller).
        valid: the keys the section may have.
        where: the file, named in the error.
        section: the section as the error names it, e.g. "'tune'".
    """
    if not isinstance(raw, dict):
        return
    unknown = [str(k) for k in raw if k not in valid]
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {', '.join(unknown)} in {section}; valid: {', '.join(valid)}")
