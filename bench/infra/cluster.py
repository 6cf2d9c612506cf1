"""Work as cluster jobs: every independent unit (a model's latency measurement, one seed's training and
evaluation, one tuning trial) is one job; units of one kind go to Slurm as one job array through submitit.

:func:`run_units` submits the units (a kind whose units need a node to themselves, latency, as its own array
with ``--exclusive``), prints which job runs which unit and where its log goes, then waits and prints the count
of jobs pending / running / done / failed whenever it changes. A job that fails (an exception in the unit, or
Slurm ending it: ``scancel``, time limit, node failure) is reported with its state, the last line of its error
and the path of its log; the other jobs go on. It returns one :class:`Outcome` per unit; the caller decides
what a failure means. The units themselves write their records under the run folder's locks, so what a job
finished before it failed is kept, and the caller re-submits only units without records.

States come from ``squeue -t all`` (finished jobs stay listed for the cluster's MinJobAge) and, for a job no
longer listed, from ``sacct`` where the cluster keeps accounting; the result file submitit writes is what
says a job succeeded. Inside a job, :func:`job_info` names it for the records.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

DEFAULT_TIME_MIN = 240
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED"}
ENDED = {"COMPLETED", "FINISHED"}  # ended without an error: submitit's result file says how
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
          "REVOKED", "INTERRUPTED", "NO PROCESS AND NO RESULT"}
GRACE_S = 30.0  # a job Slurm calls finished gets this long for its result file to appear (shared filesystems)


class JobsFailed(Exception):
    """Some jobs failed (each named in the message with its log); what the others wrote is kept."""


@dataclass(frozen=True)
class Resources:
    """What one job asks for: ``cpus`` per job (latency jobs take a whole node instead), ``time_min``, ``gpus``
    per job and the partition (None: the cluster's default)."""

    partition: str | None = None
    cpus: int = 1
    time_min: int = DEFAULT_TIME_MIN
    gpus: int = 0


@dataclass(frozen=True)
class Unit:
    """One job: ``fn(*args)`` in a fresh process on a node. ``kind`` names its array ("latency", "train",
    "tune"); ``exclusive``: the job holds its node alone."""

    name: str
    kind: str
    fn: Callable[..., Any]
    args: tuple = ()
    exclusive: bool = False


@dataclass
class Outcome:
    unit: Unit
    job_id: str
    status: str  # "done" or "failed"
    state: str  # the scheduler's last word on the job
    log: Path | None = None
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def describe(self) -> str:
        what = f"{self.unit.name} (job {self.job_id}, {self.state})"
        return what + (f": {self.error}" if self.error else "") + (f"; log {self.log}" if self.log else "")


@dataclass
class _Tracked:
    unit: Unit
    job: Any
    submitted: float
    outcome: Outcome | None = None
    category: str = "pending"
    ended_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ input
def parse_time(text: str | int | None) -> int | None:
    """A Slurm time limit -> whole minutes (rounded up): ``90``, ``90:00`` (minutes:seconds), ``1:30:00``,
    ``1-0``, ``1-12:00``, ``1-12:00:00``. None stays None."""
    if text is None:
        return None
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        raise BenchError(f"--slurm-time must be minutes or [days-]hours:minutes:seconds, got {text!r}")
    days, a, b, c = m.groups()
    if days is not None:  # days-hours[:minutes[:seconds]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # hours:minutes:seconds
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # minutes:seconds
        seconds = int(a) * 60 + int(b)
    else:
        seconds = int(a) * 60
    if seconds <= 0:
        raise BenchError(f"--slurm-time must be a positive time limit, got {text!r}")
    return -(-seconds // 60)


def check_cluster(partition: str | None) -> None:
    """Raise BenchError (one line) unless Slurm's commands are here and answer, and ``partition`` (if given)
    is one of the cluster's."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise BenchError("--executor slurm: no sbatch/squeue here; run on a Slurm cluster's login node "
                         "(on one machine: scripts/slurm-local.sh start)")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"--executor slurm: sinfo failed ({exc})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BenchError(f"--executor slurm: the Slurm controller does not answer ({last})")
    known = sorted(set(proc.stdout.split()))
    asked = [p for p in (partition or "").split(",") if p]
    unknown = [p for p in asked if p not in known]
    if unknown:
        raise BenchError(f"--slurm-partition {partition}: no partition {', '.join(unknown)} on this cluster; "
                         f"it has: {', '.join(known) or '(none)'}")


# ------------------------------------------------------------------------------------------------ in a job
def job_info(exclusive: bool = False) -> dict[str, Any]:
    """Inside a submitit job: which job wrote a record (``job_executor``, ``job_id``: Slurm's id, ``123_4`` for
    an array task, ``job_node``, ``job_cpus`` on the node, ``job_partition``, ``job_exclusive``); {} elsewhere."""
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if not executor:
        return {}
    info: dict[str, Any] = {"job_executor": "slurm" if executor == "slurm" else f"submitit-{executor}"}
    try:
        import submitit  # submitit (optional): loaded only inside a submitit job

        info["job_id"] = submitit.JobEnvironment().job_id
    except Exception:  # a job environment submitit does not know: keep what Slurm says
        info["job_id"] = os.environ.get("SLURM_JOB_ID")
    info["job_node"] = os.environ.get("SLURMD_NODENAME") or platform.node()
    cpus = os.environ.get("SLURM_CPUS_ON_NODE")
    if cpus and cpus.isdigit():
        info["job_cpus"] = int(cpus)
    if os.environ.get("SLURM_JOB_PARTITION"):
        info["job_partition"] = os.environ["SLURM_JOB_PARTITION"]
    info["job_exclusive"] = bool(exclusive)
    return info


def job_cpus() -> int | None:
    """CPUs per task Slurm gave this job (None outside Slurm or when it does not say)."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


# ------------------------------------------------------------------------------------------------ states
def parse_states(text: str) -> dict[str, str]:
    """``JOBID|STATE`` lines (squeue ``-o %i|%T``, sacct ``-P -o JobID,State``) -> {job id: STATE}; an array
    range ``12_[3-5,7%2]`` becomes one entry per task; job steps (``12.batch``) are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue
        jid, state = parts[0], parts[1].split()[0].rstrip("+") if parts[1].split() else ""
        m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", jid)
        if m:
            for piece in m.group(2).split(","):
                lo, _, hi = piece.partition("-")
                for task in range(int(lo), int(hi or lo) + 1):
                    out[f"{m.group(1)}_{task}"] = state
        else:
            out[jid] = state
    return out


class SlurmStates:
    """One ``squeue`` call per poll for every array; ``sacct`` for jobs squeue no longer lists (skipped from
    the first time it says the cluster keeps no accounting)."""

    def __init__(self, run: Callable[[list[str]], subprocess.CompletedProcess] | None = None) -> None:
        self.run = run or (lambda cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=120))
        self.sacct = True

    def __call__(self, job_ids: list[str]) -> dict[str, str]:
        arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
        if not arrays:
            return {}
        states = self._ask(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", arrays])
        missing = [j for j in job_ids if j not in states]
        if missing and self.sacct:
            got = self._ask(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", arrays])
            if got is None:
                self.sacct = False
            states.update({j: s for j, s in (got or {}).items() if j not in states})
        return states

    def _ask(self, cmd: list[str]) -> dict[str, str] | None:
        try:
            proc = self.run(cmd)
        except (OSError, subprocess.SubprocessError):
            return None
        return parse_states(proc.stdout) if proc.returncode == 0 else None


def _category(state: str) -> str:
    state = state.upper()
    if state in RUNNING:
        return "running"
    if state in ENDED:
        return "ended"
    if state in FAILED:
        return "failed"
    return "pending"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def _settle(t: _Tracked, state: str, now: float) -> Outcome | None:
    """The outcome of a job, once there is one: its result file (success or the unit's error), or the
    scheduler's word that it ended without one."""
    job, log = t.job, Path(t.job.paths.stderr)
    pickle = Path(job.paths.result_pickle)
    if pickle.exists() and pickle.stat().st_mtime >= t.submitted - 1:  # (a job id reused after a reset: stale)
        from submitit.core.utils import pickle_load  # submitit (optional): loaded only when a finished job is read

        try:
            outcome, value = pickle_load(pickle)
        except (EOFError, OSError):
            return None  # still being written
        if outcome == "success":
            return Outcome(t.unit, job.job_id, "done", state or "COMPLETED", log, result=value)
        return Outcome(t.unit, job.job_id, "failed", state or "FAILED", log, error=_last_line(value))
    category = _category(state)
    if category in ("ended", "failed"):
        t.ended_at = t.ended_at or now
        if category == "failed" or now - t.ended_at >= GRACE_S:
            return Outcome(t.unit, job.job_id, "failed", state, log,
                           error="ended without a result" if category == "ended" else None)
    return None


# ------------------------------------------------------------------------------------------------ driver
def _groups(units: list[Unit]) -> list[tuple[str, bool, list[Unit]]]:
    """Units by (kind, exclusive), exclusive arrays first (their order kept)."""
    keys: list[tuple[str, bool]] = []
    for u in units:
        if (u.kind, u.exclusive) not in keys:
            keys.append((u.kind, u.exclusive))
    keys.sort(key=lambda k: not k[1])
    return [(kind, excl, [u for u in units if (u.kind, u.exclusive) == (kind, excl)]) for kind, excl in keys]


def submit(units: list[Unit], executor: str, folder: Path, resources: Resources,
           log: Callable[[str], None]) -> list[_Tracked]:
    """Submit ``units`` as job arrays, one per kind (exclusive jobs apart); the jobs to :func:`wait` on.

    Args:
        units: the units to run.
        executor: "slurm" or "submitit-local".
        folder: where the logs and submitit's files go.
        resources: partition, CPUs, time limit and GPUs of each job.
        log: takes each progress line.
    """
    from bench.infra.launcher import submitit_executor  # looked up per call: tests replace launcher.submitit_executor

    tracked: list[_Tracked] = []
    for kind, exclusive, members in _groups(units):
        ex = submitit_executor(executor, folder, partition=resources.partition, time_min=resources.time_min,
                               cpus=None if exclusive else resources.cpus, gpus=resources.gpus, exclusive=exclusive,
                               name=f"litebench-{kind}")
        started = time.time()
        try:
            with ex.batch():
                jobs = [ex.submit(u.fn, *u.args) for u in members]
        except Exception as exc:
            raise BenchError(f"submitting {len(members)} {kind} job(s) failed: {_last_line(str(exc))}") from None
        array = jobs[0].job_id.split("_")[0]
        array = ("as local processes" if executor != "slurm" else f"as job array {array}" if len(jobs) > 1
                 else f"as job {array}")
        where = "a whole node each" if exclusive else f"{resources.cpus} CPU(s) each"
        log(f"submitted {len(jobs)} {kind} job(s) {array} ({where}, {resources.time_min} min"
            f"{f', {resources.gpus} GPU(s)' if resources.gpus else ''}"
            f"{f', partition {resources.partition}' if resources.partition else ''}); logs in {folder}")
        for unit, job in zip(members, jobs):
            log(f"  job {job.job_id}: {unit.name}")
            tracked.append(_Tracked(unit, job, started))
    return tracked


def wait(tracked: list[_Tracked], executor: str, log: Callable[[str], None], poll_s: float = 10.0,
         states: Callable[[list[str]], dict[str, str]] | None = None) -> list[Outcome]:
    """Poll until every job has an outcome; a line whenever the counts change (and every 10 minutes).

    Args:
        tracked: the jobs :func:`submit` returned.
        executor: "slurm" (states from Slurm) or "submitit-local".
        log: takes each progress line.
        poll_s: seconds between polls.
        states: job ids -> scheduler state (tests); None: Slurm's, or submitit's for local jobs.
    """
    if states is None:
        states = SlurmStates() if executor == "slurm" else (lambda ids: {t.job.job_id: t.job.state for t in tracked})
    last, last_time = None, 0.0
    while True:
        open_ = [t for t in tracked if t.outcome is None]
        now_states = states([t.job.job_id for t in open_]) if open_ else {}
        now = time.time()
        for t in open_:
            state = now_states.get(t.job.job_id, "")
            t.outcome = _settle(t, state, now)
            if t.outcome is None:
                t.category = "running" if _category(state) == "running" else "pending"
            elif t.outcome.ok:
                log(f"  done: {t.unit.name} (job {t.outcome.job_id})")
            else:
                log(f"  failed: {t.outcome.describe()}")
        counts = {c: sum(1 for t in tracked if (t.outcome.status if t.outcome else t.category) == c)
                  for c in ("pending", "running", "done", "failed")}
        line = f"jobs: {', '.join(f'{n} {c}' for c, n in counts.items())} (of {len(tracked)})"
        if line != last or now - last_time >= 600:
            log(line)
            last, last_time = line, now
        if all(t.outcome is not None for t in tracked):
            return [t.outcome for t in tracked if t.outcome is not None]
        time.sleep(poll_s)


def run_units(units: list[Unit], executor: str, folder: Path, resources: Resources | None = None,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
              poll_s: float = 10.0) -> list[Outcome]:
    """Submit ``units`` (see the module's docstring), wait for all of them; one Outcome per unit, in order.

    Args:
        units: the units to run.
        executor: "slurm" or "submitit-local".
        folder: where the logs and submitit's files go.
        resources: partition, CPUs, time limit and GPUs of each job; None: the defaults.
        log: takes each progress line (default: stderr).
        poll_s: seconds between polls.
    """
    if not units:
        return []
    resources = resources or Resources()
    tracked = submit(units, executor, Path(folder), resources, log)
    try:
        outcomes = wait(tracked, executor, log, poll_s)
    except KeyboardInterrupt:
        open_ = sorted({t.job.job_id.split("_")[0] for t in tracked if t.outcome is None})
        log(f"interrupted: jobs of array(s) {', '.join(open_)} are still queued or running on the cluster "
            f"(scancel {' '.join(open_)} stops them); run the same command again to pick up what they write")
        raise
    order = {id(u): i for i, u in enumerate(units)}
    return sorted(outcomes, key=lambda o: order[id(o.unit)])
