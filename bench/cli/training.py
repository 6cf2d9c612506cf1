"""``train``, ``evaluate`` and ``compare``: one run folder at a time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import args as check
from bench.cli.output import print_json
from bench.errors import BenchError
from bench.train.schedules import get_schedule, parse_schedule_sets

DEFAULT_CORPUS = {"mt": "libreoffice-en-de", "lm": "sotu", "sum": "debian-descriptions"}


def cmd_train(args: argparse.Namespace) -> int:
    import torch  # torch: loaded only by `train` (the command line starts light)

    from bench.budget.resolve import resolve_model  # the model registry: loaded only by `train`
    from bench.budget.spec import load_budget  # yaml: loaded only by `train`
    from bench.train.trainer import Trainer, init_distributed, load_task_data  # sentencepiece: loaded only by `train`

    threads = check.threads("--threads", args.threads) if args.threads is not None else None
    vocab = check.integer("--vocab-size", args.vocab_size, 5)
    # the preset, then the budget file's adjustments (as `run` applies them), then --schedule-set, then flags
    overrides = load_budget(args.budget, task=args.task).schedule_overrides(args.schedule) if args.budget else {}
    overrides.update(parse_schedule_sets(args.schedule_set))
    flags = dict(max_tokens=args.max_tokens, max_steps=args.max_steps, max_time=args.max_time, precision=args.precision)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    schedule = get_schedule(args.schedule, **overrides)
    cfg = resolve_model(args.model, args.task, args.budget, args.set, schedule=args.schedule)
    if threads is not None:
        torch.set_num_threads(threads)
    init_distributed(args.device)
    data = load_task_data(args.corpus or DEFAULT_CORPUS[args.task], args.task, schedule, vocab or cfg.vocab_size)
    if data.vocab_note:
        print(f"note: {data.vocab_note}", file=sys.stderr)
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
    summary = trainer.run(fresh=args.fresh)
    if summary["stop"] == "interrupted":  # Ctrl-C / SIGTERM: the checkpoint is saved, the run is not finished
        if trainer.rank == 0:
            if args.json:
                print_json(summary)
            again = "run the same command without --fresh" if args.fresh else "run the same command"
            print(f"interrupted at update {summary['train_steps']}, checkpoint saved; {again} to resume",
                  file=sys.stderr)
        return 130
    if trainer.rank == 0:
        print_json(summary) if args.json else print(
            f"{args.model}: {summary['train_steps']} steps, {summary['train_tokens']:,} target tokens in "
            f"{summary['train_wall_s']:.0f} s ({summary['tokens_per_s']:.0f} tok/s); valid NLL "
            f"{summary['valid_nll']:.3f} nats/token; stopped by {summary['stop']}; run folder {args.out}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bench.evaluation.evaluate import evaluate_run  # sacrebleu, sentencepiece: loaded only by `evaluate`

    max_sentences = check.integer("--max-sentences", args.max_sentences)  # >= 1, before anything runs
    res = evaluate_run(Path(args.run_dir), beam=args.beam, length_penalty=args.length_penalty,
                       max_sentences=max_sentences)
    if args.json:
        print_json(res)
    elif "test" in res:
        for split in ("test", "test_clean"):
            r = res.get(split)
            if r and "rougeL" in r:  # summarization
                print(f"{split:<10} ROUGE-1 {r['rouge1']:.2f}  ROUGE-2 {r['rouge2']:.2f}  ROUGE-L {r['rougeL']:.2f}  "
                      f"(n={r['n']}, beam {res['beam']})  {r['rouge_settings']}")
            elif r:
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


def _interval(ci: object) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})"
    return " (95% CI not available)"


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.evaluation.evaluate import paired_bootstrap  # sacrebleu, sentencepiece: loaded only by `compare`

    samples = check.integer("--samples", args.samples)
    if not Path(args.run_a).is_dir() or not Path(args.run_b).is_dir():
        missing = args.run_a if not Path(args.run_a).is_dir() else args.run_b
        raise BenchError(f"run folder {missing} does not exist")
    res = paired_bootstrap(Path(args.run_a), Path(args.run_b), args.split, samples)
    if args.json:
        print_json(res)
    else:
        a, b = res["a"], res["b"]
        same = "; the hypotheses score the same on every sentence: no difference" if res.get("identical") else ""
        print(
            f"{args.split}: A {a['bleu']:.2f}{_interval(a.get('ci95'))} vs B {b['bleu']:.2f}"
            f"{_interval(b.get('ci95'))} BLEU; paired bootstrap p = {res['p_value']:.4f} ({res['n_samples']} samples)"
            f"{same}"
        )
    return 0
