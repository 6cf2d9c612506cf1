"""Sample-efficiency study: the ``short`` schedule against the plain recipe, at equal wall time.

Every run trains one model in its own process at 1 thread, ``jobs`` processes at a time, so that runs
sharing the machine get equal resources. The ``short`` runs go first and stop at their token budget; the
``plain`` runs then get the same wall time (the slowest short run's). Each run is evaluated with greedy
decoding (BLEU, chrF on test) and the full validation NLL. Writes ``<out>/recipes.md``, ``recipes.json``
and ``learning_curve.png`` (validation NLL against wall time, every run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .errors import BenchError
from .evaluate import evaluate_run
from .train import atomic_write_text, read_curve

REPO = Path(__file__).resolve().parent.parent


def _train(model: str, budget: str, schedule: str, seed: int, out: Path, max_time: float | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "train",
        model,
        "--budget",
        budget,
        "--schedule",
        schedule,
        "--seed",
        str(seed),
        "--threads",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--json",
    ]
    if max_time is not None:
        cmd += ["--max-time", str(max_time)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BenchError(f"training {schedule} seed {seed} failed: {last}")
    return json.loads(proc.stdout)


def compare_recipes(
    model: str = "transformer",
    budget: str = "100M",
    seeds: tuple[int, ...] = (1, 2),
    out: Path = REPO / "results" / "recipes",
    jobs: int = 2,
) -> dict[str, Any]:
    out = Path(out)
    runs: dict[str, dict[str, Any]] = {}

    def go(schedule: str, seed: int, max_time: float | None) -> None:
        folder = out / "runs" / f"{schedule}-s{seed}"
        summary = _train(model, budget, schedule, seed, folder, max_time)
        runs[f"{schedule}-s{seed}"] = {"schedule": schedule, "seed": seed, "train": summary, "folder": folder}

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda s: go("short", s, None), seeds))
    wall = max(r["train"]["train_wall_s"] for r in runs.values())
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda s: go("plain", s, wall), seeds))
    with ThreadPoolExecutor(jobs) as pool:
        evals = dict(zip(runs, pool.map(lambda k: evaluate_run(runs[k]["folder"], beam=1), list(runs))))
    rows = []
    for key, r in runs.items():
        e = evals[key]
        rows.append(
            {
                "run": key,
                "schedule": r["schedule"],
                "seed": r["seed"],
                "train_wall_s": r["train"]["train_wall_s"],
                "train_tokens": r["train"]["train_tokens"],
                "train_steps": r["train"]["train_steps"],
                "valid_nll": e["valid_nll"],
                "bleu_greedy": e["test"]["bleu"],
                "chrf_greedy": e["test"]["chrf"],
                "bleu_signature": e["test"]["bleu_signature"],
            }
        )
    result = {
        "model": model,
        "budget": budget,
        "equal_wall_s": wall,
        "threads_per_run": 1,
        "parallel_runs": jobs,
        "rows": rows,
    }
    atomic_write_text(out / "recipes.json", json.dumps(result, indent=2))
    atomic_write_text(out / "recipes.md", _markdown(result))
    _figure({k: read_curve(r["folder"]) for k, r in runs.items()}, out / "learning_curve.png", model, budget)
    return result


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']} at {result['budget']}, LibreOffice en-de, {result['parallel_runs']} runs at a time, "
        f"1 thread each, equal wall time {result['equal_wall_s'] / 60:.1f} min per run.",
        "",
        "| run | schedule | seed | wall (min) | target tokens | updates | valid NLL (nats/tok) | BLEU greedy | chrF |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['run']} | {r['schedule']} | {r['seed']} | {r['train_wall_s'] / 60:.1f} | {r['train_tokens']:,} | "
            f"{r['train_steps']} | {r['valid_nll']:.3f} | {r['bleu_greedy']:.2f} | {r['chrf_greedy']:.1f} |"
        )
    lines += ["", f"sacreBLEU: {result['rows'][0]['bleu_signature']}", ""]
    return "\n".join(lines)


def _figure(curves: dict[str, list[dict]], path: Path, model: str, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, curve in sorted(curves.items()):
        # in-training validations (a 400-sentence subset) as a line; the final one (the whole split, a
        # slightly different number) as a hollow marker of the same colour at the end
        pts = [
            (e["wall_s"] / 60, e["valid_nll"]) for e in curve if e.get("valid_nll") is not None and not e.get("final")
        ]
        final = [(e["wall_s"] / 60, e["valid_nll"]) for e in curve if e.get("final") and e.get("valid_nll") is not None]
        if pts:
            x, y = zip(*pts)
            (line,) = ax.plot(x, y, marker="o", ms=3, label=key, linestyle="-" if key.startswith("short") else "--")
            if final:
                ax.plot(*final[-1], marker="D", ms=6, mfc="none", color=line.get_color())
    ax.plot([], [], marker="D", ms=6, mfc="none", color="gray", linestyle="none", label="final (whole split)")
    ax.set_xlabel("training wall time (min, 1 thread, 2 runs sharing 2 cores)")
    ax.set_ylabel("validation NLL (nats per target token)")
    ax.set_title(f"{model} at {budget}: short schedule vs plain recipe")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    os.replace(tmp, path)


def add_parser(subparsers: Any) -> Any:
    p = subparsers.add_parser("recipes", help="sample-efficiency study: short schedule vs plain recipe")
    p.add_argument("--model", default="transformer")
    p.add_argument("--budget", default="100M")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "results" / "recipes"))
    return p


def run(args: Any) -> int:
    seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
    res = compare_recipes(args.model, args.budget, seeds, Path(args.out), args.jobs)
    print(_markdown(res))
    return 0
