"""``latency`` and ``compress``: measuring one model, and compressing one trained run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.cli import args as check
from bench.cli.output import print_json
from bench.errors import BenchError
from bench.latency import BACKENDS, DTYPES, WORKLOADS, measure_latency
from bench.latency.compare import compare_latency, summary
from bench.latency.machine import DEVICES, check_device
from bench.latency.pooled import compare_processes
from bench.latency.quiet import QuietPolicy
from bench.latency.workloads import workload_shape
from bench.sweep.cost_curves import CurveOptions, run_curves
from bench.train.tasks import TASKS


def cmd_latency(args: argparse.Namespace) -> int:
    """Measure in this process, then print a summary or (``--json``) one JSON record. ``--compare``: several
    models side by side (bench.latency.compare)."""
    import torch  # torch: loaded only by `latency` (the command line starts light)

    from bench.budget.resolve import resolve_model  # the model registry: loaded only by `latency`
    from bench.cost.profiling import paper_macs, protocol_of  # the model registry: loaded only by `latency`
    from models import create_model  # the model registry: loaded only by `latency`

    if (args.model is None) == (args.compare is None):
        raise BenchError("latency: give one MODEL, or --compare A,B[,C...] (not both)")
    check.choice("task", args.task, TASKS)
    check.choice("workload", args.workload, WORKLOADS)
    check.choice("dtype", args.dtype, DTYPES)
    backend = check.choice("backend", args.backend, BACKENDS)
    threads = check.latency_threads("--threads", args.threads)
    check.choice("device", args.device.split(":")[0], DEVICES)
    device = check_device(args.device)
    batch = check.integer("--batch", args.batch)
    warmup = check.integer("--warmup", args.warmup, 0)
    min_runs = check.integer("--min-runs", args.min_runs)
    min_time = check.number("--min-time", args.min_time)
    tries = check.integer("--tries", args.tries)
    quiet = QuietPolicy.from_env(max_wait_s=check.number("--quiet-wait", args.quiet_wait))
    if args.compare is not None:
        return _compare(args, threads, str(device), warmup, quiet, batch, backend)

    cfg = resolve_model(args.model, args.task, args.budget, args.set)
    torch.manual_seed(0)
    model = create_model(args.model, **cfg.to_dict())
    proto = protocol_of(args.budget, args.task)
    paper = paper_macs(args.model, cfg.to_dict(), proto)
    shape = {"src_len": proto.src_tokens, "tgt_len": proto.tgt_tokens} if args.task == "sum" else {}
    with workload_shape(**shape):  # summarization times its own shapes
        result = measure_latency(model, args.workload, threads=threads, device=device, dtype=args.dtype,
                                 batch=batch, name=args.model, warmup=warmup, min_runs=min_runs, min_time_s=min_time,
                                 tries=tries, quiet=quiet, backend=backend)
    result.efficiency.macs, result.efficiency.macs_with_output = paper
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(result.summary())
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    """``curves``: the cost curves (bench.sweep.cost_curves); a budget, backend or thread count that fails is listed,
    the others are kept."""
    budgets = check.words(args.budgets)
    if not budgets:
        raise BenchError("--budgets needs at least one MAC budget, e.g. 25M,100M")
    from bench.budget.spec import parse_target  # yaml, the model registry: loaded only by `curves`

    for b in budgets:
        parse_target(b)  # MAC budgets only: a latency budget is solved by measurement, not on a ladder
    backends = check.words(args.backends)
    for b in backends or ["(none)"]:
        check.choice("--backends", b, BACKENDS)
    threads = check.thread_list("--threads", args.threads, latency=True) or [1]
    opts = CurveOptions(budgets=budgets, backends=backends, threads=threads,
                        workload=check.choice("workload", args.workload, WORKLOADS),
                        rounds=check.integer("--rounds", args.rounds, 2), force=args.force)
    if args.models:
        from models import ConfigError, get_entry  # the model registry: loaded only by `curves --models`

        opts.models = check.words(args.models)
        for m in opts.models:
            try:
                get_entry(m)
            except ConfigError as exc:
                raise BenchError(f"--models: {exc}") from None
    if args.results:
        opts.results = Path(args.results)
    res = run_curves(opts)
    print(f"{res['csv']}: {res['records']} records" + (f"; not measured: {len(res['failed'])} (curves.md)"
                                                        if res["failed"] else ""))
    return 1 if res["failed"] else 0


def _compare(args: argparse.Namespace, threads: int, device: str, warmup: int, quiet: Any, batch: int,
             backend: str) -> int:
    """``latency --compare A,B,C``: every model (solved at ``--budget`` when given) in this process, all on
    ``backend``."""
    from bench.budget.resolve import resolve_model  # the model registry: loaded only by `latency`
    from bench.cost.profiling import protocol_of  # the model registry: loaded only by `latency --compare`

    names = check.words(args.compare)
    if len(names) < 2 or len(set(names)) != len(names):
        raise BenchError(f"--compare needs two or more different models, got {args.compare!r}")
    if args.set:
        raise BenchError("--set applies to one model; with --compare, give --budget (each model is solved at it)")
    if batch != 1:
        raise BenchError("--compare measures at batch 1 (the protocol's); leave --batch out")
    rounds = check.integer("--rounds", args.rounds, 2)
    processes = check.integer("--processes", args.processes)
    members = [(name, name, resolve_model(name, args.task, args.budget, []).to_dict()) for name in names]
    proto = protocol_of(args.budget, args.task)  # summarization times its own shapes
    shape = {"src_len": proto.src_tokens, "tgt_len": proto.tgt_tokens} if args.task == "sum" else None
    if processes == 1:
        res = compare_latency(members, args.workload, threads=threads, device=device, dtype=args.dtype, rounds=rounds,
                              warmup=warmup, quiet=quiet, backend=backend, shape=shape)
    else:  # fresh processes, pooled; they read the quiet-wait bound from the environment
        if args.quiet_wait is not None:
            os.environ["LITEBENCH_QUIET_WAIT"] = str(quiet.max_wait_s)
        res = compare_processes(members, processes=processes, workload=args.workload, threads=threads,
                                device=device, dtype=args.dtype, rounds=rounds, warmup=warmup, backend=backend,
                                shape=shape)
    if args.json:
        print_json(res)
    else:
        print(summary(res))
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    """Compress, measure, print a table (or ``--json``, one object)."""
    # sacrebleu, sentencepiece: loaded only by `compress`
    from bench.compress import QSCHEMES, check_quantize, check_scope, check_sparsity, compress_run

    threads = check.words(args.threads)
    for t in threads:
        check.latency_threads("--threads", t)
    drop = check.number("--max-bleu-drop", args.max_bleu_drop)
    nll = check.number("--max-nll-increase", args.max_nll_increase)
    if args.prune_criterion not in ("valid_nll", "bleu"):
        raise BenchError(f"--prune-criterion: {args.prune_criterion!r} is not valid; valid: valid_nll, bleu")
    if args.qscheme not in QSCHEMES:
        raise BenchError(f"--qscheme: unknown scheme {args.qscheme!r}; valid: {', '.join(QSCHEMES)}")
    prune = args.prune
    if prune is not None and str(prune).strip().lower() != "auto":
        prune = check_sparsity(prune)
    elif prune is not None:
        prune = "auto"
    res = compress_run(
        Path(args.run_dir),
        quantize=check_quantize(args.quantize),
        prune=prune,
        prune_scope=check_scope(args.prune_scope),
        finetune_tokens=check.integer("--finetune-tokens", args.finetune_tokens),
        out_dir=Path(args.out) if args.out else None,
        threads=[int(t) if t.isdigit() else t for t in threads] or [1],
        qscheme=args.qscheme,
        beam=check.integer("--beam", args.beam),
        max_sentences=check.integer("--max-sentences", args.max_sentences),
        latency=not args.no_latency,
        max_bleu_drop=drop,
        criterion=args.prune_criterion,
        max_nll_increase=nll,
    )
    if args.json:
        print_json(res)
        return 0
    print(summary_table(res))
    return 0


def summary_table(res: Mapping[str, Any]) -> str:
    """A few lines a person reads: one per stage, with units and conventions."""
    from bench.compress import MB  # sacrebleu, sentencepiece: loaded only by `compress`

    base = res["transformer_base"]
    lines = [f"{res['model']} (seed {res['seed']}): compressed stages in {res['out_dir']}"]
    ch = res.get("choice")
    if ch:
        if ch.get("criterion", "bleu") == "bleu":
            tried = ", ".join(f"{c['sparsity']:.2f}: {c['bleu']:.2f}" for c in ch["candidates"])
            ref = f"fp32 BLEU {ch['reference_bleu']:.2f}, allowed drop {ch['max_bleu_drop']}"
        else:
            tried = ", ".join(f"{c['sparsity']:.2f}: {c['valid_nll']:.3f}" for c in ch["candidates"])
            ref = f"fp32 valid NLL {ch['reference_valid_nll']:.3f}, allowed increase {ch['max_nll_increase']}"
        lines.append(f"  sparsity chosen on the validation split ({ch['valid_sentences']} sentences): "
                     f"{ch['sparsity']} ({ref}; tried {tried})")
    head = f"  {'stage':<28} {'sparsity':>8} {'disk MB':>9} {'sp-int8 MB':>10} {'ratio':>6} {'BLEU':>6} " \
           f"{'chrF':>6} {'vNLL':>6} {'fwd ms t1':>9} {'tr ms t1':>9}"
    lines.append(head)
    for s in res["stages"]:
        def fmt(key: str, spec: str = ".2f", s: Mapping[str, Any] = s) -> str:
            for part in key.split(".")[:-1]:  # "test.bleu": the evaluator's nested keys
                s = s.get(part) or {}
            v = s.get(key.split(".")[-1])
            return format(v, spec) if isinstance(v, (int, float)) else "-"

        lines.append(
            f"  {s['compression']:<28} {fmt('sparsity', '.3f'):>8} {fmt('size_mb_disk', '.3f'):>9} "
            f"{fmt('size_mb_sparse_int8', '.3f'):>10} {fmt('compression_ratio', '.1f'):>6} {fmt('test.bleu'):>6} "
            f"{fmt('test.chrf'):>6} {fmt('valid_nll', '.3f'):>6} {fmt('forward_p50_ms_t1', '.2f'):>9} "
            f"{fmt('translate_p50_ms_t1', '.2f'):>9}"
        )
    lines.append(f"  ratio: fp32 Transformer base (d=512, ffn 2048, 6+6, same vocabulary; {base['params_total']:,} "
                 f"params x 4 B = {base['bytes_fp32'] / MB:.1f} MB) / size on disk; MB = 10^6 bytes; latency: "
                 "batch 1, p50, forward = 30+30 tokens, translate = 30 greedy steps")
    return "\n".join(lines)

