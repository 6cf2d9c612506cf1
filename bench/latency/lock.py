"""The machine-wide measurement lock: a latency measurement holds it exclusively; compute (training,
evaluation, tuning trials, the recipe study, compression, a sweep's profile stage) holds it shared. A
measurement therefore waits until no suite job computes on the machine, and new compute waits while a
measurement waits or runs.

One lock per machine, not per results folder or checkout: two files in a fixed folder that every checkout on
the machine agrees on, ``/tmp/litebench-locks`` (``LITEBENCH_LOCK_DIR`` moves it), locked with
``fcntl.flock``:

- ``machine.lock``: shared by compute, exclusive for a measurement;
- ``machine.gate``: a turnstile that gives a waiting measurement priority. A measurement takes the gate
  exclusively, then the lock; compute passes the gate (shared, released at once) before it takes the lock
  shared. Compute that keeps starting cannot starve a measurement.

The kernel releases the locks of a process that dies. Within one process the lock is re-entrant (a sweep's
stage holds it, and the training it runs asks again); a shared holder that measures (compression times its
stages) gives its shared hold up, takes the lock exclusively, and takes it shared again afterwards. A child
process started through bench.infra.launcher while this process holds the lock is told so (``LITEBENCH_LOCK_HELD``)
and does not wait for the lock its parent holds for it. ``LITEBENCH_LOCK_TIMEOUT`` (seconds) bounds a wait;
by default a wait is unbounded. Under Slurm a latency job asks for a whole node as well (bench.infra.launcher).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError

SHARED, EXCLUSIVE = "shared", "exclusive"
MODES = (SHARED, EXCLUSIVE)
DIR_ENV, HELD_ENV, TIMEOUT_ENV = "LITEBENCH_LOCK_DIR", "LITEBENCH_LOCK_HELD", "LITEBENCH_LOCK_TIMEOUT"
DEFAULT_DIR = Path("/tmp/litebench-locks")
POLL_S = 0.05


@dataclass(frozen=True)
class Hold:
    """What a :func:`hold` gives the block it guards."""

    mode: str  # the mode the lock is held in while the block runs (exclusive covers a shared request)
    wait_s: float  # how long this call waited for the lock (0 when this process or its parent held it)
    path: str
    holder: str = "this process"  # or "parent process"

    def record(self) -> dict[str, Any]:
        """The keys a record carries: ``lock_mode``, ``lock_wait_s``."""
        return {"lock_mode": self.mode, "lock_wait_s": round(self.wait_s, 3)}


def lock_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def timeout_s() -> float | None:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise BenchError(f"{TIMEOUT_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


class _State:
    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.mode: str | None = None
        self.owners: Counter[int] = Counter()  # thread id -> nested holds
        self.fds: tuple[int, int] | None = None  # (gate, lock) while held


_state = _State()


def held() -> str | None:
    """The mode this process holds the lock in (or its parent holds it in for it); None when not held."""
    inherited = os.environ.get(HELD_ENV)
    return _state.mode or (inherited if inherited in MODES else None)


def child_env() -> dict[str, str]:
    """What a child process's environment gets so that it does not wait for a lock held for it."""
    mode = held()
    return {HELD_ENV: mode} if mode else {}


def _open(folder: Path) -> tuple[int, int]:
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if created:
        with contextlib.suppress(OSError):  # every user's jobs share the folder (like /tmp itself)
            os.chmod(folder, 0o1777)
    fds = []
    for name in ("machine.gate", "machine.lock"):
        fd = os.open(folder / name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        fds.append(fd)
    return fds[0], fds[1]


def _flock(fd: int, op: int, deadline: float | None, path: Path) -> None:
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                raise BenchError(f"gave up waiting for the machine lock {path} after {TIMEOUT_ENV}="
                                 f"{os.environ.get(TIMEOUT_ENV)} s") from None
            time.sleep(POLL_S)


def _acquire(mode: str, what: str, log: Callable[[str], None]) -> float:
    """Take the lock in ``mode``; the seconds waited."""
    folder = lock_dir()
    path = folder / "machine.lock"
    gate, lock = _open(folder)
    started = time.monotonic()
    limit = timeout_s()
    deadline = None if limit is None else started + limit
    op = fcntl.LOCK_EX if mode == EXCLUSIVE else fcntl.LOCK_SH
    told = False
    try:
        for fd in (gate, lock):
            try:  # a first try without waiting: the common case says nothing
                fcntl.flock(fd, op | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    log(f"waiting for the machine lock {path}: {what or 'this job'} needs it "
                        + ("exclusively, and suite jobs are computing" if mode == EXCLUSIVE
                           else "shared, and a latency measurement runs or waits"))
                    told = True
                _flock(fd, op, deadline, path)
        if mode == SHARED:
            fcntl.flock(gate, fcntl.LOCK_UN)
    except BaseException:
        os.close(gate)
        os.close(lock)
        raise
    _state.fds = (gate, lock)
    waited = time.monotonic() - started
    if waited > 1:
        log(f"machine lock taken ({mode}) after {waited:.1f} s")
    return waited


def _release() -> None:
    if _state.fds is not None:
        gate, lock = _state.fds
        os.close(lock)  # closing the descriptions releases their locks
        os.close(gate)
        _state.fds = None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def hold(mode: str, what: str = "", log: Callable[[str], None] | None = None) -> Iterator[Hold]:
    """Hold the machine lock in ``mode`` (``"shared"`` or ``"exclusive"``) while the block runs; yields a
    :class:`Hold` saying how long this call waited. ``what`` names the job in the message a wait prints.

    Args:
        mode: ``"shared"`` or ``"exclusive"``.
        what: names the job in the waiting message.
        log: takes the waiting message; None: stderr.
    """
    if mode not in MODES:
        raise BenchError(f"machine lock mode must be one of {', '.join(MODES)}, got {mode!r}")
    log = log or _stderr
    path = str(lock_dir() / "machine.lock")
    inherited = os.environ.get(HELD_ENV)
    if _state.mode is None and inherited in MODES:
        if mode == EXCLUSIVE and inherited == SHARED:
            raise BenchError(f"{what or 'this job'} needs the machine lock exclusively, but the parent process "
                             "holds it shared for this one")
        yield Hold(inherited, 0.0, path, "parent process")
        return
    me = threading.get_ident()
    with _state.mutex:
        escalated: Counter[int] | None = None
        if _state.mode == EXCLUSIVE or (_state.mode == SHARED and mode == SHARED):
            waited = 0.0
        elif _state.mode == SHARED:  # a shared holder that measures: shared -> exclusive -> shared again
            if set(_state.owners) - {me}:
                raise BenchError(f"{what or 'this job'} needs the machine lock exclusively while another thread of "
                                 "this process holds it shared")
            escalated, _state.owners = _state.owners, Counter()
            _release()
            _state.mode = None
            try:
                waited = _acquire(EXCLUSIVE, what, log)
            except BaseException:
                _acquire(SHARED, what, log)
                _state.mode, _state.owners = SHARED, escalated
                raise
            _state.mode = EXCLUSIVE
        else:
            waited = _acquire(mode, what, log)
            _state.mode = mode
        _state.owners[me] += 1
        current = _state.mode
    try:
        yield Hold(current, waited, path)
    finally:
        with _state.mutex:
            _state.owners[me] -= 1
            if _state.owners[me] <= 0:
                del _state.owners[me]
            if escalated is not None:
                _release()
                _acquire(SHARED, what, log)
                _state.mode, _state.owners = SHARED, escalated
            elif not _state.owners:
                _release()
                _state.mode = None


def holding(mode: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator: the function runs holding the machine lock in ``mode``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with hold(mode, what=what):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
