"""Cost curves: every family solved, counted and timed at a ladder of MAC budgets, per backend and thread
count, without training (``python -m bench curves``, ``make curves``).

Counted work, parameters and latency disagree (the argument of "The Efficiency Misnomer"): at equal MACs the
families' latencies differ, and by how much changes with size and runtime. For each budget of the ladder
(default 25M ... 2G) every family is solved by the MAC solver, its parameters counted, and, per backend and
thread count, the three are timed side by side in one fresh process (bench.latency.compare: interleaved
rounds, each family's p50 and its ratio to the Transformer with a 95% bootstrap interval; the exclusive
machine lock and the quiet-machine wait as for every latency figure). One record per (budget, backend,
threads, workload) in ``results/curves/records/`` (a re-run measures only what has none; ``--force`` all),
then ``curves.csv`` (one row per family x budget x backend x threads x workload), ``curves.md`` (the latency
ranking at every budget and where it changes) and the figures: latency vs MACs, the ratio to the Transformer
vs MACs, and parameters vs MACs, a line per family.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.infra.atomic import write_json, write_text
from bench.records.provenance import REPO, environment, utc_now

LADDER = ("25M", "50M", "100M", "200M", "500M", "1G", "2G")
BACKENDS = ("eager", "onnxruntime")
ROUNDS = 20
COLUMNS = ["family", "budget", "target_macs", "macs", "params", "params_total", "d_model", "ffn_dim", "backend",
           "backend_version", "threads", "workload", "p50_ms", "cv", "ratio_vs_transformer", "ratio_ci_low",
           "ratio_ci_high", "rank", "machine_quiet", "device_model", "torch_version", "created"]


@dataclass
class CurveOptions:
    budgets: Sequence[str] = LADDER
    backends: Sequence[str] = BACKENDS
    threads: Sequence[int] = (1,)
    workload: str = "forward"
    models: Sequence[str] | None = None  # default: the families of budgets/100M.yaml (the ladder's rules)
    rounds: int = ROUNDS
    results: Path = REPO / "results" / "curves"
    force: bool = False
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


def solve_point(spec: str, family: str) -> dict[str, Any]:
    """The family at MAC budget ``spec``: solved config, MACs (the budget's counter), parameters."""
    import torch  # torch: loaded only when a point is solved

    from bench.budget.solve import solve_model  # yaml, torch: loaded only when a point is solved
    from bench.budget.spec import load_budget  # yaml, torch: loaded only when a point is solved
    from bench.cost.params import count_params  # torch: loaded only when a point is solved
    from models import create_model  # the model registry: loaded only when a point is solved

    budget = load_budget(spec)
    sol = solve_model(budget, family)
    torch.manual_seed(0)
    params = count_params(create_model(family, **sol.config.to_dict()))
    return {"family": family, "budget": budget.name, "target_macs": budget.target_macs, "macs": sol.macs,
            "d_model": sol.config.d_model, "ffn_dim": sol.config.ffn_dim, **params, "config": sol.config.to_dict()}


def record_path(results: Path, budget: str, backend: str, threads: int, workload: str) -> Path:
    """The record of one measurement, under ``results/records``.

    Args:
        results: the curves' results folder.
        budget: the MAC budget (25M, 100M, ...).
        backend: "eager", "compile" or "onnxruntime".
        threads: the thread count.
        workload: "forward" or "translate".
    """
    return results / "records" / f"{budget}-{backend}-t{threads}-{workload}.json"


def run_curves(opts: CurveOptions) -> dict[str, Any]:
    """Measure what has no record yet, then write the CSV, the summary and the figures. Returns
    {"csv", "records", "failed": [one line per (budget, backend, threads) that could not be measured]}."""
    # torch (bench.latency): loaded only when curves are measured
    from bench.latency.compare import compare_in_subprocess

    if opts.models is None:
        # yaml, torch: loaded only when the families come from the template
        from bench.budget.spec import TEMPLATE, load_budget

        opts.models = list(load_budget(TEMPLATE).models)
    opts.models = ["transformer", *(m for m in opts.models if m != "transformer")]  # the ratios' reference first
    if list(opts.models)[0] != "transformer":
        raise BenchError("curves: the first model is the reference of the ratios and must be transformer")
    env = environment()
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    failed: list[str] = []
    for spec in opts.budgets:
        points = None
        for backend in opts.backends:
            for threads in opts.threads:
                path = record_path(opts.results, spec.upper(), backend, threads, opts.workload)
                if path.exists() and not opts.force:
                    opts.log(f"curves: {path.name}: done before, skipped")
                    continue
                if points is None:
                    points = [solve_point(spec, m) for m in opts.models]
                members = [(p["family"], p["family"], p["config"]) for p in points]
                kwargs: dict[str, Any] = {"workload": opts.workload, "threads": threads, "rounds": opts.rounds}
                if backend != "eager":
                    kwargs["backend"] = backend
                opts.log(f"curves: {spec} {backend} {threads} thread(s) {opts.workload}: "
                         + ", ".join(f"{p['family']} d={p['d_model']}" for p in points))
                started = utc_now()
                try:
                    res = compare_in_subprocess(members, **kwargs)
                except BenchError as exc:
                    failed.append(f"{spec} {backend} {threads} thread(s): {exc}")
                    opts.log(f"curves: failed: {exc}")
                    continue
                write_json(path, {"budget": spec.upper(), "backend": backend, "threads": threads,
                                  "workload": opts.workload, "points": points, "compare": res, "env": env,
                                  "command": command, "started": started, "created": utc_now(),
                                  "hostname": platform.node()})
    records = sorted((opts.results / "records").glob("*.json")) if (opts.results / "records").exists() else []
    rows = [row for p in records for row in rows_of(json.loads(p.read_text(encoding="utf-8")))]
    if not rows:
        raise BenchError(f"curves: nothing measured in {opts.results} ({'; '.join(failed) or 'no records'})")
    written = write_outputs(rows, opts.results, failed)
    return {"csv": str(opts.results / "curves.csv"), "records": len(records), "failed": failed, "files": written}


def rows_of(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per family of one record, with its rank by p50 (1 = fastest) among the record's models."""
    res = rec["compare"]
    order = sorted(res["models"], key=lambda m: res["p50_ms"][m])
    out = []
    for p in rec["points"]:
        name = p["family"]
        ratio = res["ratios"][name]
        out.append({
            **{k: p.get(k) for k in ("family", "budget", "target_macs", "macs", "params", "params_total", "d_model",
                                     "ffn_dim")},
            "backend": rec["backend"], "backend_version": res.get("backend_version") or _eager_version(res),
            "threads": res["threads"], "workload": res["workload"], "p50_ms": res["p50_ms"][name],
            "cv": res["cv"][name], "ratio_vs_transformer": ratio["ratio"], "ratio_ci_low": ratio["ci95"][0],
            "ratio_ci_high": ratio["ci95"][1], "rank": order.index(name) + 1,
            "machine_quiet": res.get("machine_quiet"), "device_model": res.get("device_model"),
            "torch_version": res.get("torch_version"), "created": rec.get("created"),
        })
    return out


def _eager_version(res: dict[str, Any]) -> str:
    return f"torch {res.get('torch_version')} eager"


def rankings(df: Any) -> list[str]:
    """Markdown lines: per (backend, threads, workload), the families from fastest to slowest at every budget,
    and the budgets between which that order changes (the finding the curves exist for). A change between
    two families whose ratio intervals overlap at either budget is called a tie, not a change of rank."""
    lines = []
    for (backend, threads, workload), g in df.groupby(["backend", "threads", "workload"], sort=True):
        lines += [f"### {backend}, {threads} thread{'s' if threads != 1 else ''}, {workload}", "",
                  "| budget | fastest to slowest (p50 ms; ratio to the Transformer [95% interval]) |", "|---|---|"]
        previous, changes = None, []
        for _, b in sorted(g.groupby("target_macs"), key=lambda kv: kv[0]):
            b = b.sort_values("p50_ms")
            order = tuple(b["family"])
            cells = [f"{r.family} {r.p50_ms:.2f} ({r.ratio_vs_transformer:.2f} [{r.ratio_ci_low:.2f}, "
                     f"{r.ratio_ci_high:.2f}])" for r in b.itertuples()]
            lines.append(f"| {b['budget'].iloc[0]} | {' < '.join(cells)} |")
            if previous is not None and order != previous[1]:
                swapped = _swapped(previous[1], order)
                tie = all(_overlap(previous[2], a, c) or _overlap(b, a, c) for a, c in swapped)
                changes.append(f"between {previous[0]} and {b['budget'].iloc[0]}: {' < '.join(previous[1])} -> "
                               f"{' < '.join(order)}" + (" (the swapped families' intervals overlap: a tie)"
                                                          if tie else ""))
            previous = (b["budget"].iloc[0], order, b)
        lines += ["", "Ranking changes: " + ("; ".join(changes) if changes else "none on this ladder") + ".", ""]
    return lines


def _swapped(before: tuple[str, ...], after: tuple[str, ...]) -> list[tuple[str, str]]:
    """The pairs of families whose order differs between two rankings."""
    return [(a, c) for i, a in enumerate(before) for c in before[i + 1:] if after.index(a) > after.index(c)]


def _overlap(b: Any, first: str, second: str) -> bool:
    """Whether two families' ratio intervals overlap in the rows ``b`` of one budget."""
    r1, r2 = (b[b["family"] == f].iloc[0] for f in (first, second))
    return bool(r1.ratio_ci_low <= r2.ratio_ci_high and r2.ratio_ci_low <= r1.ratio_ci_high)


def write_outputs(rows: list[dict[str, Any]], results: Path, failed: Sequence[str] = ()) -> list[Path]:
    """curves.csv, curves.md and the figures (all or nothing for each figure's formats).

    Args:
        rows: one row per family measured at a (budget, backend, threads, workload).
        results: the results folder.
        failed: one line per setting that could not be measured.
    """
    import pandas as pd  # pandas: loaded only when the outputs are written

    df = pd.DataFrame(rows, columns=COLUMNS).sort_values(["backend", "threads", "workload", "target_macs", "family"])
    written = [write_text(results / "curves.csv", df.to_csv(index=False, float_format="%.6g"))]
    md = ["# Cost curves", "",
          "Every family solved at each MAC budget (the budget's counter, batch 1, 30 + 30 tokens), timed side "
          "by side in one process per budget, backend and thread count (interleaved rounds; p50 of all timed "
          "calls; ratio = geometric mean over rounds of the family's round median over the Transformer's, 95% "
          "bootstrap interval over the rounds of that one process: between processes a ratio can move a few "
          "percent more). Generated by `python -m bench curves`; rows in curves.csv.", "",
          *rankings(df)]
    if failed:
        md += ["## Not measured", "", *[f"- {f}" for f in failed], ""]
    written.append(write_text(results / "curves.md", "\n".join(md)))
    from bench.report.cost_figures import draw_curves  # matplotlib, seaborn: loaded only when figures are drawn

    written += draw_curves(df, results / "figures")
    return written
