"""``shapes``: the equal-budget shape search (bench.train.shapes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli import args as check


def cmd_shapes(args: argparse.Namespace) -> int:
    from bench.train.shapes import search  # yaml, the model registry: loaded when the command runs

    executor = check.executor(args.executor)
    kwargs = {"results_root": Path(args.results).resolve() if executor != "local" else Path(args.results)} \
        if args.results else {}
    res = search(
        args.budget,
        task=args.task,
        schedule_name=args.schedule,
        models=check.words(args.models) or None,
        tokens_per_trial=check.integer("--tokens-per-trial", args.tokens_per_trial),
        seed=check.integer("--seed", args.seed, 0),
        jobs=check.integer("--jobs", args.jobs),
        corpus=args.corpus,
        executor=executor,
        resources=check.resources(args),
        confirm=args.confirm,
        **kwargs,
    )
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    for family, c in res["chosen"].items():
        print(f"{family}: best {c['shape_slug']}{' (the paper shape)' if c['paper_shape'] else ''}, d_model "
              f"{c['d_model']}, ffn_dim {c['ffn_dim']} (trial valid NLL {c['valid_nll']:.3f}; "
              f"{res['candidates'][family]} candidates of {res['tokens_per_trial']:,} target tokens); to confirm: "
              f"{', '.join(c['confirm'])}")
    for family, c in res.get("confirmed", {}).items():
        print(f"{family}: confirmed {c['shape_slug']} (full-run valid NLL {c['valid_nll']:.3f})")
    for path in res["written"]:
        print(f"wrote {path}")
    return 0
