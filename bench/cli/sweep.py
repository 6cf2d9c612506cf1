"""``run``, ``report`` and ``recipes``: the sweep, the tables and figures it leaves, and the recipe study."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.cli import args as check
from bench.errors import BenchError
from bench.report import has_records, results_dir_for
from bench.sweep.jobs import failure_message
from bench.train.schedules import LONGER


def cmd_run(args: argparse.Namespace) -> int:
    from bench.sweep.runner import Sweep, SweepOptions  # yaml, the model registry: loaded only by `run`

    models = check.words(args.models) or None
    compress = check.words(args.compress)
    unknown = [m for m in compress if m not in (models or [m])]
    if unknown:
        raise BenchError(f"--compress {', '.join(unknown)}: not among the models of this sweep")
    opts = SweepOptions(
        budget=args.budget,
        task=args.task,
        models=models,
        seeds=check.integers("--seeds", args.seeds) or [1],
        device=args.device,
        # latency jobs on a cluster run on its nodes, not on this one: their cores are not this machine's
        threads=check.thread_list("--threads", args.threads, latency=args.executor == "local"),
        schedule=args.schedule,
        quick=args.quick,
        force=args.force,
        corpus=args.corpus,
        vocab_size=check.integer("--vocab-size", args.vocab_size, 5),
        executor=check.executor(args.executor),
        resources=check.resources(args),
        compress=compress,
    )
    if args.results:
        opts.results_root = Path(args.results)
    if args.cache:
        opts.cache_root = Path(args.cache)
    if opts.executor != "local":  # jobs may start elsewhere: every path they are given is absolute
        opts.results_root, opts.cache_root = Path(opts.results_root).resolve(), Path(opts.cache_root).resolve()
    opts.train_threads = check.integer("--train-threads", args.train_threads)
    opts.ablations = args.ablations
    if args.ablations:  # one-knob departures measured for quality: no latency, no compression unless asked
        opts.stages = ("profile", "train", "evaluate")
    if args.stages is not None:
        stages = tuple(check.words(args.stages))
        bad = [m for m in stages if m not in SweepOptions.stages]
        if bad or not stages:
            raise BenchError(f"--stages {args.stages!r}: valid stages are {', '.join(SweepOptions.stages)}")
        opts.stages = stages
    if args.device == "cuda":
        import torch  # torch: loaded only by `run --device cuda`

        if not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA device is visible here; use --device cpu")
    sweep = Sweep(opts)
    for path in sweep.run():
        print(f"wrote {path}")
    if sweep.failed:  # exit 1, each failed job named with its log
        raise failure_message(sweep.failed)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild tables and figures; prints the files written (stdout) and what could not be drawn yet (stderr,
    ``note:`` lines). A missing folder or no records is bad input."""
    # matplotlib, pandas: loaded only by `report`
    from bench.report.combined import (
        combined_leaderboard,
        mixed_recipes,
        write_combined_figure,
        write_combined_table,
    )
    from bench.report.figures import write_figures  # matplotlib, seaborn: loaded only by `report`
    from bench.report.leaderboard import build_leaderboard  # pandas: loaded only by `report`
    from bench.report.render import write_leaderboard  # pandas: loaded only by `report`
    from bench.report.tasks import FOLDER, write_tasks_summary  # pandas: loaded only by `report`

    given = Path(args.results) if args.results else None
    if given is not None and (given / "runs").is_dir():
        results_dir, root = given, given.parent
    else:
        if not args.budget:
            raise BenchError("report: give --budget (e.g. 100M), or --results pointing at a folder with runs/ inside")
        root = given or Path("results")
        results_dir = results_dir_for(args.budget, args.task, root)
        if getattr(args, "schedule", "short") != "short":  # the length study's folders: 100M-x4, 100M-x16
            results_dir = results_dir.parent / f"{results_dir.name}-{args.schedule}"
    if not results_dir.is_dir():
        budget = args.budget or results_dir.name
        raise BenchError(f"no results folder {results_dir} (run `make bench BUDGET={budget}` first)")
    if not has_records(results_dir):
        raise BenchError(f"no run records under {results_dir / 'runs'} (run `make bench` for this budget first)")

    # the task's folder suffix: "" (translation), "-lm" or "-sum", from --task or the folder's name
    suffix = next((f"-{t}" for t in ("lm", "sum") if args.task == t or results_dir.name.endswith(f"-{t}")), "")
    # budget folders of this task only (100M, 500M-lm, ...): not smoke runs (-quick), longer schedules nor studies
    budget_folders = [
        d
        for d in (sorted(root.iterdir()) if root.is_dir() else [])
        if d.is_dir()
        and re.fullmatch(r"[0-9.]+[KMGT](-lm|-sum)?", d.name)
        and re.sub(r"^[0-9.]+[KMGT]", "", d.name) == suffix
        and has_records(d)
    ]
    is_budget_folder = results_dir.resolve() in [d.resolve() for d in budget_folders]
    if args.combine is None:  # every budget of this task with records, when there are several
        folders = budget_folders if len(budget_folders) >= 2 and is_budget_folder else []
        strict = False
    else:  # asked for: every folder must exist and have records, checked before anything is written
        folders = [
            Path(b) if Path(b).is_dir() else results_dir_for(b, suffix[1:] or "mt", root) for b in args.combine
        ]
        for folder in folders:
            if not has_records(folder):
                raise BenchError(f"--combine: no run records under {folder / 'runs'}")
        mixed = mixed_recipes(combined_leaderboard(folders)) if len(folders) > 1 else None
        if mixed:  # one figure, one recipe
            raise BenchError(f"--combine: {mixed}; combine budgets of one recipe")
        strict = True

    notes: list[str] = list(build_leaderboard(results_dir).attrs.get("notes", []))
    written = list(write_leaderboard(results_dir).values())
    written += write_figures(results_dir, notes)
    if folders:
        out = root / f"combined{suffix}" / "quality_vs_macs"
        try:
            written.append(write_combined_table(folders, out.parent / "combined.md"))
            written += write_combined_figure(folders, out)
        except BenchError as exc:
            if strict:
                raise
            for stale in (out.with_suffix(".png"), out.with_suffix(".pdf")):  # an older figure no longer holds
                stale.unlink(missing_ok=True)
            notes.append(f"combined figure: skipped, {exc}")
    elif args.combine is None and is_budget_folder and len(budget_folders) < 2:
        # one budget of this task has records (another's were moved aside for a re-run): an older table and figure
        # across budgets no longer follow from the records, so they go
        out = root / f"combined{suffix}"
        stale = [p for p in (out / "combined.md", out / "quality_vs_macs.png", out / "quality_vs_macs.pdf")
                 if p.exists()]
        for path in stale:
            path.unlink()
        if stale:
            notes.append(f"combined table: removed {', '.join(str(p) for p in stale)}; "
                         "fewer than two budgets of this task have records")
    # the length study: a translation budget folder and its longer-schedule siblings (100M, 100M-x4, 100M-x16);
    # summarization's pilot: 100M-sum, 100M-sum-x4, 100M-sum-x10
    base = re.sub(f"-({'|'.join(LONGER)})$", "", results_dir.name)
    if re.fullmatch(r"[0-9.]+[KMGT](-sum)?", base):
        from bench.report.length import write_length  # matplotlib: loaded only by `report`
        from bench.report.length_data import task_of

        # translation's study goes to results/combined; summarization's pilot beside its own table
        out = root / "combined" if not base.endswith("-sum") else root / base
        budget = args.budget or base.removesuffix("-sum")
        try:
            written += write_length(root / base, out, base.removesuffix("-sum"),
                                    _searched_variants(budget, task_of(root / base)))
        except BenchError as exc:
            notes.append(f"length study: skipped, {exc}")
    ablations = results_dir / "ablations"
    if (ablations / "runs").is_dir():  # the budget's ablations, each against its family's rebuilt row
        from bench.budget.spec import load_budget
        from bench.report.ablations import write_ablations  # pandas: loaded only by `report`
        from bench.report.length_data import task_of

        task = task_of(results_dir)
        budget = args.budget or re.sub(r"-(lm|sum)$", "", results_dir.name)
        try:
            written += write_ablations(ablations, results_dir, load_budget(budget, task))
        except BenchError as exc:
            notes.append(f"ablations: skipped, {exc}")
    if FOLDER.fullmatch(results_dir.name):  # results/tasks.md: the order of the families across tasks
        try:
            summary = write_tasks_summary(root)
            written += [summary] if summary is not None else []
        except BenchError as exc:
            notes.append(f"tasks summary: skipped, {exc}")

    for path in written:
        print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _searched_variants(budget: str, task: str) -> list[str]:
    """The budget's searched-shape variants (``shape: searched``), for the length study; none when the budget
    cannot be read (a results folder of a budget file that is not here)."""
    from bench.budget.spec import load_budget

    try:
        return sorted(load_budget(budget, task).searched)
    except BenchError:
        return []


def cmd_recipes(args: argparse.Namespace) -> int:
    # sacrebleu, sentencepiece: loaded only by `recipes`
    from bench.sweep.study import DEFAULT_OUT, compare_recipes, markdown

    seeds = check.integers("--seeds", args.seeds) or [1]
    jobs = check.integer("--jobs", args.jobs)
    res = compare_recipes(args.model, args.budget, tuple(seeds), Path(args.out) if args.out else DEFAULT_OUT, jobs)
    print(markdown(res))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.train.tune import tune  # yaml, the model registry: loaded only by `tune`

    grid = []
    for w in check.words(args.grid):
        grid.append(check.number("--grid", w, minimum=1e-12))
    executor = check.executor(args.executor)
    kwargs = {"results_root": Path(args.results).resolve() if executor != "local" else Path(args.results)} \
        if args.results else {}
    resources = check.resources(args)
    res = tune(
        args.budget,
        task=args.task,
        schedule_name=args.schedule,
        grid=tuple(grid) or None,
        models=check.words(args.models) or None,
        tokens_per_trial=check.integer("--tokens-per-trial", args.tokens_per_trial),
        seed=check.integer("--seed", args.seed, 0),
        jobs=check.integer("--jobs", args.jobs),
        corpus=args.corpus,
        executor=executor,
        resources=resources,
        kind=args.trials,
        **kwargs,
    )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for family, c in res["chosen"].items():
            print(f"{family}: peak lr {c['lr']:g} (valid NLL {c['valid_nll']:.3f}; {c['trials']} trials of "
                  f"{res['tokens_per_trial']:,} target tokens)")
    return 0
