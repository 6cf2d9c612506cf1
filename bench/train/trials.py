"""Running trials: the peak-rate search's (bench.train.tune) and the shape search's (bench.train.shapes) short
trainings, each with one JSON record, the same way for both.

- A trial with a record is never trained again; each trains under its own lock (bench.infra.stage_lock), so a
  second search started beside the first waits for the trial and then finds its record.
- Locally a trial trains in its own process at 1 thread, ``jobs`` at a time; as cluster jobs (``executor``
  "slurm" or "submitit-local") every trial without a record is one job of one array, training at the job's CPUs.
- A trial that diverges is a finished trial: its record carries the error and no NLL (it ranks last). Any other
  failure stops the search, and the same command again runs only the trials without a record.

Each search passes what differs: how its trial trains (``train``: the Trainer's summary) and what its record
holds (``record``: from the summary, the start time and the threads).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.infra.cluster import JobsFailed, Resources, Unit, job_cpus, run_units
from bench.infra.launcher import call_in_child
from bench.infra.stage_lock import locked

Summary = dict[str, Any]
Record = dict[str, Any]


class Trial(Protocol):
    """What a trial offers here: its name (the record's file stem) and what trains."""

    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def schedule(self) -> Any: ...


def diverged_as_error(train: Callable[[], Summary]) -> Summary:
    """``train()``'s summary, or ``{"error": ...}`` when the training diverged; any other failure is raised."""
    try:
        return train()
    except BenchError as exc:
        if "diverged" not in str(exc):
            raise
        return {"error": str(exc)}


def train_in_child(target: str, trial: Trial, task: str, corpus: str, seed: int, out: Path, what: str) -> Summary:
    """Train ``trial`` in its own process at 1 thread; its summary, or {"error": ...} when it diverged.

    Args:
        target: "module:function" the child runs, taking the family, config, schedule (a dict), task, corpus,
            seed and run folder.
        trial: the trial.
        task: mt, lm or sum.
        corpus: the training corpus.
        seed: the training seed.
        out: the trial's run folder.
        what: what a trial is called in the messages.
    """
    kwargs = dict(family=trial.family, config=trial.config, schedule=trial.schedule.to_dict(), task=task,
                  corpus=corpus, seed=seed, out=str(out))
    return diverged_as_error(lambda: call_in_child(target, kwargs, what=f"{what} {trial.name}", threads=1))


def _read(path: Path) -> Record:
    return json.loads(path.read_text(encoding="utf-8"))


def _nll_line(name: str, record: Record) -> str:
    nll = record.get("valid_nll")
    return f"  {name}: valid NLL {nll:.3f}" if nll is not None else f"  {name}: {record.get('error')}"


def local_trial(trial: Trial, path: Path, log: Callable[[str], None], start: str,
                train: Callable[[], Summary], record: Callable[[Summary, datetime], Record]) -> Record:
    """One trial trained here (``train``: in a child process), under its lock; its record, read when it has one.

    Args:
        trial: the trial.
        path: its record file.
        log: takes each progress line.
        start: the line logged when it starts training.
        train: trains it; the summary, or {"error": ...} when it diverged.
        record: its record, from the summary and the start time.
    """
    with locked(path.parent, path.stem):
        if path.exists():
            log(f"  {trial.name}: done before, skipped")
            return _read(path)
        log(start)
        started = datetime.now(timezone.utc)
        rec = record(train(), started)
        write_json(path, rec)
    log(_nll_line(trial.name, rec))
    return rec


def job_trial(path: Path, train: Callable[[], Summary], record: Callable[[Summary, datetime, int], Record]) -> Record:
    """One trial as a cluster job's body: trains in this process at the job's CPUs, under the trial's lock, and
    writes its record; the record already there when another search wrote it first.

    Args:
        path: the trial's record file.
        train: trains it here; the Trainer's summary.
        record: its record, from the summary (or {"error": ...} when it diverged), the start time and the threads.
    """
    import torch  # the job's process trains here: its threads are the job's CPUs

    threads = job_cpus() or 1
    torch.set_num_threads(threads)
    with locked(path.parent, path.stem):
        if path.exists():
            return _read(path)
        started = datetime.now(timezone.utc)
        rec = record(diverged_as_error(train), started, threads)
        write_json(path, rec)
    return rec


def run(trials: Sequence[Trial], folder: Path, *, executor: str, jobs: int, local: Callable[[Any], Record],
        job: Callable[..., Record], job_args: Callable[[Any], tuple], stage: str, what: str, logs: Path,
        resources: Resources | None, log: Callable[[str], None]) -> list[Record]:
    """Every trial's record, in the order given; the trials without one trained first.

    Args:
        trials: the trials.
        folder: where their records go (``<name>.json``).
        executor: "local", "slurm" or "submitit-local".
        jobs: trials trained at a time, locally.
        local: one trial trained here (e.g. by :func:`local_trial`): its record.
        job: a cluster job's function (module level, so that it pickles); ``job(*job_args(trial))``.
        job_args: the arguments of a trial's job.
        stage: the jobs' kind (the cluster's unit names).
        what: what a trial is called in the messages ("tuning trial", "shape trial").
        logs: where the cluster jobs' logs go.
        resources: each cluster job's partition, CPUs, time and GPUs; None: the defaults.
        log: takes each progress line.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if executor == "local":
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            return list(pool.map(local, trials))
    todo = [t for t in trials if not (folder / f"{t.name}.json").exists()]
    if len(todo) < len(trials):
        log(f"  {len(trials) - len(todo)} {what}(s) done before, not submitted")
    units = [Unit(f"{what} {t.name}", stage, job, job_args(t)) for t in todo]
    failed = [o for o in run_units(units, executor, logs, resources, log) if not o.ok]
    if failed:
        raise JobsFailed(f"{len(failed)} {what}(s) failed: {'; '.join(o.describe() for o in failed)}. "
                         f"The same command again runs only the {what}s without a record")
    return [_read(folder / f"{t.name}.json") for t in trials]
