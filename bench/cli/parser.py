"""Every command's parser. Arguments arrive as text and are checked by the command (bench.cli.args), so that
a bad value is reported in the suite's own words, not argparse's."""

from __future__ import annotations

import argparse
import re
from typing import NamedTuple

from bench.errors import BenchError
from bench.latency.compare import ROUNDS as COMPARE_ROUNDS
from bench.latency.pooled import PROCESSES as COMPARE_PROCESSES
from bench.latency.timing import MAX_TRIES, MIN_RUNS, MIN_TIME_S, MIN_WARMUP

TASKS = ["mt", "lm", "sum"]  # bench.train.tasks: translation, language modelling, summarization


class Command(NamedTuple):
    target: str  # "<module of bench.cli>:<function>", imported when the command runs
    help: str


COMMANDS: dict[str, Command] = {
    "models": Command("models:cmd_models", "list the registered architectures"),
    "profile": Command("models:cmd_profile", "config, params and MACs by every counter"),
    "solve": Command("models:cmd_solve", "the config that puts a model at a MAC budget (100M) or a measured "
                     "latency budget (6ms)"),
    "table": Command("models:cmd_table", "MACs/params table of every model at the budgets (markdown)"),
    "train": Command("training:cmd_train", "train one model on a short schedule (torchrun for several processes)"),
    "evaluate": Command("training:cmd_evaluate", "BLEU/chrF (sacreBLEU) or perplexity of a trained run folder"),
    "compare": Command("training:cmd_compare", "sacreBLEU paired bootstrap between two evaluated runs"),
    "latency": Command(
        "measure:cmd_latency",
        "latency of one model: p50/p90/IQR/CV in ms, peak memory, efficiency against the GEMM rate; or "
        "(--compare A,B,...) several models side by side, each one's ratio to the first with its bootstrap interval",
    ),
    "report": Command(
        "sweep:cmd_report", "rebuild leaderboard tables (CSV, Markdown, LaTeX) and Pareto figures from the run records"
    ),
    "compress": Command(
        "measure:cmd_compress",
        "prune and/or quantize a trained run to int8; size on disk, BLEU/chrF and latency of each stage",
    ),
    "recipes": Command(
        "sweep:cmd_recipes", "sample-efficiency study: short schedule vs plain recipe at equal wall time"
    ),
    "curves": Command("measure:cmd_curves", "cost curves: every family solved, counted and timed at a ladder of "
                      "MAC budgets, per backend and thread count, without training (results/curves)"),
    "tune": Command("sweep:cmd_tune", "equal-budget peak learning-rate search per family, on validation NLL"),
    "shapes": Command("shapes:cmd_shapes", "equal-budget shape search per family (depth, heads, FFN ratio), each "
                      "candidate solved to the budget, truncated trials at the tuned peak rate, on validation NLL"),
    "baseline": Command("baselines:cmd_baseline", "the floor a task's models must clear, scored as they are: "
                        "lead-k (summarization), the source copied (translation), the unigram plateau (language "
                        "models); results/<budget>[-sum|-lm]/baselines/"),
    "run": Command(
        "sweep:cmd_run", "the whole comparison at a budget: solve, profile, latency, train, evaluate, report"
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise BenchError(f"{self.prog}: {message}")


def build_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="litebench: architectures at matched MAC budgets")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=COMMANDS[name].help, description=COMMANDS[name].help)

    p = add("models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*lite*'")
    p.add_argument("--json", action="store_true")

    p = add("profile")
    p.add_argument("model")
    _model_args(p)
    p.add_argument("--json", action="store_true")

    p = add("solve")
    p.add_argument("model")
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G, or a budget YAML file")
    p.add_argument("--task", choices=TASKS, default="mt")
    p.add_argument("--json", action="store_true")

    p = add("table")
    p.add_argument("--budgets", nargs="*", help="budget specs (default: 100M 500M)")
    p.add_argument("--latency", action="store_true", help="the latency table from results/<budget> records")
    p.add_argument("--results", default="results", help="results root for --latency")
    p.add_argument("--task", choices=TASKS, default="mt")

    p = add("train")
    p.add_argument("model")
    _model_args(p)
    p.add_argument("--corpus", help="libreoffice-en-de (mt default), libreoffice-en-fr, sotu (lm default), or a folder")
    p.add_argument("--vocab-size", help="sentencepiece vocabulary (default 8000; capped for a small corpus)")
    p.add_argument("--schedule", choices=["quick", "short", "x4", "x10", "x16", "full", "plain"], default="short")
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
    p.add_argument("--threads", help="torch threads (a positive integer or 'all')")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint of the same run; "
                   "one of another model, config, corpus, tokenizer, schedule or seed is refused)")
    p.add_argument("--fresh", "--no-resume", dest="fresh", action="store_true",
                   help="start the run folder afresh: remove the run it holds (checkpoint, log, summary, evaluation "
                   "outputs; each named on stderr) and train from the first update")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")

    p = add("evaluate")
    p.add_argument("run_dir")
    p.add_argument("--beam", type=int, help="beam size (default: the schedule's, 4; 1 = greedy)")
    p.add_argument("--length-penalty", type=float)
    p.add_argument("--max-sentences", type=int, help="score only the first N test sentences")
    p.add_argument("--json", action="store_true")

    p = add("compare")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--split", default="test", choices=["test", "test-clean"])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    p = add("latency")
    p.add_argument("model", nargs="?", help="a registered model name (python -m bench models)")
    p.add_argument("--compare", metavar="A,B[,C...]",
                   help="models to time side by side in this process, in interleaved rounds; ratios to the first")
    p.add_argument("--rounds", default=str(COMPARE_ROUNDS), help=f"--compare: rounds (default {COMPARE_ROUNDS})")
    p.add_argument("--processes", default=str(COMPARE_PROCESSES),
                   help=f"--compare: fresh processes the rounds are split over and pooled (default "
                        f"{COMPARE_PROCESSES}; 1 = this one)")
    _model_args(p, task_choices=False)
    p.add_argument(
        "--workload",
        default="forward",
        metavar="{forward,translate}",
        help="forward: one 30+30-token teacher-forced pass; translate: encode 30 + 30 greedy steps",
    )
    p.add_argument("--threads", default="1", metavar="{N,all}", help="torch threads (default 1)")
    p.add_argument("--device", default="cpu", metavar="{cpu,cuda}")
    p.add_argument("--dtype", default="fp32", metavar="{fp32,bf16}", help="bf16 = autocast to bfloat16")
    p.add_argument("--backend", default="eager", metavar="{eager,compile,onnxruntime}",
                   help="what runs the model: eager PyTorch (default), torch.compile (inductor) or ONNX Runtime "
                        "(CPU, fp32); checked against eager before timing")
    p.add_argument("--batch", default="1", help="sentences per call (default 1)")
    p.add_argument("--warmup", default=str(MIN_WARMUP), help=f"warm-up calls (protocol: >= {MIN_WARMUP})")
    p.add_argument("--min-runs", default=str(MIN_RUNS), help=f"timed calls at least (protocol: >= {MIN_RUNS})")
    p.add_argument("--min-time", default=str(MIN_TIME_S), help=f"timed seconds at least (protocol: >= {MIN_TIME_S:g})")
    p.add_argument("--tries", default=None,
                   help=f"time a figure with CV > 5%% again, this many times in all (default {MAX_TRIES})")
    p.add_argument("--quiet-wait", default=None, metavar="S",
                   help="wait at most S seconds for a quiet machine before timing (default 60)")
    p.add_argument("--json", action="store_true", help="print one JSON record on stdout")

    p = add("report")
    p.add_argument("--budget", help="100M, 500M, ... or a budget YAML file (its name picks results/<name>)")
    p.add_argument("--task", choices=TASKS, default="mt", help="lm reads results/<budget>-lm, sum <budget>-sum")
    p.add_argument("--schedule", choices=["short", "x4", "x10", "x16"], default="short",
                   help="x4 / x10 / x16 read the longer schedules' results/<budget>-x4, -x10, -x16")
    p.add_argument(
        "--results",
        metavar="DIR",
        help="the results root holding <budget>[-lm]/ (default: results), or one results folder itself "
        "(a folder with runs/ inside)",
    )
    p.add_argument(
        "--combine",
        nargs="*",
        metavar="BUDGET",
        help="budgets to draw together in results/combined[-lm]/ (default: every budget of this task with "
        "records; give no value to skip)",
    )

    p = add("compress")
    p.add_argument("run_dir", help="a trained run folder (python -m bench train ... --out RUN_DIR)")
    p.add_argument("--quantize", default=None, metavar="{int8,none}",
                   help="8-bit weights for every nn.Linear (PyTorch dynamic quantization)")
    p.add_argument("--qscheme", default="per_channel", metavar="{per_channel,per_tensor}",
                   help="int8 weight scales: one per output channel (default) or one per tensor")
    p.add_argument("--prune", default=None, metavar="SPARSITY",
                   help="magnitude-prune this fraction of the Linear/conv weights, in [0, 1), or 'auto' (the "
                        "largest of 0.1..0.5 that keeps validation NLL within --max-nll-increase of fp32, or BLEU "
                        "within --max-bleu-drop with --prune-criterion bleu)")
    p.add_argument("--prune-scope", default="global", metavar="{global,layer}",
                   help="one threshold over all weights (global, default) or the same fraction in each tensor")
    p.add_argument("--finetune-tokens", default=None, metavar="N",
                   help="fine-tune the pruned model for N target tokens with the mask held (the run's recipe)")
    p.add_argument("--prune-criterion", default="valid_nll", metavar="{valid_nll,bleu}",
                   help="--prune auto: what the sparsity may cost (default valid_nll)")
    p.add_argument("--max-nll-increase", default="0.05", help="--prune auto: allowed NLL increase, nats (0.05)")
    p.add_argument("--max-bleu-drop", default="0.5", help="--prune auto --prune-criterion bleu: allowed drop (0.5)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/compress-<tag>)")
    p.add_argument("--beam", default=None, help="beam size (default: the run's schedule, 4; 1 = greedy)")
    p.add_argument("--max-sentences", default=None, help="score only the first N test sentences")
    p.add_argument("--threads", default="1,all", help="latency thread counts, comma-separated (default 1,all)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON object")

    p = add("recipes")
    p.add_argument("--model", default="transformer")
    p.add_argument("--budget", default="100M")
    p.add_argument("--seeds", default="1,2", help="comma-separated training seeds (default 1,2)")
    p.add_argument("--jobs", default="2", help="runs at a time, one thread each (default 2)")
    p.add_argument("--out", help="output folder (default results/recipes)")

    p = add("baseline")
    p.add_argument("--budget", required=True, help="100M, 500M, ... or a budget YAML file (its name picks "
                   "results/<name>[-sum|-lm])")
    p.add_argument("--task", choices=TASKS, default="mt", help="sum: lead-k and lead-median (lead.json); mt: "
                   "copy-source BLEU (copy.json); lm: the unigram plateau of the train records (unigram.json)")
    p.add_argument("--corpus", help="corpus name (built under the data cache) or folder (default: the task's, "
                   "debian-descriptions / libreoffice-en-de)")
    p.add_argument("--results", help="results root (default: results/)")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")

    p = add("run")
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G or a budget YAML file")
    p.add_argument("--task", choices=TASKS, default="mt")
    p.add_argument("--models", help="comma-separated subset of the budget's models")
    p.add_argument("--seeds", help="comma-separated training seeds (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", help="latency thread counts, comma-separated (default: 1 and all cores)")
    p.add_argument("--schedule", choices=["quick", "short", "x4", "x10", "x16", "full"], default="short")
    p.add_argument("--corpus", help="corpus name or folder (default: libreoffice-en-de / sotu)")
    p.add_argument("--vocab-size", help="sentencepiece vocabulary (default 8000; capped for a small corpus)")
    p.add_argument("--quick", action="store_true", help="smoke run: quick schedule, short timing, results/<B>-quick")
    p.add_argument("--force", action="store_true", help="re-run stages whose records exist")
    _executor_args(p, "local: every stage here, one after another; slurm: one job per model's latency and per "
                      "(model, seed) training, as job arrays (submitit-local: the same jobs as local processes)")
    p.add_argument("--compress", help="models to prune + quantize to int8 after evaluation (comma-separated)")
    p.add_argument("--results", help="results root (default: results/)")
    p.add_argument("--cache", help="checkpoints and training logs (default: .cache/runs/)")
    p.add_argument("--train-threads", help="threads for training and evaluation (default: torch's)")
    p.add_argument("--stages", help="comma-separated subset of profile,latency,train,evaluate,compress (default all)")
    p.add_argument("--ablations", action="store_true",
                   help="train the budget file's ablations: instead of its rows (--models: a subset of them), into "
                        "results/<B>/ablations/ with their table against each family's row; stages profile,train,"
                        "evaluate unless --stages says otherwise")

    p = add("curves")
    p.add_argument("--budgets", default="25M,50M,100M,200M,500M,1G,2G", help="MAC budgets of the ladder")
    p.add_argument("--backends", default="eager,onnxruntime", help="latency backends (eager, compile, onnxruntime)")
    p.add_argument("--threads", default="1", help="thread counts, comma-separated (default 1)")
    p.add_argument("--workload", default="forward", metavar="{forward,translate}")
    p.add_argument("--rounds", default="20", help="interleaved rounds per measurement (default 20)")
    p.add_argument("--models", help="comma-separated families (default: those of budgets/100M.yaml); the "
                   "Transformer, the ratios' reference, is always timed")
    p.add_argument("--results", default=None, help="output folder (default: results/curves)")
    p.add_argument("--force", action="store_true", help="measure again what has a record")

    p = add("tune")
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G or a budget YAML file")
    p.add_argument("--task", choices=TASKS, default="mt")
    p.add_argument("--schedule", choices=["short", "full"], default="short")
    p.add_argument("--grid", help="peak learning rates, comma-separated (default: the budget file's "
                   "tune: grid, else 5e-4,1e-3,2e-3)")
    p.add_argument("--models", help="comma-separated subset of the budget's families")
    p.add_argument("--tokens-per-trial", help="default: the recipe's target tokens / the budget file's "
                   "tune: trials_per_seed, else / the grid's size")
    p.add_argument("--trials", choices=["truncated", "compressed"], default=None,
                   help="truncated: the recipe stopped after the trial's tokens; compressed: the recipe shrunk to "
                   "them (default: the budget file's tune: trials, else truncated)")
    p.add_argument("--seed", default="1")
    p.add_argument("--jobs", default="2", help="trials at a time, 1 thread each (default 2)")
    p.add_argument("--corpus", help="corpus name or folder (default: libreoffice-en-de / sotu)")
    p.add_argument("--results", help="results root (default: results/)")
    _executor_args(p, "local: trials as processes here, --jobs at a time; slurm: one job per trial, one job array")
    p.add_argument("--json", action="store_true")

    p = add("shapes")
    p.add_argument("--budget", required=True, help="100M, 500M, 1.2G or a budget YAML file (its shapes: section)")
    p.add_argument("--task", choices=TASKS, default="mt")
    p.add_argument("--schedule", choices=["short", "full"], default="short")
    p.add_argument("--models", help="comma-separated subset of the families of the budget file's shapes: section")
    p.add_argument("--tokens-per-trial", help="default: the budget file's shapes: tokens_per_trial")
    p.add_argument("--confirm", action="store_true",
                   help="then train each family's two best shapes with the whole recipe, one seed each")
    p.add_argument("--seed", default="1")
    p.add_argument("--jobs", default="2", help="trials at a time, 1 thread each (default 2)")
    p.add_argument("--corpus", help="corpus name or folder (default: libreoffice-en-de / sotu)")
    p.add_argument("--results", help="results root (default: results/)")
    _executor_args(p, "local: trials as processes here, --jobs at a time; slurm: one job per trial, one job array")
    p.add_argument("--json", action="store_true")
    return parser


def _executor_args(p: argparse.ArgumentParser, what: str) -> None:
    """--executor and the resources of one Slurm job (a latency job takes a whole node instead of --slurm-cpus)."""
    p.add_argument("--executor", default="local", metavar="{local,slurm,submitit-local}", help=what)
    p.add_argument("--slurm-partition", help="partition(s) to submit to (default: the cluster's default)")
    p.add_argument("--slurm-cpus", help="CPUs per training job; also its torch threads (default 1)")
    p.add_argument("--slurm-time", help="time limit per job: minutes or [days-]hours:minutes:seconds (default 240)")
    p.add_argument("--slurm-gpus", help="GPUs per job (default 0)")


def _model_args(p: argparse.ArgumentParser, task_choices: bool = True) -> None:
    """--budget, --set and --task: how a command picks the config it measures."""
    p.add_argument("--budget", help="solve the config for this budget first (100M, 500M, 1.2G or a YAML file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    if task_choices:
        p.add_argument("--task", choices=TASKS, default="mt")
    else:  # checked by the command, in its words
        p.add_argument("--task", default="mt", metavar="{mt,lm,sum}",
                       help="translation (mt), language model (lm) or summarization (sum)")


def join_negative_values(argv: list[str]) -> list[str]:
    """``--budget -5M`` -> ``--budget=-5M`` so that the value, not argparse, says what is wrong with it."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-[0-9.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out
