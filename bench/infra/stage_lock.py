"""The lock of one stage of a run folder: a second sweep that reaches the same stage waits for the first."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(folder: Path, stage: str = "") -> Iterator[None]:
    """An exclusive lock on one stage of a run folder: a second sweep that reaches the same stage waits, then
    finds the record written; sweeps of other seeds or stages go on beside it."""
    from filelock import FileLock  # filelock: loaded only when a stage is locked

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / (f".lock-{stage}" if stage else ".lock")):
        yield
