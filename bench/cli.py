"""Command line: ``python -m bench <command> ...``. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models import ConfigError, create_model, get_entry, list_models

from . import compress, latency, report, study
from .budget import load_budget, solve_budget, solve_model
from .counting import count_macs
from .errors import BenchError
from .params import count_params
from .resolve import resolve_model

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise BenchError(f"{self.prog}: {message}")


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern):
        e = get_entry(name)
        rows.append({"name": name, "family": e.family, "tasks": list(e.tasks), "description": e.description})
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<22} {r['family']:<22} {','.join(r['tasks']):<6} {r['description']}")
    return 0


# ---------------------------------------------------------------------------------------------- profile
def profile_record(model: str, task: str, budget: str | None, sets: list[str]) -> dict[str, Any]:
    """The profile of one model: resolved config, params and MACs by every counter (paper convention)."""
    cfg = resolve_model(model, task, budget, sets)
    net = create_model(model, **cfg.to_dict())
    record: dict[str, Any] = {"model": model, "task": task, "budget": budget, "config": cfg.to_dict()}
    record.update(count_params(net))
    record.update(count_macs(net).to_dict())
    return record


def cmd_profile(args: argparse.Namespace) -> int:
    rec = profile_record(args.model, args.task, args.budget, args.set)
    for line in rec["warnings"]:
        print(f"warning: {args.model}: {line}", file=sys.stderr)
    if args.json:
        _print_json(rec)
        return 0
    cfg = rec["config"]
    print(f"{args.model} ({args.task}){' at budget ' + args.budget if args.budget else ''}")
    print("  config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"  params: {rec['params']:,} without embeddings ({rec['params_total']:,} total)")
    print(f"  MACs:   {rec['macs']:,} (paper convention), {rec['macs_with_output']:,} with the output projection")
    for name, value in rec["macs_by_counter"].items():
        print(f"          {name:<13} {value:,}")
    print(f"  ({rec['protocol']})")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget, task=args.task)
    sol = solve_model(budget, args.model)
    if args.json:
        _print_json(sol.to_dict())
        return 0
    c = sol.config
    print(
        f"{args.model} at {budget.name} ({budget.target_macs:,} MACs +-{budget.tolerance:.0%}, {args.task}): "
        f"d_model={c.d_model}, ffn_dim={c.ffn_dim} -> {sol.macs:,} MACs ({sol.rel_error:+.2%})"
    )
    return 0


def latency_table(budgets: list[str], results_root: Path) -> list[str]:
    """The README's latency table, from the sweep's latency records (results/<budget>/runs/*/latency-*.json)."""
    from .report.records import load_records

    head = ["budget", "model", "fwd p50 ms 1 thr", "fwd p50 ms 2 thr", "transl. p50 ms 1 thr",
            "transl. p50 ms 2 thr", "fwd CV 1 thr", "peak RSS MB", "workload mem MB", "GEMM GMAC/s 1 thr",
            "efficiency fwd 1 thr"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in budgets:
        folder = results_root / load_budget(spec).results_name()
        if not (folder / "runs").is_dir():
            raise BenchError(f"no latency records in {folder}: run `make bench BUDGET={spec}` first")
        df = load_records(folder)
        lat = df[df["stage"] == "latency"]
        for model, part in lat.groupby("model", sort=True):
            def get(workload: str, threads: int, key: str, part=part) -> Any:
                row = part[(part["workload"] == workload) & (part["threads"] == threads)]
                return None if row.empty else row.iloc[0][key]

            def ms(v: Any) -> str:
                return "—" if v is None else f"{v:.2f}"

            cells = [spec, model, ms(get("forward", 1, "p50_ms")), ms(get("forward", 2, "p50_ms")),
                     ms(get("translate", 1, "p50_ms")), ms(get("translate", 2, "p50_ms")),
                     f"{get('forward', 1, 'cv'):.1%}", f"{part['peak_rss_mb'].max():.0f}",
                     f"{part['workload_memory_mb'].max():.1f}", f"{get('forward', 1, 'gemm_gmacs'):.0f}",
                     f"{get('forward', 1, 'efficiency'):.1%}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def cmd_table(args: argparse.Namespace) -> int:
    """The README's MACs/params table: every model of each budget, every counter (``--latency``: the
    latency table from the sweep's records instead)."""
    budgets = args.budgets or ["100M", "500M"]
    if args.latency:
        print("\n".join(latency_table(budgets, Path(args.results))))
        return 0
    from .counting import COUNTERS

    head = ["budget", "model", "d_model", "ffn_dim", "params", "params_total", "MACs (rel. to target)"]
    head += [f"{c}" for c in COUNTERS] + ["with output"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for spec in budgets:
        budget = load_budget(spec, task=args.task)
        for sol in solve_budget(budget):
            rec = profile_record(sol.model, args.task, spec, [])
            cells = [
                budget.name,
                sol.model,
                str(sol.config.d_model),
                str(sol.config.ffn_dim),
                f"{rec['params'] / 1e6:.2f}M",
                f"{rec['params_total'] / 1e6:.2f}M",
                f"{rec['macs'] / 1e6:.1f}M ({rec['macs'] / budget.target_macs - 1:+.1%})",
            ]
            cells += [f"{rec['macs_by_counter'][c] / 1e6:.2f}M" for c in COUNTERS]
            cells.append(f"{rec['macs_with_output'] / 1e6:.1f}M")
            print("| " + " | ".join(cells) + " |")
    return 0


# ------------------------------------------------------------------------------------------ train / eval
DEFAULT_CORPUS = {"mt": "libreoffice-en-de", "lm": "sotu"}


def cmd_train(args: argparse.Namespace) -> int:
    from .budget import load_budget
    from .schedules import get_schedule, parse_schedule_sets
    from .train import Trainer, init_distributed, load_task_data

    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    # the preset, then the budget file's adjustments (as `run` applies them), then --schedule-set, then flags
    overrides = load_budget(args.budget, task=args.task).schedule_overrides(args.schedule) if args.budget else {}
    overrides.update(parse_schedule_sets(args.schedule_set))
    flags = dict(max_tokens=args.max_tokens, max_steps=args.max_steps, max_time=args.max_time, precision=args.precision)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    schedule = get_schedule(args.schedule, **overrides)
    cfg = resolve_model(args.model, args.task, args.budget, args.set)
    init_distributed(args.device)
    data = load_task_data(args.corpus or DEFAULT_CORPUS[args.task], args.task, schedule, cfg.vocab_size)
    trainer = Trainer(
        args.model,
        cfg.to_dict(),
        data,
        schedule,
        args.seed,
        Path(args.out),
        progress=not args.quiet,
        device=args.device,
    )
    summary = trainer.run(resume=not args.no_resume)
    if trainer.rank == 0:
        _print_json(summary) if args.json else print(
            f"{args.model}: {summary['train_steps']} steps, {summary['train_tokens']:,} target tokens in "
            f"{summary['train_wall_s']:.0f} s ({summary['tokens_per_s']:.0f} tok/s); valid NLL "
            f"{summary['valid_nll']:.3f} nats/token; stopped by {summary['stop']}; run folder {args.out}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    res = evaluate_run(
        Path(args.run_dir), beam=args.beam, length_penalty=args.length_penalty, max_sentences=args.max_sentences
    )
    if args.json:
        _print_json(res)
    elif "test" in res:
        for split in ("test", "test_clean"):
            r = res.get(split)
            if r:
                print(
                    f"{split:<10} BLEU {r['bleu']:.2f}  chrF {r['chrf']:.2f}  (n={r['n']}, beam {res['beam']})  "
                    f"{r['bleu_signature']}"
                )
        print(f"valid NLL {res['valid_nll']:.3f} nats/token")
    else:
        print(
            f"test NLL {res['test_nll']:.3f} nats/token, perplexity {res['ppl']:.1f} per token, "
            f"{res['ppl_word']:.1f} per word; valid NLL {res['valid_nll']:.3f}"
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluate import paired_bootstrap

    res = paired_bootstrap(Path(args.run_a), Path(args.run_b), args.split, args.samples)
    if args.json:
        _print_json(res)
    else:
        print(
            f"{args.split}: A {res['a']['bleu']:.2f} vs B {res['b']['bleu']:.2f} BLEU; paired bootstrap "
            f"p = {res['p_value']:.4f} ({res['n_samples']} samples)"
        )
    return 0


def _int_list(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        raise BenchError(f"{what} must be integers separated by commas, got {text!r}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import Sweep, SweepOptions

    models = [m for m in re.split(r"[,\s]+", args.models or "") if m] or None
    threads = _int_list(args.threads, "--threads")
    if threads is not None and min(threads) < 1:
        raise BenchError(f"--threads must be >= 1, got {args.threads}")
    opts = SweepOptions(
        budget=args.budget,
        task=args.task,
        models=models,
        seeds=_int_list(args.seeds, "--seeds") or [1],
        device=args.device,
        threads=threads,
        schedule=args.schedule,
        quick=args.quick,
        force=args.force,
        corpus=args.corpus,
        executor=args.executor,
        compress=[m for m in re.split(r"[,\s]+", args.compress or "") if m],
    )
    if args.train_threads is not None:
        if args.train_threads < 1:
            raise BenchError(f"--train-threads must be >= 1, got {args.train_threads}")
        opts.train_threads = args.train_threads
    if args.stages:
        stages = tuple(m for m in re.split(r"[,\s]+", args.stages) if m)
        bad = [m for m in stages if m not in SweepOptions.stages]
        if bad or not stages:
            raise BenchError(f"--stages {args.stages!r}: valid stages are {', '.join(SweepOptions.stages)}")
        opts.stages = stages
    unknown = [m for m in opts.compress if m not in (models or [m])]
    if unknown:
        raise BenchError(f"--compress {', '.join(unknown)}: not among the models of this sweep")
    if args.results:
        opts.results_root = Path(args.results)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is visible here; use --device cpu")
    sweep = Sweep(opts)
    for path in sweep.run():
        print(f"wrote {path}")
    return 0


def _float_list(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError:
        raise BenchError(f"{what} must be numbers separated by commas, got {text!r}") from None


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    if args.jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {args.jobs}")
    if args.tokens_per_trial is not None and args.tokens_per_trial <= 0:
        raise BenchError(f"--tokens-per-trial must be positive, got {args.tokens_per_trial}")
    models = [m for m in re.split(r"[,\s]+", args.models or "") if m] or None
    res = tune(
        args.budget,
        task=args.task,
        schedule_name=args.schedule,
        grid=_float_list(args.grid, "--grid"),
        models=models,
        tokens_per_trial=args.tokens_per_trial,
        seed=args.seed,
        jobs=args.jobs,
        corpus=args.corpus,
        **({"results_root": Path(args.results)} if args.results else {}),
    )
    if args.json:
        _print_json(res)
    else:
        for family, c in res["chosen"].items():
            print(f"{family}: peak lr {c['lr']:g} (valid NLL {c['valid_nll']:.3f}; {c['trials']} trials of "
                  f"{res['tokens_per_trial']:,} target tokens)")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "models": (cmd_models, "list the registered architectures"),
    "profile": (cmd_profile, "config, params and MACs by every counter"),
    "solve": (cmd_solve, "the config that puts a model at a MAC budget"),
    "table": (cmd_table, "MACs/params table of every model at the budgets (markdown)"),
    "train": (cmd_train, "train one model on a short schedule (torchrun for several processes)"),
    "evaluate": (cmd_evaluate, "BLEU/chrF (sacreBLEU) or perplexity of a trained run folder"),
    "compare": (cmd_compare, "sacreBLEU paired bootstrap between two evaluated runs"),
    "latency": (latency.run, latency.HELP),
    "report": (report.run, report.HELP),
    "compress": (compress.run, compress.HELP),
    "recipes": (study.run, "sample-efficiency study: short schedule vs plain recipe at equal wall time"),
    "tune": (cmd_tune, "equal-budget peak learning-rate search per family, on validation NLL"),
    "run": (cmd_run, "the whole comparison at a budget: solve, profile, latency, train, evaluate, report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description="litebench: architectures at matched MAC budgets")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help=COMMANDS["models"][1])
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*lite*'")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("profile", help=COMMANDS["profile"][1])
    p.add_argument("model")
    _model_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("solve", help=COMMANDS["solve"][1])
    p.add_argument("model")
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G, or a budget YAML file")
    p.add_argument("--task", choices=["mt", "lm"], default="mt")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help=COMMANDS["train"][1])
    p.add_argument("model")
    _model_args(p)
    p.add_argument("--corpus", help="libreoffice-en-de (mt default), libreoffice-en-fr, sotu (lm default), or a folder")
    p.add_argument("--schedule", choices=["quick", "short", "full", "plain"], default="short")
    p.add_argument("--max-tokens", type=int, help="stop after this many target tokens")
    p.add_argument("--max-steps", type=int, help="stop after this many updates")
    p.add_argument("--max-time", type=float, help="stop after this many seconds")
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument(
        "--schedule-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a schedule key (batch_tokens, lr, warmup_steps, decay, ...), e.g. batch_tokens=1024",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint of the same run)")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds a checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"][1])
    p.add_argument("run_dir")
    p.add_argument("--beam", type=int, help="beam size (default: the schedule's, 4; 1 = greedy)")
    p.add_argument("--length-penalty", type=float)
    p.add_argument("--max-sentences", type=int, help="score only the first N test sentences")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("compare", help=COMMANDS["compare"][1])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--split", default="test", choices=["test", "test-clean"])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    latency.add_parser(sub)
    report.add_parser(sub)
    compress.add_parser(sub)
    study.add_parser(sub)

    p = sub.add_parser("run", help=COMMANDS["run"][1])
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G or a budget YAML file")
    p.add_argument("--task", choices=["mt", "lm"], default="mt")
    p.add_argument("--models", help="comma-separated subset of the budget's models")
    p.add_argument("--seeds", help="comma-separated training seeds (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", help="latency thread counts, comma-separated (default: 1 and all cores)")
    p.add_argument("--schedule", choices=["quick", "short", "full"], default="short")
    p.add_argument("--corpus", help="corpus name or folder (default: libreoffice-en-de / sotu)")
    p.add_argument("--quick", action="store_true", help="smoke run: quick schedule, short timing, results/<B>-quick")
    p.add_argument("--force", action="store_true", help="re-run stages whose records exist")
    p.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local")
    p.add_argument("--compress", help="models to prune + quantize to int8 after evaluation (comma-separated)")
    p.add_argument("--results", help="results root (default: results/)")

    p.add_argument("--train-threads", type=int, help="threads for training and evaluation (default: torch's)")
    p.add_argument(
        "--stages", help="comma-separated subset of profile,latency,train,evaluate,compress (default: all)"
    )

    p = sub.add_parser("tune", help=COMMANDS["tune"][1])
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G or a budget YAML file")
    p.add_argument("--task", choices=["mt", "lm"], default="mt")
    p.add_argument("--schedule", choices=["short", "full"], default="short")
    p.add_argument("--grid", default="5e-4,1e-3,2e-3", help="peak learning rates, comma-separated")
    p.add_argument("--models", help="comma-separated subset of the budget's families")
    p.add_argument("--tokens-per-trial", type=int, help="default: the recipe's tokens / grid size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="trials at a time, 1 thread each (default 2)")
    p.add_argument("--corpus", help="corpus name or folder (default: libreoffice-en-de / sotu)")
    p.add_argument("--results", help="results root (default: results/)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("table", help=COMMANDS["table"][1])
    p.add_argument("--budgets", nargs="*", help="budget specs (default: 100M 500M)")
    p.add_argument("--latency", action="store_true", help="the latency table from results/<budget> records")
    p.add_argument("--results", default="results", help="results root for --latency")
    p.add_argument("--task", choices=["mt", "lm"], default="mt")
    return parser


def _model_args(p: argparse.ArgumentParser) -> None:
    """--budget, --set and --task: how a command picks the config it measures."""
    p.add_argument("--budget", help="solve the config for this budget first (100M, 500M, 1.2G or a YAML file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--task", choices=["mt", "lm"], default="mt")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--budget -5M`` -> ``--budget=-5M`` so that the value, not argparse, says what is wrong with it."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-[0-9.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command][0](args)
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: still one line, the traceback on request
        if os.environ.get("LITEBENCH_DEBUG"):
            raise
        print(
            f"error: internal failure: {type(exc).__name__}: {exc} (LITEBENCH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
