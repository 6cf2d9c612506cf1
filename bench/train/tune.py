"""An equal tuning budget for every family: the peak learning rate, searched on validation NLL.

Every family of a budget gets the same trials: one per peak rate of the grid (the budget file's ``tune: grid``,
else 5e-4, 1e-3, 2e-3), each ``tokens_per_trial`` target tokens of the budget's recipe at that peak rate. A
"truncated" trial (the default; ``tune: trials``) is the recipe itself, its warm-up and decay laid out over the
whole token budget, stopped after the trial's tokens: the first part of the run it stands for, as successive
halving judges a configuration. A "compressed" trial is the recipe shrunk to the trial's tokens (the warm-up
shrunk in proportion, the decay reaching its end): the whole schedule in miniature. Compressed trials can
mis-rank: at 500M MACs they put Lite's rates in the order 4e-3, 2e-3, 1e-3 (4.968, 4.990, 5.022 nats), while its
full runs ended in the reverse order (2.749 at 1e-3, 3.009 at 2e-3, 3.897 at 4e-3) and already stood in that order
at the trials' third of the tokens (4.64, 4.67, 4.89; results/500M/diagnostics). At 100M both kinds chose 4e-3 for
ET and Lite, which their full runs at 2e-3 and 4e-3 confirm (the Transformer's two full runs tie). By default a
trial gets the recipe's tokens divided by the number of rates, so tuning a family costs what one seed of its
training costs; a budget file's ``tune: trials_per_seed`` fixes the divisor instead (a grid widened after a first
search then keeps its trials comparable, and costs more than one seed: chosen.json says how much, as
``cost_in_seeds``). Trials train in their own processes at 1 thread, ``jobs`` at a time (with
``executor="slurm"``: one job per trial, as one job array, at the CPUs each job asks for), and are judged on the
final validation NLL over the whole validation split (never the test split); a trial that diverges counts as the
worst. Each trial writes ``<results>/tuning/<family>-lr<rate>-<hash>.json`` (the hash covers the trial's config,
schedule and corpus, so a changed recipe never reuses a stale trial); a finished trial is not run again, and each
trains under its own lock, so a second search started beside the first waits and then reads its record
(bench.train.trials, shared with the shape search). The choice goes to ``<results>/tuning/chosen.json``, which
``bench run`` reads.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.budget.solve import solve_model
from bench.budget.spec import Budget, load_budget
from bench.budget.tune_plan import TRIAL_KINDS
from bench.errors import BenchError
from bench.infra.atomic import write_json
from bench.infra.cluster import Resources, check_cluster, job_info
from bench.records.provenance import REPO, config_hash, environment
from bench.train import trials as runner
from bench.train.schedules import Schedule, get_schedule
from bench.train.tasks import DEFAULT_CORPUS
from models import families as registered

TUNED_FILE = "tuning/chosen.json"


def read_tuned(results: Path, schedule: Schedule, kind: str | None = None) -> dict[str, float]:
    """{family: peak lr} from ``<results>/tuning/chosen.json`` (written by ``bench tune``), for the schedule it
    was tuned for; {} when there is none. A file tuned for another schedule, another token budget or (with
    ``kind``) another kind of trial than the budget's plan names is stale: ignored, with a note.

    Args:
        results: the budget's results folder.
        schedule: the schedule trained; its name and token budget must be the file's.
        kind: the trial kind the budget's plan names; None: any.
    """
    path = Path(results) / TUNED_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        chosen = {str(m): float(v["lr"]) for m, v in data["chosen"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{path} is not a tuning result ({exc}); re-run bench tune or delete it") from None
    stale = []
    if data.get("schedule") != schedule.name:
        stale.append(f"schedule {data.get('schedule')!r}, not {schedule.name!r}")
    if data.get("recipe_tokens") not in (None, schedule.max_tokens):
        stale.append(f"a recipe of {data['recipe_tokens']:,} target tokens, not {schedule.max_tokens:,}")
    if kind is not None and data.get("trial_kind", "compressed") != kind:
        stale.append(f"{data.get('trial_kind', 'compressed')} trials, not {kind}")
    if stale:
        print(f"note: {path} was tuned for {'; '.join(stale)}; not used (re-run bench tune)", file=sys.stderr)
        return {}
    return chosen


DEFAULT_GRID = (5e-4, 1e-3, 2e-3)


def trial_order(families: list[str]) -> list[str]:
    """The order the families' trials start in: the registry's order reversed. Two processes finish closer
    together when the slower per token start first; of the paper's three, Lite then ET are the slower, and a
    family added since (its cost unknown) starts first. The order changes no trial's result."""
    order = registered()
    return sorted(families, key=lambda m: -order.index(m) if m in order else -len(order))


@dataclass(frozen=True)
class Trial:
    family: str
    lr: float
    schedule: Schedule
    config: dict[str, Any]
    key: str

    @property
    def name(self) -> str:
        return f"{self.family}-lr{self.lr:g}-{self.key}"


def trial_schedule(base: Schedule, lr: float, tokens: int, kind: str = "truncated") -> Schedule:
    """A trial of ``tokens`` target tokens at peak rate ``lr``: "truncated", ``base`` stopped after them (its
    warm-up and decay unchanged, over its whole token budget); "compressed", ``base`` shrunk to them (warm-up in
    proportion, at least 1 step).

    Args:
        base: the recipe.
        lr: the trial's peak learning rate.
        tokens: target tokens the trial trains.
        kind: "truncated" or "compressed".
    """
    if not base.max_tokens:
        raise BenchError(f"schedule {base.name} has no token budget to divide among trials")
    if kind not in TRIAL_KINDS:
        raise BenchError(f"unknown trial kind {kind!r}; valid: {', '.join(TRIAL_KINDS)}")
    if kind == "truncated":
        trial = base.with_overrides(lr=lr, stop_tokens=min(tokens, base.max_tokens))
    else:
        warmup = max(1, round(base.warmup_steps * tokens / base.max_tokens))
        trial = base.with_overrides(lr=lr, max_tokens=tokens, warmup_steps=warmup)
    trial.check()  # a grid rate below min_lr, say: refused while planning, before any folder is written
    return trial


def trial_tokens(schedule: Schedule) -> int:
    """The target tokens a trial trains: its stop, else its whole budget."""
    return int(schedule.stop_tokens or schedule.max_tokens or 0)


def plan(
    budget: Budget,
    schedule: Schedule,
    corpus: str,
    grid: tuple[float, ...] = DEFAULT_GRID,
    models: list[str] | None = None,
    tokens_per_trial: int | None = None,
    kind: str = "truncated",
) -> list[Trial]:
    """Every (family, rate) trial, the same rates and tokens for every family.

    Args:
        budget: the budget whose families are solved.
        schedule: the recipe.
        corpus: the training corpus (part of each trial's key).
        grid: the peak learning rates tried.
        models: the families tuned; None: the budget's.
        tokens_per_trial: target tokens per trial; None: the recipe's divided by the grid's size.
        kind: "truncated" or "compressed".
    """
    if not grid or min(grid) <= 0 or len(set(grid)) != len(grid):
        raise BenchError(f"the learning-rate grid must be distinct positive numbers, got {list(grid)}")
    families = models or list(budget.models)
    unknown = [m for m in families if m not in budget.models]
    if unknown:
        raise BenchError(
            f"tune: {', '.join(unknown)} not among the families of {budget.name}: {', '.join(budget.models)}"
        )
    tokens = tokens_per_trial or (schedule.max_tokens or 0) // len(grid)
    if tokens <= 0:
        raise BenchError(f"tokens per trial must be positive, got {tokens}")
    trials = []
    for family in trial_order(list(families)):
        config = solve_model(budget, family).config.to_dict()
        for lr in grid:
            sched = trial_schedule(schedule, lr, tokens, kind)
            key = config_hash({"config": config, "schedule": sched.to_dict(), "corpus": corpus})
            trials.append(Trial(family, lr, sched, config, key))
    return trials


def search_plan(budget: Budget, schedule: Schedule, grid: tuple[float, ...] | None = None,
                tokens_per_trial: int | None = None,
                kind: str | None = None) -> tuple[tuple[float, ...], int | None, str]:
    """The grid, trial size and trial kind: what the command line gives, else the budget file's ``tune:``
    section, else the defaults (5e-4, 1e-3, 2e-3; the recipe's tokens / the grid's size, left to :func:`plan`;
    truncated).

    Args:
        budget: the budget, whose ``tune:`` section gives the defaults.
        schedule: the recipe (its tokens divided among ``trials_per_seed``).
        grid: the peak learning rates; None: as above.
        tokens_per_trial: target tokens per trial; None: as above.
        kind: "truncated" or "compressed"; None: as above.
    """
    grid = tuple(grid or (budget.tune.grid if budget.tune else DEFAULT_GRID))
    if tokens_per_trial is None and budget.tune is not None and budget.tune.trials_per_seed:
        tokens_per_trial = (schedule.max_tokens or 0) // budget.tune.trials_per_seed
    kind = kind or (budget.tune.trials if budget.tune else "truncated")
    return grid, tokens_per_trial, kind


def train_trial(family: str, config: dict[str, Any], schedule: dict[str, Any], task: str, corpus: str, seed: int,
                out: str) -> dict[str, Any]:
    """One trial (what each child process runs): the solved ``config`` under the trial's whole ``schedule``;
    the Trainer's summary (resumed from the folder's checkpoint if the trial was interrupted).

    Args:
        family: the family.
        config: its solved config.
        schedule: the trial's schedule, as a dict.
        task: mt, lm or sum.
        corpus: the training corpus.
        seed: the training seed.
        out: the trial's run folder.
    """
    from bench.train.trainer import Trainer, load_task_data  # sentencepiece: loaded only when a trial trains

    fields = {**schedule, "betas": tuple(schedule["betas"])}
    sched = Schedule(**fields)
    sched.check()
    data = load_task_data(corpus, task, sched, int(config.get("vocab_size", 8000)))
    return Trainer(family, config, data, sched, seed, Path(out), progress=False).run(resume=True)


def select(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family, the rate of the trial with the lowest final validation NLL (a diverged trial, NLL None,
    never wins); ties go to the smaller rate. Also the trial accounting, which must be equal per family."""
    out: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in records}):
        mine = [r for r in records if r["family"] == family]
        scored = [r for r in mine if r.get("valid_nll") is not None and math.isfinite(r["valid_nll"])]
        if not scored:
            raise BenchError(f"tune: every trial of {family} diverged; widen the grid downwards")
        best = min(scored, key=lambda r: (r["valid_nll"], r["lr"]))
        out[family] = {
            "lr": best["lr"],
            "valid_nll": best["valid_nll"],
            "trials": len(mine),
            "tokens_per_trial": sorted({r["tokens_per_trial"] for r in mine}),
            "target_tokens": sum(r.get("train_tokens") or 0 for r in mine),
        }
    counts = {(v["trials"], tuple(v["tokens_per_trial"])) for v in out.values()}
    if len(counts) > 1:
        raise BenchError(f"tune: families got unequal tuning budgets: {out}")
    return out


def tune(
    budget_spec: str,
    task: str = "mt",
    schedule_name: str = "short",
    grid: tuple[float, ...] | None = None,
    models: list[str] | None = None,
    tokens_per_trial: int | None = None,
    seed: int = 1,
    jobs: int = 2,
    corpus: str | None = None,
    results_root: Path = REPO / "results",
    cache_root: Path = REPO / ".cache" / "tuning",
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    executor: str = "local",
    resources: Resources | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Every family's trials on the grid (module docstring); writes tuning/chosen.json and returns it.

    Args:
        budget_spec: a budget name or file.
        task: mt, lm or sum.
        schedule_name: the recipe's schedule preset.
        grid: the peak learning rates; None: :func:`search_plan`'s.
        models: the families tuned; None: the budget's.
        tokens_per_trial: target tokens per trial; None: :func:`search_plan`'s.
        seed: the trials' training seed.
        jobs: trials trained at a time, locally.
        corpus: the training corpus; None: the task's default.
        results_root: where results/<budget>/tuning goes.
        cache_root: where the trials' run folders go.
        log: takes each progress line (default: stderr).
        executor: "local", "slurm" or "submitit-local".
        resources: each cluster job's partition, CPUs, time and GPUs; None: the defaults.
        kind: "truncated" or "compressed"; None: :func:`search_plan`'s.
    """
    if executor == "slurm":
        check_cluster((resources or Resources()).partition)
    budget = load_budget(budget_spec, task=task)
    schedule = get_schedule(schedule_name, **budget.schedule_overrides(schedule_name))
    corpus = corpus or DEFAULT_CORPUS[task]
    grid, tokens_per_trial, kind = search_plan(budget, schedule, grid, tokens_per_trial, kind)
    trials = plan(budget, schedule, corpus, grid, models, tokens_per_trial, kind)
    results = Path(results_root) / budget.results_name(schedule.name)
    folder = results / "tuning"
    env, command = environment(), "python -m bench " + " ".join(sys.argv[1:])
    cache = Path(cache_root) / results.name

    def local(trial: Trial) -> dict[str, Any]:
        run_dir = cache / trial.name
        return runner.local_trial(
            trial, folder / f"{trial.name}.json", log,
            f"  {trial.name}: training {trial_tokens(trial.schedule):,} tokens ({kind}), warm-up "
            f"{trial.schedule.warmup_steps}",
            lambda: runner.train_in_child("bench.train.tune:train_trial", trial, task, corpus, seed, run_dir,
                                          "tuning trial"),
            lambda summary, started: trial_record(trial, budget.name, corpus, seed, summary, run_dir, env, command,
                                                  started, threads=1))

    records = runner.run(trials, folder, executor=executor, jobs=jobs, local=local, job=trial_job,
                         job_args=lambda t: (t, budget.name, task, corpus, seed, str(cache / t.name),
                                             str(folder / f"{t.name}.json"), command),
                         stage="tune", what="tuning trial", logs=results / "submitit", resources=resources, log=log)
    chosen = select(records)
    summary = {
        "budget": budget.name,
        "task": task,
        "schedule": schedule.name,
        "grid": list(grid),
        "seed": seed,
        "selection": "lowest final validation NLL on the whole validation split",
        "trial_kind": kind,
        "tokens_per_trial": trial_tokens(trials[0].schedule),
        "recipe_tokens": schedule.max_tokens,
        # what tuning one family cost, in seeds of its training (target tokens; evaluation not counted)
        "cost_in_seeds": round(len(grid) * trial_tokens(trials[0].schedule) / schedule.max_tokens, 3)
        if schedule.max_tokens else None,
        "warmup_steps_per_trial": trials[0].schedule.warmup_steps,
        "trials": [f"{t.name}.json" for t in trials],
        "chosen": chosen,
    }
    write_json(results / TUNED_FILE, summary)
    return summary


def trial_record(trial: Trial, budget: str, corpus: str, seed: int, summary: dict[str, Any], run_dir: Path,
                 env: dict[str, Any], command: str, started: datetime, threads: int,
                 job: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of one finished (or diverged) trial.

    Args:
        trial: the trial.
        budget: the budget's name.
        corpus: the training corpus.
        seed: the training seed.
        summary: the Trainer's summary, or {"error": ...} when it diverged.
        run_dir: the trial's run folder (its curve is read).
        env: the environment (bench.records.provenance.environment).
        command: the command line.
        started: when the trial started (UTC).
        threads: the threads it trained with.
        job: the cluster job's fields; None: not a job.
    """
    return {
        "stage": "tune",
        "family": trial.family,
        "model": trial.family,
        "budget": budget,
        "lr": trial.lr,
        "trial_kind": "truncated" if trial.schedule.stop_tokens else "compressed",
        **trial_fields(trial.schedule, trial.config, trial.key, corpus, seed, threads, summary, run_dir, env, command,
                       started, job),
    }


def trial_fields(schedule: Schedule, config: dict[str, Any], key: str, corpus: str, seed: int, threads: int,
                 summary: dict[str, Any], run_dir: Path, env: dict[str, Any], command: str, started: datetime,
                 job: dict[str, Any] | None) -> dict[str, Any]:
    """What every trial record carries (tuning's and the shape search's): what trained, how it ended, its curve,
    where and when.

    Args:
        schedule: the trial's schedule.
        config: the config trained.
        key: its config hash.
        corpus: the training corpus.
        seed: the training seed.
        threads: the threads it trained with.
        summary: the Trainer's summary, or {"error": ...} when it diverged.
        run_dir: the trial's run folder (its curve is read).
        env: the environment (bench.records.provenance.environment).
        command: the command line.
        started: when the trial started (UTC).
        job: the cluster job's fields; None: not a job.
    """
    return {
        "tokens_per_trial": trial_tokens(schedule),
        "selection": "valid_nll (whole validation split)",
        "config": config,
        "config_hash": key,
        "schedule_config": schedule.to_dict(),
        "corpus": corpus,
        "seed": seed,
        "threads": threads,
        **{k: summary.get(k) for k in ("valid_nll", "best_valid_nll", "final_sample_valid_nll", "unigram_entropy",
                                       "train_steps", "train_tokens", "train_wall_s", "tokens_per_s", "stop")},
        "error": summary.get("error"),
        "curve": _read_curve(run_dir),
        **(job or {}),
        "env": env,
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def trial_job(trial: Trial, budget: str, task: str, corpus: str, seed: int, run_dir: str, path: str,
              command: str) -> dict[str, Any]:
    """One trial as a cluster job: trains in this process (threads: the job's CPUs), writes its record.

    Args:
        trial: the trial.
        budget: the budget's name.
        task: mt, lm or sum.
        corpus: the training corpus.
        seed: the training seed.
        run_dir: the trial's run folder.
        path: the record file written.
        command: the command line, recorded.
    """
    return runner.job_trial(
        Path(path),
        lambda: train_trial(trial.family, trial.config, trial.schedule.to_dict(), task, corpus, seed, run_dir),
        lambda summary, started, threads: trial_record(trial, budget, corpus, seed, summary, Path(run_dir),
                                                       environment(), command, started, threads, job_info()))


def _read_curve(run_dir: Path) -> list[dict]:
    from bench.train.trainer import read_curve  # sentencepiece (the trainer): loaded only when curves are read

    return read_curve(run_dir)


def read_trials(results: Path) -> list[dict[str, Any]]:
    """The trial records that ``chosen.json`` lists (the current tuning), for the report."""
    path = Path(results) / TUNED_FILE
    if not path.exists():
        return []
    summary = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for name in summary.get("trials", []):
        trial = path.parent / name
        if trial.exists():
            out.append(json.loads(trial.read_text(encoding="utf-8")))
    return out
