"""The sweep behind ``make bench``: for every model of a budget, solve -> profile -> latency -> train ->
evaluate, each stage writing one JSON record, then the leaderboard, tables and figures.

Records live in ``results/<budget>[-lm|-sum][-quick|-full]/runs/<model>-<config_hash>/<stage>.json``; the hash
covers the resolved config, the MAC protocol, the schedule and the corpus, so a changed recipe never reuses a
stale record. A stage whose record exists is skipped (``force`` re-runs), so an interrupted sweep resumes
where it stopped. Records are written atomically under a per-run lock: two sweeps at once never corrupt a
file and never run the same stage twice. Every stage holds the machine lock (bench.latency.lock): latency
stages exclusively, the others shared, and its record says when it started and finished and how long it
waited for the lock. Before the per-model stages, the paired latency of all the sweep's models is measured
once per latency setting, and a latency budget's own-setting figures of every model in interleaved rounds of
fresh processes (bench.sweep.side_by_side). Checkpoints and logs of training go to ``.cache/runs/`` (not
committed); the record keeps the learning curve.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.budget.mac_solver import Solution
from bench.budget.solve import solve_model
from bench.budget.spec import Budget, Variant, load_budget
from bench.cost.profiling import paper_macs, profile
from bench.errors import BenchError
from bench.infra.atomic import write_text
from bench.infra.cluster import Resources
from bench.infra.stage_lock import locked
from bench.latency.lock import EXCLUSIVE, SHARED, hold
from bench.latency.machine import all_cores, device_name
from bench.records.provenance import REPO, config_hash, environment, utc_now
from bench.records.schema import StageRecord, finished_record, make_record, write_record
from bench.train.schedules import LONGER, Schedule, get_schedule
from bench.train.searched_shapes import searched_shapes_folder, with_searched_shapes
from bench.train.tasks import DEFAULT_CORPUS, TASKS
from bench.train.tune import read_tuned

ABLATIONS = "ablations"  # <results>/ablations: an ablation sweep's folder (bench run --ablations)


def log_stderr(msg: str) -> None:
    """The sweep's default log: one line to stderr, at once."""
    print(msg, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepOptions:
    budget: str = "100M"
    task: str = "mt"
    models: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: [1])
    device: str = "cpu"
    threads: list[int] | None = None  # latency thread counts; default: 1 and all cores
    train_threads: int | None = None
    schedule: str = "short"
    quick: bool = False
    force: bool = False
    corpus: str | None = None
    vocab_size: int | None = None  # the tokenizer's vocabulary (default: the model config's, 8000)
    results_root: Path = REPO / "results"
    cache_root: Path = REPO / ".cache" / "runs"
    executor: str = "local"
    resources: Resources = field(default_factory=Resources)  # per job, for --executor slurm
    poll_s: float = 10.0  # how often a sweep of jobs asks the cluster for their states
    stages: tuple[str, ...] = ("profile", "latency", "train", "evaluate", "compress")
    compress: list[str] = field(default_factory=list)  # models to prune + quantize after evaluation
    log: Callable[[str], None] = log_stderr
    # the budget's ``ablations:`` instead of its rows, into <results>/ablations/ (bench run --ablations;
    # bench.report.ablations)
    ablations: bool = False


@dataclass
class ModelRun:
    """One model of a sweep: its solution and where its records go."""

    budget: Budget
    solution: Solution
    schedule: Schedule
    corpus: str
    folder: Path
    cache: Path
    key: str
    row: str = ""  # the budget's name for this row: a family, or a variant of one (transformer-postnorm)

    @property
    def model(self) -> str:
        """The registered family (what create_model builds)."""
        return self.solution.model

    @property
    def variant(self) -> bool:
        return self.row in self.budget.variants

    def common(self) -> dict[str, Any]:
        cfg = self.solution.config
        return {
            # a variant's row is named by its label, e.g. "transformer (post-norm, paper)"
            "model": self.budget.label(self.row) if self.variant else self.model,
            **({"variant": self.row} if self.variant else {}),
            "family": type(cfg).family,
            "budget": self.budget.name,
            # a latency budget's MAC target is only its search's anchor: the target is the latency
            "target_macs": None if self.budget.latency else self.budget.target_macs,
            **({"target_latency_ms": self.budget.latency.target_ms} if self.budget.latency else {}),
            "task": self.budget.task,
            "config_hash": self.key,
            "config": cfg.to_dict(),
            "schedule": self.schedule.name,
            "corpus": self.corpus,
        }


class Sweep:
    def __init__(self, opts: SweepOptions) -> None:
        if opts.task not in TASKS:
            raise BenchError(f"unknown task {opts.task!r}; valid: {', '.join(TASKS)}")
        if not opts.seeds or min(opts.seeds) < 0:
            raise BenchError("SEEDS must be one or more non-negative integers")
        self.opts = opts
        self.budget = load_budget(opts.budget, task=opts.task)
        self.schedule = get_schedule("quick" if opts.quick else opts.schedule, **self._budget_schedule())
        self.budget = self.budget.for_schedule(self.schedule.name)  # a longer schedule's own shared knobs
        # a smoke run, or another schedule than the budget's short one, gets a folder of its own (100M-full)
        self.results = Path(opts.results_root) / self.budget.results_name(self.schedule.name)
        # the searched-shape rows take their shapes from the budget's shape search (left out until it has run)
        searched = searched_shapes_folder(self.results, self.schedule.name, self.budget)
        quiet = set() if searched.is_dir() else set(self.budget.searched)  # no search begun: nothing to say
        self.budget = with_searched_shapes(self.budget, searched)
        self.base_results = self.results  # the comparison's own folder (an ablation sweep's reference rows)
        if opts.ablations:
            if not self.budget.ablations:
                raise BenchError(f"budget {self.budget.name} ({opts.task}) has no 'ablations:' section")
            unknown = [m for m in opts.models or [] if m not in self.budget.ablations]
            if unknown:
                raise BenchError(f"unknown ablation(s) {', '.join(unknown)}; budget {self.budget.name} has: "
                                 f"{', '.join(self.budget.ablations)}")
            self.budget = replace(self.budget, variants=dict(self.budget.ablations))
        names = opts.models or (list(self.budget.ablations) if opts.ablations else self.budget.rows())
        left_out = [f"{m} ({self.budget.skipped[m]})" for m in names if m in self.budget.skipped]
        if left_out:
            raise BenchError(f"MODELS names a row this sweep leaves out: {', '.join(left_out)}")
        for m, why in self.budget.skipped.items() if not opts.ablations else ():
            if m not in quiet:
                opts.log(f"{m}: not in this sweep, {why}")
        unknown = [m for m in names if m not in self.budget.rows()]
        if unknown:
            raise BenchError(
                f"unknown model(s) in MODELS: {', '.join(unknown)}; budget {self.budget.name} has: "
                f"{', '.join(self.budget.rows())}"
            )
        self.models = names
        self.corpus = opts.corpus or DEFAULT_CORPUS[opts.task]
        self.env = environment()
        self.command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        # the peak learning rate each family's tuning chose (bench tune); quick runs are not tuned
        # (a budget with ``tuned_from`` reads another budget's: a latency budget made from the 100M file)
        tuned_at = self.results.parent / self.budget.tuned_from if self.budget.tuned_from else self.results
        own = self.results / "tuning" / "chosen.json"
        kind = self.budget.tune.trials if self.budget.tune else None
        # a longer schedule of the length study takes the rates tuned for the schedule it lengthens
        self.tuned_schedule = self.schedule
        if self.schedule.name in LONGER and not own.exists():
            base = LONGER[self.schedule.name][0]
            self.tuned_schedule = get_schedule(base, **self.budget.schedule_overrides(base))
            tuned_at = self.results.parent / (self.budget.tuned_from or self.budget.results_name(base))
        self.tuned = {} if opts.quick else read_tuned(self.results if own.exists() else tuned_at,
                                                      self.tuned_schedule, kind)
        if opts.ablations:  # their own folder beside the comparison's runs: never rows of its leaderboard
            self.results = self.base_results / ABLATIONS
        self.fresh: set[Path] = set()  # records this sweep wrote before the per-model stages (bench.sweep.side_by_side)
        self.job: dict[str, Any] = {}  # in a cluster job: which job writes the records (bench.infra.cluster.job_info)
        self.failed: list[Any] = []  # jobs of this sweep that failed (bench.infra.cluster.Outcome)

    def schedule_for(self, name: str) -> Schedule:
        """The budget's schedule, with the peak rate tuning chose for the row's family (variants take their
        family's: they are rows of the family's protocol, not separately tuned)."""
        lr = self.tuned.get(self.budget.family_of(name))
        schedule = self.schedule if lr is None else self.schedule.with_overrides(lr=lr)
        variant = self.budget.variants.get(name)
        if variant is not None and (variant.train or variant.wall_time_of):  # an ablation of the recipe
            schedule = schedule.with_overrides(**variant.train, **self._wall_time_tokens(variant))
        return schedule

    def _wall_time_tokens(self, variant: Variant) -> dict[str, Any]:
        """An ablation that trains its family for another family's training time: ``max_tokens``, the recipe's
        target tokens times the family's training speed over the other's, measured side by side once and kept
        in the ablations' folder (bench.sweep.train_speed)."""
        if variant.wall_time_of is None or self.opts.quick:
            return {}  # a smoke run keeps the quick schedule's tokens
        from bench.sweep.train_speed import speed_ratio

        families = (variant.model, variant.wall_time_of)
        configs = {f: solve_model(self.budget, f).config.to_dict() for f in families}
        schedule = self.schedule_for(variant.wall_time_of)

        def data():  # sentencepiece: loaded only when the speed is measured
            from bench.train.trainer import load_task_data

            return load_task_data(self.corpus, self.budget.task, schedule, configs[variant.model]["vocab_size"])

        def trainer(family: str, task_data: Any, out: Path) -> Any:
            from bench.train.trainer import Trainer

            return Trainer(family, configs[family], task_data, schedule, 0, out, progress=False,
                           device=self.opts.device)

        threads = self.opts.train_threads or torch.get_num_threads()
        ratio = speed_ratio(self.base_results / ABLATIONS, *families, configs, schedule, data, trainer, threads,
                            self.opts.device, self.command, self.opts.log)
        return {"max_tokens": int(round(schedule.max_tokens * ratio, -3))}

    def _budget_schedule(self) -> dict[str, Any]:
        """A budget file may adjust the schedule for all its models alike (e.g. fewer tokens at 500M)."""
        return {} if self.opts.quick else self.budget.schedule_overrides(self.opts.schedule)

    # ------------------------------------------------------------------ records
    def _record(self, run: ModelRun, stage: str, extra: dict[str, Any], wall: float,
                span: dict[str, Any] | None = None) -> StageRecord:
        """The stage's record; ``span``: when it ran (``started``, ``finished``) and how it held the machine
        lock (``lock_mode``, ``lock_wait_s``)."""
        return make_record(
            stage.split("-")[0],
            run.common(),
            {**extra, **self.job},
            env=self.env,
            command=self.command,
            created=utc_now(),
            wall_s=round(wall, 2),
            **(span or {}),
        )

    @contextlib.contextmanager
    def _machine(self, stage: str) -> Iterator[dict[str, Any]]:
        """Hold the machine lock for one stage (exclusive for latency, shared for compute); the dict it yields
        is filled with the stage's span and its wait once the block ends."""
        span: dict[str, Any] = {}
        with hold(EXCLUSIVE if stage.startswith("latency") else SHARED, what=stage, log=self.opts.log) as lock:
            span["started"] = utc_now()
            yield span
            span.update(finished=utc_now(), **lock.record())

    def _stage(self, run: ModelRun, name: str, fn: Callable[[], dict[str, Any]]) -> StageRecord:
        path = run.folder / f"{name}.json"
        with locked(run.folder, name):
            existing = finished_record(path)
            if existing is not None and (not self.opts.force or path in self.fresh):
                self.opts.log(f"  {name}: done before, skipped ({path.relative_to(self.results)})")
                return existing
            started = time.perf_counter()
            with self._machine(name) as span:
                extra = fn()
            record = self._record(run, name, extra, time.perf_counter() - started, span)
            write_record(path, record)
            self.opts.log(f"  {name}: {time.perf_counter() - started:.1f} s")
            return record

    # ------------------------------------------------------------------ stages
    def plan(self, model: str) -> ModelRun:
        sol = solve_model(self.budget, model, cache_dir=self.results / "latency-solve")
        if self.opts.vocab_size is not None:  # another vocabulary: another model (and another hash)
            cfg = {**sol.config.to_dict(), "vocab_size": self.opts.vocab_size}
            sol.config = type(sol.config).create(cfg.pop("task"), **cfg)
        proto = self.budget.protocol
        schedule = self.schedule_for(model)
        key = config_hash(
            {
                "config": sol.config.to_dict(),
                "protocol": [proto.batch, proto.src_tokens, proto.tgt_tokens],
                "schedule": schedule.to_dict(),
                "corpus": self.corpus,
            }
        )
        folder = self.results / "runs" / f"{model}-{key}"
        where = self.results.name if not self.opts.ablations else f"{self.base_results.name}-{ABLATIONS}"
        cache = Path(self.opts.cache_root) / where / f"{model}-{key}"
        return ModelRun(self.budget, sol, schedule, self.corpus, folder, cache, key, row=model)

    def profile(self, run: ModelRun) -> dict[str, Any]:
        rec = profile(run.model, run.solution.config.to_dict(), self.budget.protocol)
        for w in rec["warnings"]:
            self.opts.log(f"  warning: {run.model}: {w}")
        return rec

    def latency_settings(self) -> list[tuple[str, int, str]]:
        threads = self.opts.threads or sorted({1, all_cores()})
        out = []
        if self.opts.device == "cpu":
            out += [("cpu", t, w) for t in threads for w in ("forward", "translate")]
        else:
            out += [("cuda", 1, w) for w in ("forward", "translate")]
        return out

    def latency(self, run: ModelRun, device: str, threads: int, workload: str,
                profile: StageRecord | None = None) -> dict[str, Any]:
        """One latency record, measured in a child process that receives the solved config; the paper's MAC
        counts come from the profile (counted with the budget's protocol).

        Args:
            run: the model's planned run.
            device: "cpu" or "cuda".
            threads: the thread count.
            workload: "forward" or "translate".
            profile: the run's profile record, whose MACs are recorded; None: counted here.
        """
        # looked up per call: tests replace bench.latency.measure_in_subprocess
        from bench.latency import LONE_PROCESSES, measure_in_subprocess, median_of_processes

        if profile is not None:
            paper = (profile.get("macs"), profile.get("macs_with_output"))
        else:
            paper = paper_macs(run.model, run.solution.config.to_dict(), self.budget.protocol)
        # smoke runs time fewer calls than the protocol asks for (their records say so)
        timing = dict(warmup=3, min_runs=10, min_time_s=0.2) if self.opts.quick else {}
        # a latency budget's own setting: the median of fresh processes, as its tolerance needs
        lat = self.budget.latency
        own = lat is not None and (lat.device, lat.threads, lat.workload, lat.dtype, lat.backend) == (
            device, threads, workload, "fp32", "eager")
        rec = median_of_processes([measure_in_subprocess(
            run.model, run.solution.config.to_dict(), workload=workload, threads=threads, device=device,
            paper_macs=paper, **self._latency_shape(), **timing,
        ) for _ in range(LONE_PROCESSES if own and not self.opts.quick else 1)])
        rec.pop("model", None)
        rec.pop("config", None)
        return rec

    def _latency_shape(self) -> dict[str, Any]:
        """Summarization times its own shapes (the budget's ``protocol: sum:`` token counts; as many decoding
        steps as target tokens); the other tasks the protocol's 30 + 30."""
        if self.budget.task != "sum":
            return {}
        p = self.budget.protocol
        return {"shape": {"src_len": p.src_tokens, "tgt_len": p.tgt_tokens}}

    def train(self, run: ModelRun, seed: int) -> dict[str, Any]:
        # sentencepiece: loaded only by a train stage
        from bench.train.trainer import Trainer, load_task_data, read_curve

        data = load_task_data(self.corpus, self.budget.task, run.schedule, run.solution.config.vocab_size)
        if data.vocab_note:
            self.opts.log(f"  note: {data.vocab_note}")
        out = run.cache / f"train-s{seed}"
        trainer = Trainer(
            run.model,
            run.solution.config.to_dict(),
            data,
            run.schedule,
            seed,
            out,
            progress=sys.stderr.isatty(),
            device=self.opts.device,
        )
        summary = trainer.run(resume=True)
        if summary["stop"] == "interrupted":  # Ctrl-C / SIGTERM: no record; the command line says where it stopped
            raise KeyboardInterrupt(f"interrupted at update {summary['train_steps']} of {run.model} seed {seed}, "
                                    f"checkpoint saved in {out}; run the same command to resume")
        resumed = {"resumed_from_step": trainer.resumed_from_step} if trainer.resumed_from_step is not None else {}
        return {**summary, **resumed, "device": str(trainer.device), "device_model": device_name(trainer.device),
                "run_dir": str(out), "curve": read_curve(out)}

    def compress(self, run: ModelRun, seed: int) -> list[dict[str, Any]]:
        """int8, then int8 + the largest magnitude-pruning sparsity that keeps validation NLL within 0.05 nats
        of fp32; one record per compressed stage (the fp32 row is the model's own)."""
        from bench.compress import compress_run  # sacrebleu: loaded only by a compress stage

        quick = self.opts.quick
        res = compress_run(
            run.cache / f"train-s{seed}",
            quantize="int8",
            prune="auto",
            out_dir=run.cache / f"compress-s{seed}",
            threads=(1, "all"),
            candidates=(0.1, 0.2, 0.3) if quick else (0.1, 0.2, 0.3, 0.4, 0.5),
            choose_sentences=40 if quick else 300,
            timing={"warmup": 3, "min_runs": 10, "min_time_s": 0.2} if quick else None,
        )
        return [{**st, "choice": res.get("choice")} for st in res["stages"] if st["compression"] != "fp32"]

    def evaluate(self, run: ModelRun, seed: int) -> dict[str, Any]:
        from bench.evaluation.evaluate import evaluate_run  # sacrebleu: loaded only by an evaluate stage

        res = evaluate_run(run.cache / f"train-s{seed}")
        res.pop("model", None)
        return res

    # ------------------------------------------------------------------ driver
    def _compress_stage(self, run: ModelRun, seed: int) -> None:
        """One compress run writes several records (one per compressed stage), all or none."""
        marker = run.folder / f"compress-s{seed}.done"
        if marker.exists() and not self.opts.force:
            self.opts.log(f"  compress-s{seed}: done before, skipped")
            return
        with locked(run.folder, f"compress-s{seed}"):
            started = time.perf_counter()
            with self._machine("compress") as span:
                stages = self.compress(run, seed)
            wall = time.perf_counter() - started
            for st in stages:
                tag = st["compression"].replace("+", "_")
                write_record(
                    run.folder / f"compress-s{seed}-{tag}.json",
                    self._record(run, "compress", {**st, "seed": seed}, wall, span),
                )
            write_text(marker, json.dumps([st["compression"] for st in stages]))
            self.opts.log(f"  compress-s{seed}: {wall:.1f} s ({', '.join(st['compression'] for st in stages)})")

    def run_model(self, model: str) -> None:
        self.opts.log(f"{model} at {self.budget.name} ({self.budget.task}):")
        run = self.plan(model)
        c = run.solution.config
        self.opts.log(
            f"  solved: d_model={c.d_model}, ffn_dim={c.ffn_dim}, {run.solution.macs:,} MACs "
            f"({run.solution.rel_error:+.2%}); records in {run.folder}"
        )
        stages = self.opts.stages
        if self.opts.train_threads:  # training and evaluation in this process (latency has its own)
            torch.set_num_threads(self.opts.train_threads)
        prof = self._stage(run, "profile", lambda: self.profile(run)) if "profile" in stages else None
        if "latency" in stages:
            for device, threads, workload in self.latency_settings():
                name = f"latency-{device}-t{threads}-{workload}"
                self._stage(run, name, lambda d=device, t=threads, w=workload: self.latency(run, d, t, w, prof))
        for seed in self.opts.seeds:
            if "train" in stages:
                self._stage(run, f"train-s{seed}", lambda s=seed: self.train(run, s))
            if "evaluate" in stages:
                self._stage(run, f"eval-s{seed}", lambda s=seed: self.evaluate(run, s))
            if "compress" in stages and model in self.opts.compress:
                self._compress_stage(run, seed)

    def report(self) -> list[Path]:
        if self.opts.ablations:
            from bench.report.ablations import write_ablations  # pandas: loaded only when the report is built

            return write_ablations(self.results, self.base_results, self.budget)
        from bench.report.figures import write_figures  # matplotlib, seaborn: loaded only when the report is built
        from bench.report.render import write_leaderboard  # pandas: loaded only when the report is built

        written = list(write_leaderboard(self.results).values())
        notes: list[str] = []
        written += write_figures(self.results, notes=notes)
        for note in notes:
            self.opts.log(f"note: {note}")
        return written

    def run(self) -> list[Path]:
        # looked up per call: tests replace side_by_side.compare_stages
        from bench.sweep.side_by_side import compare_stages, lone_stages

        started = time.perf_counter()
        if self.opts.executor == "local":
            if "latency" in self.opts.stages:
                compare_stages(self)
                lone_stages(self)
            for model in self.models:
                self.run_model(model)
        else:  # one cluster job per unit; the report is built from whatever they wrote
            from bench.sweep.jobs import run_jobs  # looked up per call: tests replace bench.sweep.jobs.run_jobs

            self.failed = run_jobs(self)
        try:
            written = self.report()
        except BenchError as exc:  # every job failed: nothing to report yet, the failures say why
            if not self.failed:
                raise
            self.opts.log(f"note: no report: {exc}")
            written = []
        self._write_manifest(time.perf_counter() - started)
        return written

    def _write_manifest(self, wall: float) -> None:
        """How the results in this folder were produced: command, machine, wall time (appended per sweep)."""
        path = self.results / "RUNS.md"
        line = (
            f"- {datetime.now(timezone.utc).isoformat(timespec='seconds')}: `{self.command}` "
            f"(schedule {self.schedule.name}, seeds {self.opts.seeds}, {wall / 60:.1f} min) on "
            f"{self.env['device_model']} ({self.env['cpus']} CPUs), torch {self.env['torch']}, "
            f"commit {self.env['git_commit']}\n"
        )
        old = path.read_text(encoding="utf-8") if path.exists() else "# Sweeps that wrote these records\n\n"
        write_text(path, old + line)

