"""An equal-budget shape search: per family, which depth, heads and FFN ratio train best at the budget.

The sweep holds every family to the paper's shape (the budget file's ``models:`` fixed knobs) and lets the solver
pick the width. This search moves the shape too, under the same rules for every family:

- The candidates are the budget file's ``shapes:`` section (bench.budget.shape_plan: the knobs ``layers``,
  ``encoder_layers``, ``decoder_layers``, ``heads`` with the head counts tied to it, ``ffn_ratio``; Lite's kernel
  sizes follow its depth), per family a grid of values or a list of moves from the paper's shape. The paper's
  shape is always a candidate. Every family gets ``trials_per_family`` candidates: the paper's shape first, then
  the others by the fewest knobs moved from it, ties in the order written, the first ``trials_per_family``. A
  family whose grid or list holds fewer shapes gets fewer trials, and the table says so.
- Every candidate is solved to the budget by the budget's own solver (bench.budget.solve_model: width, then
  the fine knob, confirmed within the tolerance by the primary counter). A candidate the solver cannot fit, a
  knob the family or task does not have, an empty list: one line naming it, before any training.
- Every trial is truncated, as the peak-rate search's (bench.train.tune): the budget's recipe at its full length, at
  the family's tuned peak rate (``<results>/tuning/chosen.json``: tune first), stopped after ``tokens_per_trial``
  target tokens, the same for every family; one seed (``--seed``, 1). Trials train in their own processes at 1
  thread, ``jobs`` at a time (``executor="slurm"``: one job per trial, one job array). The ranking is by the
  final validation NLL over the whole validation split (never test); a diverged trial ranks last; ties go to
  the paper's shape, then the candidate order.
- Each trial writes ``<results>/shapes/<family>-<shape>-<hash>.json`` (the hash covers the config, schedule, corpus
  and seed: the paper's shape trains the config and schedule of the tuning trial at the chosen rate); a trial
  with a record is never run again, and each runs under its own lock (a second search waits, then finds the
  record) while its training holds the machine lock shared (bench.latency.lock), as tuning's do.
- ``<results>/shapes/chosen.json``: per family the best shape and the two best, listed for confirmation;
  ``shapes.md``, the table of every candidate, and ``shapes.png|pdf``, trial NLL per candidate. ``confirm``
  trains each family's two best with the whole recipe (one seed each; ``<results>/shapes/confirm/``) and the
  table shows both rankings. The paper shape competes in the confirmation too: its full-recipe run is the
  family's own row of the comparison (the same config, recipe, rate and seed), read from ``<results>/runs``
  rather than trained again (bench.train.searched_shapes.paper_runs); when it ends best the family has no
  searched-shape row.

What it costs: a trial trains ``tokens_per_trial`` of a seed's target tokens (100M: a third), so a family's
search costs ``trials_per_family * tokens_per_trial / recipe tokens`` seeds (``cost_in_seeds`` in chosen.json;
wall time varies with the shape), and the confirmation two seeds more.

The peak rate was tuned on the paper's shape, so the other shapes train at a rate not tuned for them: a bias
towards the paper's shape that the search does not remove (chosen.json and the table say so).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.budget.shape_plan import Shape, candidates, paper_config, paper_shape, shape_overrides
from bench.budget.solve import solve_model
from bench.budget.spec import Budget, load_budget
from bench.cost.params import count_params
from bench.errors import BenchError
from bench.infra.atomic import write_json, write_text
from bench.infra.cluster import Resources, check_cluster, job_info
from bench.records.provenance import REPO, config_hash, environment
from bench.train import trials as runner
from bench.train.schedules import Schedule, get_schedule
from bench.train.searched_shapes import CHOSEN, FOLDER, paper_runs, shape_variant
from bench.train.tasks import DEFAULT_CORPUS
from bench.train.tune import read_tuned, trial_fields, trial_order, trial_schedule, trial_tokens
from bench.train.tune import train_trial as train
from models import create_model

SELECTION = "lowest final validation NLL on the whole validation split"
RATE_NOTE = ("every shape trains at the peak rate tuned on its family's paper shape (bench tune): a rate not "
             "tuned for the other shapes")


@dataclass(frozen=True)
class Solved:
    family: str
    shape: Shape
    paper: bool
    candidate: int  # its place in the family's candidates (0: the paper's shape)
    config: dict[str, Any]
    macs: int  # the budget's counter (the solver's confirmation)
    analytic_macs: int
    rel_error: float
    params: int


def solve_shape(budget: Budget, family: str, shape: Shape, paper_cfg: dict[str, Any], candidate: int = 0) -> Solved:
    """``shape`` of ``family`` solved to the budget by the budget's own solver (a shape is a variant of the family
    with its knobs set, and the FFN ratio on the width grid); one line naming the shape when it cannot be.

    Args:
        budget: the MAC budget.
        family: the family.
        shape: the candidate shape.
        paper_cfg: the family's paper config (bench.budget.shape_plan.paper_config).
        candidate: the candidate's index, recorded.
    """
    paper = paper_shape(paper_cfg)
    over = shape_overrides(family, paper_cfg, shape)
    row = f"{family}@{shape.slug}"
    at = replace(budget, shapes=None, variants={row: shape_variant(row, family, row, shape, paper, over)})
    try:
        sol = solve_model(at, row)
    except BenchError as exc:
        raise BenchError(f"shapes: {family} {shape.slug} cannot be solved to {budget.name}: {exc}") from None
    cfg = sol.config.to_dict()
    params = count_params(create_model(family, **cfg))["params"]
    return Solved(family, shape, shape == paper, candidate, cfg, sol.macs, sol.analytic_macs, sol.rel_error, params)


# ------------------------------------------------------------------------------------------------ trials
@dataclass(frozen=True)
class ShapeTrial:
    solved: Solved
    schedule: Schedule
    key: str

    @property
    def family(self) -> str:
        return self.solved.family

    @property
    def config(self) -> dict[str, Any]:
        return self.solved.config

    @property
    def name(self) -> str:
        return f"{self.family}-{self.solved.shape.slug}-{self.key}"


def _trial(solved: Solved, schedule: Schedule, corpus: str, seed: int) -> ShapeTrial:
    """The hash covers the config, schedule, corpus and seed: another seed's search never reuses a record."""
    key = config_hash({"config": solved.config, "schedule": schedule.to_dict(), "corpus": corpus, "seed": seed})
    return ShapeTrial(solved, schedule, key)


def plan(budget: Budget, schedule: Schedule, corpus: str, tuned: dict[str, float], models: list[str] | None = None,
         tokens_per_trial: int | None = None, log: Callable[[str], None] = lambda m: None,
         seed: int = 1) -> list[ShapeTrial]:
    """Every family's candidates, each solved to the budget, as truncated trials at the family's tuned peak rate:
    the same number (unless a family has fewer candidates) and tokens for every family. Everything is checked
    here, before any training.

    Args:
        budget: a MAC budget with a ``shapes:`` section.
        schedule: the recipe; trials are truncated from it.
        corpus: the training corpus (part of each trial's key).
        tuned: family -> its tuned peak learning rate.
        models: the families searched; None: the section's.
        tokens_per_trial: target tokens per trial; None: the section's.
        log: takes each progress line.
        seed: the training seed (part of each trial's key).
    """
    shapes = budget.shapes
    if shapes is None:
        raise BenchError(f"shapes: budget {budget.name} has no 'shapes:' section ({budget.source}); "
                         "budgets/100M.yaml has one to follow")
    if budget.latency is not None:
        raise BenchError(f"shapes: {budget.name} is a latency budget; the shape search matches MACs")
    families = models or list(shapes.models)
    unknown = [m for m in families if m not in shapes.models]
    if unknown:
        raise BenchError(f"shapes: {', '.join(unknown)} not among the families of {budget.name}'s 'shapes:' "
                         f"section: {', '.join(shapes.models)}")
    tokens = tokens_per_trial or shapes.tokens_per_trial
    if tokens <= 0:
        raise BenchError(f"shapes: tokens per trial must be positive, got {tokens}")
    if not schedule.max_tokens or tokens > schedule.max_tokens:
        raise BenchError(f"shapes: a trial of {tokens:,} target tokens is longer than the recipe "
                         f"({schedule.max_tokens or 0:,})")
    untuned = [m for m in families if m not in tuned]
    if untuned:
        raise BenchError(f"shapes: no tuned peak rate for {', '.join(untuned)} in tuning/chosen.json (for schedule "
                         f"{schedule.name}); run `python -m bench tune --budget {budget.name}` first")
    shapes_of = {m: candidates(budget, m) for m in families}  # every knob checked before anything is solved
    trials = []
    for family in trial_order(list(families)):
        paper_cfg = paper_config(budget, family)
        sched = trial_schedule(schedule, tuned[family], tokens, "truncated")
        log(f"{family}: solving {len(shapes_of[family])} candidate shapes to {budget.name}")
        seen: dict[str, Shape] = {}
        for i, shape in enumerate(shapes_of[family]):
            trial = _trial(solve_shape(budget, family, shape, paper_cfg, i), sched, corpus, seed)
            if trial.key in seen:  # e.g. two FFN ratios the fine knob brings to one ffn_dim
                raise BenchError(f"shapes: {family} {shape.slug} solves to the same model as {seen[trial.key].slug} "
                                 f"(d_model {trial.config['d_model']}, ffn_dim {trial.config['ffn_dim']}); the "
                                 "budget's solver cannot tell them apart: drop one")
            seen[trial.key] = shape
            trials.append(trial)
    return trials


def train_trial(family: str, config: dict[str, Any], schedule: dict[str, Any], task: str, corpus: str, seed: int,
                out: str) -> dict[str, Any]:
    """One trial or confirmation run (what each child process runs): bench.train.tune's trial training.

    Args:
        family: the family.
        config: its solved config.
        schedule: the trial's schedule, as a dict.
        task: mt, lm or sum.
        corpus: the training corpus.
        seed: the training seed.
        out: the trial's run folder.
    """
    return train(family, config, schedule, task, corpus, seed, out)


def _run(trial: ShapeTrial, task: str, corpus: str, seed: int, out: Path, what: str) -> dict[str, Any]:
    """Train in its own process at 1 thread; its summary, or {"error": ...} when it diverged."""
    return runner.train_in_child("bench.train.shapes:train_trial", trial, task, corpus, seed, out, what)


def trial_record(trial: ShapeTrial, budget: Budget, corpus: str, seed: int, summary: dict[str, Any],
                 run_dir: Path, env: dict[str, Any], command: str, started: datetime, threads: int,
                 job: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of one finished (or diverged) trial or confirmation run.

    Args:
        trial: the trial.
        budget: the budget.
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
    s = trial.solved
    truncated = trial.schedule.stop_tokens is not None
    return {
        "stage": "shapes" if truncated else "shapes_confirm",
        "family": trial.family,
        "model": trial.family,
        "budget": budget.name,
        "task": budget.task,
        "shape": s.shape.to_dict(),
        "shape_slug": s.shape.slug,
        "paper_shape": s.paper,
        "candidate": s.candidate,
        "d_model": s.config["d_model"],
        "ffn_dim": s.config["ffn_dim"],
        "macs": s.macs,
        "analytic_macs": s.analytic_macs,
        "target_macs": budget.target_macs,
        "rel_error": round(s.rel_error, 6),
        "params": s.params,
        "lr": trial.schedule.lr,
        "trial_kind": "truncated" if truncated else "full",
        **trial_fields(trial.schedule, trial.config, trial.key, corpus, seed, threads, summary, run_dir, env,
                       command, started, job),
    }


def trial_job(trial: ShapeTrial, budget: Budget, task: str, corpus: str, seed: int, run_dir: str, path: str,
              command: str) -> dict[str, Any]:
    """One trial as a cluster job: trains in this process (threads: the job's CPUs), writes its record.

    Args:
        trial: the trial.
        budget: the budget.
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


def run_trials(trials: list[ShapeTrial], folder: Path, cache: Path, *, budget: Budget, task: str, corpus: str,
               seed: int, jobs: int, executor: str, resources: Resources | None, logs: Path,
               log: Callable[[str], None], command: str, what: str = "shape trial") -> list[dict[str, Any]]:
    """Every trial without a record, trained (``jobs`` at a time here, or as one job array); every trial's record.
    A trial runs under its own lock, so a second search at the same time waits for it and then finds its record.

    Args:
        trials: the trials.
        folder: where the records go.
        cache: where the trials' run folders go.
        budget: the budget.
        task: mt, lm or sum.
        corpus: the training corpus.
        seed: the training seed.
        jobs: trials trained at a time, locally.
        executor: "local", "slurm" or "submitit-local".
        resources: each cluster job's partition, CPUs, time and GPUs; None: the defaults.
        logs: where the cluster jobs' logs go.
        log: takes each progress line.
        command: the command line, recorded.
        what: what a trial is called in the messages.
    """
    env = environment()

    def local(trial: ShapeTrial) -> dict[str, Any]:
        run_dir = cache / trial.name
        return runner.local_trial(
            trial, folder / f"{trial.name}.json", log,
            f"  {trial.name}: training {trial_tokens(trial.schedule):,} target tokens at peak rate "
            f"{trial.schedule.lr:g} (d_model {trial.config['d_model']}, ffn_dim {trial.config['ffn_dim']})",
            lambda: _run(trial, task, corpus, seed, run_dir, what),
            lambda summary, started: trial_record(trial, budget, corpus, seed, summary, run_dir, env, command,
                                                  started, threads=1))

    return runner.run(trials, folder, executor=executor, jobs=jobs, local=local, job=trial_job,
                      job_args=lambda t: (t, budget, task, corpus, seed, str(cache / t.name),
                                          str(folder / f"{t.name}.json"), command),
                      stage="shapes", what=what, logs=logs, resources=resources, log=log)


# --------------------------------------------------------------------------------------------- ranking
def rank(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family, its shapes best first: the lowest final validation NLL (a diverged run, NLL None, ranks last
    and never wins), ties to the paper's shape, then the candidate order. Every family's runs must have the same
    target tokens each; a family may have fewer candidates than another (its grid holds fewer)."""
    tokens = sorted({r["tokens_per_trial"] for r in records})
    if len(tokens) > 1:
        raise BenchError(f"shapes: families got unequal trials: target tokens per trial {tokens}")
    out: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in records}):
        mine = [r for r in records if r["family"] == family]
        finite = [r for r in mine if r.get("valid_nll") is not None and math.isfinite(r["valid_nll"])]
        if not finite:
            raise BenchError(f"shapes: every run of {family} diverged")
        order = sorted(finite, key=lambda r: (r["valid_nll"], not r["paper_shape"], r["candidate"]))
        order += sorted((r for r in mine if r not in finite), key=lambda r: r["candidate"])
        best = order[0]
        out[family] = {
            "shape": best["shape"],
            "shape_slug": best["shape_slug"],
            "paper_shape": best["paper_shape"],
            "d_model": best["d_model"],
            "ffn_dim": best["ffn_dim"],
            "valid_nll": best["valid_nll"],
            "lr": best["lr"],
            "ranking": [r["shape_slug"] for r in order],
            "ranks": {r["shape_slug"]: (i + 1 if r in finite else None) for i, r in enumerate(order)},
            "runs": len(mine),
            "tokens_per_trial": best["tokens_per_trial"],
            "confirm": [r["shape_slug"] for r in order[:2] if r in finite],
        }
    return out


# --------------------------------------------------------------------------------------------- the search
def search(
    budget_spec: str,
    task: str = "mt",
    schedule_name: str = "short",
    models: list[str] | None = None,
    tokens_per_trial: int | None = None,
    seed: int = 1,
    jobs: int = 2,
    corpus: str | None = None,
    results_root: Path = REPO / "results",
    cache_root: Path = REPO / ".cache" / "shapes",
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    executor: str = "local",
    resources: Resources | None = None,
    confirm: bool = False,
) -> dict[str, Any]:
    """The search (and with ``confirm`` the full runs of each family's two best); writes chosen.json, shapes.md
    and shapes.png|pdf under ``<results>/shapes`` and returns chosen.json's content.

    Args:
        budget_spec: a budget name or file.
        task: mt, lm or sum.
        schedule_name: the recipe's schedule preset.
        models: the families searched; None: the ``shapes:`` section's.
        tokens_per_trial: target tokens per trial; None: the section's.
        seed: the training seed.
        jobs: trials trained at a time, locally.
        corpus: the training corpus; None: the task's default.
        results_root: where results/<budget>/shapes goes.
        cache_root: where the trials' run folders go.
        log: takes each progress line (default: stderr).
        executor: "local", "slurm" or "submitit-local".
        resources: each cluster job's partition, CPUs, time and GPUs; None: the defaults.
        confirm: also train each family's two best candidates on the whole recipe.
    """
    if executor == "slurm":
        check_cluster((resources or Resources()).partition)
    budget = load_budget(budget_spec, task=task)
    schedule = get_schedule(schedule_name, **budget.schedule_overrides(schedule_name))
    corpus = corpus or DEFAULT_CORPUS[task]
    results = Path(results_root) / budget.results_name(schedule.name)
    tuned = read_tuned(results, schedule, budget.tune.trials if budget.tune else None)
    trials = plan(budget, schedule, corpus, tuned, models, tokens_per_trial, log, seed)
    folder, cache = results / FOLDER, Path(cache_root) / results.name
    command = "python -m bench " + " ".join(sys.argv[1:])
    common = dict(budget=budget, task=task, corpus=corpus, seed=seed, jobs=jobs, executor=executor,
                  resources=resources, logs=results / "submitit", log=log, command=command)
    records = run_trials(trials, folder, cache, **common)
    ranking = rank(records)
    tokens = trial_tokens(trials[0].schedule)
    counts = {f: sum(t.family == f for t in trials) for f in ranking}
    per = budget.shapes.trials_per_family
    summary: dict[str, Any] = {
        "budget": budget.name,
        "task": task,
        "schedule": schedule.name,
        "target_macs": budget.target_macs,
        "tolerance": budget.tolerance,
        "seed": seed,
        "selection": SELECTION,
        "trial_kind": "truncated",
        "trials_per_family": per,
        "candidates": counts,
        "fewer_candidates": {f: n for f, n in counts.items() if n < per},
        "tokens_per_trial": tokens,
        "recipe_tokens": schedule.max_tokens,
        # what one family's search cost, in seeds of its training (target tokens; evaluation not counted)
        "cost_in_seeds": {f: round(n * tokens / schedule.max_tokens, 3) for f, n in counts.items()},
        "lr": {f: tuned[f] for f in ranking},
        "rate_note": RATE_NOTE,
        "trials": [f"{t.name}.json" for t in trials],
        "chosen": ranking,
    }
    if confirm:
        best = {f: set(r["confirm"]) for f, r in ranking.items()}
        runs = [_trial(t.solved, schedule.with_overrides(lr=t.schedule.lr), corpus, seed) for t in trials
                if t.solved.shape.slug in best[t.family]]
        log(f"confirming: {len(runs)} full-recipe run(s) of {schedule.max_tokens:,} target tokens, the two best "
            "shapes of each family")
        done = run_trials(runs, folder / "confirm", cache / "confirm", what="confirmation run", **common)
        summary["confirm_runs"] = [f"confirm/{t.name}.json" for t in runs]
        # the paper shape among them: its full run is the family's own row of the comparison (seed 1)
        paper = {r["family"]: r for r in records if r["paper_shape"] and r["shape_slug"] not in best[r["family"]]}
        full = {f: schedule.with_overrides(lr=tuned[f]).to_dict() for f in paper}
        summary["paper_runs"] = paper_runs(results, paper, full, seed, corpus)
        summary["confirmed"] = rank(done + list(summary["paper_runs"].values()))
    write_json(folder / CHOSEN, summary)
    confirmed = [json.loads((folder / n).read_text(encoding="utf-8")) for n in summary.get("confirm_runs", [])]
    # matplotlib, pandas: loaded only when the search is reported
    from bench.report.shapes import table, write_shapes_figure

    written = [write_text(folder / "shapes.md", table(summary, records, confirmed))]
    written += write_shapes_figure(records, summary, folder / "shapes")
    summary["written"] = [str(p) for p in [folder / CHOSEN, *written]]
    return summary
