"""``models``, ``profile``, ``solve`` and ``table``: what the architectures are at a budget, without training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.cli.output import print_json
from bench.errors import BenchError


def cmd_models(args: argparse.Namespace) -> int:
    from models import get_entry, list_models  # the model registry: loaded when the command runs

    rows = []
    for name in list_models(args.pattern):
        e = get_entry(name)
        rows.append({"name": name, "family": e.family, "tasks": list(e.tasks), "description": e.description})
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<22} {r['family']:<22} {','.join(r['tasks']):<6} {r['description']}")
    return 0


def profile_record(model: str, task: str, budget: str | None, sets: list[str]) -> dict[str, Any]:
    """The profile of one model: resolved config, params and MACs by every counter (paper convention), counted
    with the budget's protocol when a budget is given (as the sweep counts).

    Args:
        model: a registered family.
        task: mt, lm or sum.
        budget: a budget name or file whose solution and protocol count; None: the family's defaults.
        sets: ``--set KEY=VALUE`` strings, applied last.
    """
    from bench.budget.resolve import resolve_model  # the model registry: loaded only by `profile`
    from bench.cost.profiling import profile, protocol_of  # torch counters: loaded only by `profile`

    cfg = resolve_model(model, task, budget, sets)
    record: dict[str, Any] = {"model": model, "task": task, "budget": budget, "config": cfg.to_dict()}
    record.update(profile(model, cfg.to_dict(), protocol_of(budget, task)))
    return record


def cmd_profile(args: argparse.Namespace) -> int:
    rec = profile_record(args.model, args.task, args.budget, args.set)
    for line in rec["warnings"]:
        print(f"warning: {args.model}: {line}", file=sys.stderr)
    if args.json:
        print_json(rec)
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
    from bench.budget.solve import solve_model  # yaml, the solvers: loaded only by `solve`
    from bench.budget.spec import load_budget  # yaml: loaded only by the commands that read a budget file

    budget = load_budget(args.budget, task=args.task)
    if args.model in budget.searched:  # a searched-shape row: the shape its budget's search chose
        from bench.records.provenance import REPO
        from bench.train.searched_shapes import FOLDER, with_searched_shapes  # loaded only for such a row

        budget = with_searched_shapes(budget, REPO / "results" / budget.results_name() / FOLDER)
    sol = solve_model(budget, args.model)
    if args.json:
        print_json(sol.to_dict())
        return 0
    c = sol.config
    if sol.latency is not None:
        lat = sol.latency
        print(f"{args.model} at {budget.name} ({lat['target_ms']:g} ms +-{lat['tolerance']:.0%}, "
              f"{', '.join(f'{k}={v}' for k, v in lat['setting'].items())}): d_model={c.d_model}, "
              f"ffn_dim={c.ffn_dim} -> {lat['p50_ms']:.3f} ms ({lat['rel_error']:+.2%}), {sol.macs:,} MACs")
        return 0
    print(
        f"{args.model} at {budget.name} ({budget.target_macs:,} MACs +-{budget.tolerance:.0%}, {args.task}): "
        f"d_model={c.d_model}, ffn_dim={c.ffn_dim} -> {sol.macs:,} MACs ({sol.rel_error:+.2%})"
    )
    return 0


def latency_table(budgets: list[str], results_root: Path, strict: bool = True) -> list[str]:
    """The latency table of results/README.md, from the sweep's latency records
    (results/<budget>/runs/*/latency-*.json) of each model's current configuration, the one its leaderboard
    reports (older configurations' records are left out), with the day and commit each row was timed at.

    Args:
        budgets: budget specs, in table order.
        results_root: the folder holding results/<budget>/.
        strict: a budget without records is an error; otherwise it is left out with a note on stderr (the
            default budgets, one of which may be re-running), as long as one budget has records.
    """
    import pandas as pd  # loaded only by `table --latency`

    from bench.budget.spec import load_budget  # yaml: loaded only by the commands that read a budget file
    from bench.report import has_records
    from bench.report.leaderboard import current_records

    head = ["budget", "model", "fwd p50 ms 1 thr", "fwd p50 ms 2 thr", "transl. p50 ms 1 thr",
            "transl. p50 ms 2 thr", "fwd CV 1 thr", "peak RSS MB", "workload mem MB", "GEMM GMAC/s 1 thr",
            "efficiency fwd 1 thr", "timed (UTC, commit)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    missing = []
    for spec in budgets:
        folder = results_root / load_budget(spec).results_name()
        lat = pd.DataFrame()
        if has_records(folder):
            df = current_records(folder)
            lat = df[df["stage"] == "latency"]
            if "device" in lat.columns:
                lat = lat[lat["device"].fillna("cpu") == "cpu"]
        if lat.empty:  # no records yet, or records without a CPU timing (a re-run still training)
            missing.append(f"no latency records in {folder}: run `make bench BUDGET={spec}` first")
            continue
        for model, part in lat.groupby("model", sort=True):
            def get(workload: str, threads: int, key: str, part=part) -> Any:
                row = part[(part["workload"] == workload) & (part["threads"] == threads)]
                if row.empty or key not in row.columns or pd.isna(row.iloc[0][key]):
                    return None
                return row.iloc[0][key]

            def fmt(v: Any, pattern: str) -> str:
                return "—" if v is None or pd.isna(v) else format(v, pattern)

            def most(col: str, part=part) -> Any:
                return part[col].max() if col in part.columns else None

            days = sorted({str(c)[:10] for c in part.get("created", pd.Series(dtype=str)).dropna()})
            commits = sorted({str(c)[:7] for c in part.get("env.git_commit", pd.Series(dtype=str)).dropna() if c})
            cells = [spec, model, fmt(get("forward", 1, "p50_ms"), ".2f"), fmt(get("forward", 2, "p50_ms"), ".2f"),
                     fmt(get("translate", 1, "p50_ms"), ".2f"), fmt(get("translate", 2, "p50_ms"), ".2f"),
                     fmt(get("forward", 1, "cv"), ".1%"), fmt(most("peak_rss_mb"), ".0f"),
                     fmt(most("workload_memory_mb"), ".1f"), fmt(get("forward", 1, "gemm_gmacs"), ".0f"),
                     fmt(get("forward", 1, "efficiency"), ".1%"),
                     ", ".join(days + commits) or "—"]
            lines.append("| " + " | ".join(cells) + " |")
    if missing and (strict or len(missing) == len(budgets)):
        raise BenchError(missing[0])
    for note in missing:
        print(f"note: {note}; left out of the table", file=sys.stderr)
    return lines


def cmd_table(args: argparse.Namespace) -> int:
    """The MACs/params table of results/README.md: every model of each budget, every counter (``--latency``: the
    latency table from the sweep's records instead)."""
    budgets = args.budgets or ["100M", "500M"]
    if args.latency:
        print("\n".join(latency_table(budgets, Path(args.results), strict=bool(args.budgets))))
        return 0
    from bench.budget.solve import solve_budget  # yaml, the solvers: loaded only by `table`
    from bench.budget.spec import load_budget  # yaml: loaded only by the commands that read a budget file
    from bench.cost.counting import COUNTERS  # the MAC counters: loaded only by `table`

    head = ["budget", "model", "d_model", "ffn_dim", "params", "params_total", "MACs (rel. to target)"]
    head += [f"{c}" for c in COUNTERS] + ["with output"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for spec in budgets:
        budget = load_budget(spec, task=args.task)
        for sol in solve_budget(budget):
            rec = profile_record(sol.model, args.task, spec, [])
            for line in rec["warnings"]:
                print(f"warning: {sol.model}: {line}", file=sys.stderr)
            cells = [
                budget.name,
                sol.model,
                str(sol.config.d_model),
                str(sol.config.ffn_dim),
                f"{rec['params'] / 1e6:.2f}M",
                f"{rec['params_total'] / 1e6:.2f}M",
                f"{rec['macs'] / 1e6:.1f}M ({rec['macs'] / budget.target_macs - 1:+.1%})",
            ]
            by = rec["macs_by_counter"]
            cells += [f"{by[c] / 1e6:.2f}M" if c in by else "—" for c in COUNTERS]
            cells.append(f"{rec['macs_with_output'] / 1e6:.1f}M")
            print("| " + " | ".join(cells) + " |")
    return 0
