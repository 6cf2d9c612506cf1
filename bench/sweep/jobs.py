"""The sweep as cluster jobs (``bench run --executor slurm|submitit-local``).

Units: per model, one measurement job (profile + every latency setting; a whole node, so that nothing else
runs beside the timing) and, per model and seed, one training job (train + evaluate [+ compress]). A unit
whose records all exist is not submitted (``--force`` submits all); a job writes its records under the run
folder's per-stage locks, exactly as the local sweep does, and every record it writes names the job
(``job_id``, ``job_node``, ``job_exclusive``, ...). The latency thread counts are decided here, before
submission (default 1 and every core of this machine: give ``--threads 1,N`` for nodes of N cores), so that
what a job measures and what counts as finished agree.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.infra.cluster import JobsFailed, Outcome, Unit, check_cluster, job_cpus, job_info, run_units
from bench.records.schema import finished_record
from bench.sweep.side_by_side import compare_group, compare_stages

if TYPE_CHECKING:
    from bench.sweep.runner import ModelRun, Sweep, SweepOptions

MEASURE = ("profile", "latency")
WORK = ("train", "evaluate", "compress")


def log_stderr(msg: str) -> None:
    """A job's log: one line to stderr (the job's log file), at once."""
    print(msg, file=sys.stderr, flush=True)


def expected_records(sweep: Sweep, run: ModelRun, seed: int | None) -> list[Path]:
    """What the unit writes when it finishes: a measurement unit (seed None) or one seed's training unit.

    Args:
        sweep: the sweep.
        run: the model's planned run.
        seed: None: the measurement unit; else that seed's training unit.
    """
    stages, out = sweep.opts.stages, []
    if seed is None:
        if "profile" in stages:
            out.append(run.folder / "profile.json")
        if "latency" in stages:
            out += [run.folder / f"latency-{d}-t{t}-{w}.json" for d, t, w in sweep.latency_settings()]
        return out
    if "train" in stages:
        out.append(run.folder / f"train-s{seed}.json")
    if "evaluate" in stages:
        out.append(run.folder / f"eval-s{seed}.json")
    if "compress" in stages and run.row in sweep.opts.compress:
        out.append(run.folder / f"compress-s{seed}.done")
    return out


def plan_units(sweep: Sweep) -> tuple[list[Unit], int]:
    """The units with work left (all of them with ``force``), and how many were skipped as finished."""
    from bench.latency.machine import all_cores  # torch (bench.latency): loaded only when units are planned

    opts = dataclasses.replace(sweep.opts, threads=sweep.opts.threads or sorted({1, all_cores()}))
    sweep.opts = opts  # the latency settings the jobs use, and the files that say a unit finished
    units, skipped = [], 0

    def todo(files: list[Path]) -> bool:
        return bool(files) and (opts.force or any(
            (finished_record(f) is None if f.suffix == ".json" else not f.exists()) for f in files))

    for model in sweep.models:
        run = sweep.plan(model)
        if any(s in opts.stages for s in MEASURE):
            files = expected_records(sweep, run, None)
            if todo(files):
                timed = "latency" in opts.stages
                units.append(Unit(f"{'latency' if timed else 'profile'} of {model}", "latency" if timed else "profile",
                                  run_unit, (type(sweep), opts, model, None, timed, sweep.command), exclusive=timed))
            else:
                skipped += 1
        if any(s in opts.stages for s in WORK):
            for seed in opts.seeds:
                files = expected_records(sweep, run, seed)
                if todo(files):
                    units.append(Unit(f"training of {model}, seed {seed}", "train", run_unit,
                                      (type(sweep), opts, model, seed, False, sweep.command)))
                else:
                    skipped += 1
    if "latency" in opts.stages:  # the paired comparison: one exclusive job with every model in it
        group = compare_group(sweep)
        if group is not None:
            files = [group.folder / f"latency_compare-{d}-t{t}-{w}.json" for d, t, w in sweep.latency_settings()]
            if todo(files):
                units.append(Unit("paired latency", "latency", run_compare_unit, (type(sweep), opts, sweep.command),
                                  exclusive=True))
            else:
                skipped += 1
    return units, skipped


def run_compare_unit(sweep_class: type[Sweep], opts: SweepOptions, command: str) -> list[str]:
    """A job: the paired latency comparison of every model of the sweep (bench.sweep.side_by_side), on a whole node.

    Args:
        sweep_class: the Sweep class (sent with the job).
        opts: the sweep's options.
        command: the sweep's command line, recorded.
    """
    sweep = sweep_class(dataclasses.replace(opts, stages=("latency",), executor="local", log=log_stderr))
    sweep.command, sweep.job = command, job_info(True)
    return [str(r.get("config_hash")) for r in compare_stages(sweep)]


def run_unit(sweep_class: type[Sweep], opts: SweepOptions, model: str, seed: int | None, exclusive: bool,
             command: str) -> list[str]:
    """A job: a model's measurement stages (seed None) or one seed's training stages, written by the same code
    as the local sweep, each record naming this job. Returns the record files that exist afterwards.

    Args:
        sweep_class: the Sweep class (sent with the job).
        opts: the sweep's options.
        model: the row whose stages run.
        seed: None: its measurement stages; else this seed's training stages.
        exclusive: the job holds a whole node (recorded).
        command: the sweep's command line, recorded.
    """
    stages = tuple(s for s in opts.stages if s in (MEASURE if seed is None else WORK))
    sub = dataclasses.replace(opts, stages=stages, seeds=opts.seeds if seed is None else [seed], executor="local",
                              train_threads=opts.train_threads or job_cpus(), log=log_stderr)
    sweep = sweep_class(sub)
    sweep.command, sweep.job = command, job_info(exclusive)  # the sweep's command line, not the job's
    sweep.run_model(model)
    run = sweep.plan(model)
    return [str(p.relative_to(sweep.results)) for p in expected_records(sweep, run, seed) if p.exists()]


def run_jobs(sweep: Sweep) -> list[Outcome]:
    """Submit the sweep's unfinished units and wait for them; the failed ones' outcomes."""
    opts = sweep.opts
    if opts.executor == "slurm":
        check_cluster(opts.resources.partition)
    units, skipped = plan_units(sweep)
    opts = sweep.opts
    if skipped:
        opts.log(f"{skipped} unit(s) finished before (every record written), not submitted")
    if not units:
        opts.log("nothing to submit: every unit has its records")
        return []
    outcomes = run_units(units, opts.executor, sweep.results / "submitit", opts.resources, opts.log, opts.poll_s)
    return [o for o in outcomes if not o.ok]


def failure_message(failed: list[Outcome]) -> JobsFailed:
    names = "; ".join(o.describe() for o in failed)
    return JobsFailed(f"{len(failed)} job(s) failed: {names}. The report has the rest; the same command again "
                      "runs only what has no record (a killed training resumes from its checkpoint)")
