"""Sample-efficiency study: the ``short`` schedule against the plain recipe, at equal wall time.

Every run trains one model with the solved config in its own process (bench.infra.launcher) at 1 thread, ``jobs``
processes at a time, so that runs sharing the machine get equal resources. The ``short`` runs go first and
stop at their token budget; the ``plain`` runs then get the same wall time (the slowest short run's). Each
run is evaluated with greedy decoding (BLEU, chrF on test) and the full validation NLL. Writes
``<out>/recipes.md``, ``recipes.json`` and ``learning_curve.png`` (validation NLL against wall time, every run).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.budget.resolve import resolve_model
from bench.evaluation.evaluate import evaluate_run
from bench.infra.atomic import write_text, write_with
from bench.infra.launcher import call_in_child
from bench.records.provenance import REPO
from bench.train.schedules import get_schedule
from bench.train.trainer import Trainer, load_task_data, read_curve

DEFAULT_OUT = REPO / "results" / "recipes"


def train_one(model: str, config: dict[str, Any], schedule: str, overrides: dict[str, Any], seed: int, out: str,
              max_time: float | None, corpus: str = "libreoffice-en-de") -> dict[str, Any]:
    """One training run (what each child process runs): the solved ``config``, the schedule preset with the
    budget's adjustments, stopped at ``max_time`` seconds when given. Returns the Trainer's summary.

    Args:
        model: the family.
        config: its solved config.
        schedule: the schedule preset's name.
        overrides: the budget's keys for that schedule.
        seed: the training seed.
        out: the run folder.
        max_time: seconds after which training stops; None: no limit.
        corpus: the translation corpus.
    """
    sched = get_schedule(schedule, **overrides, **({"max_time": max_time} if max_time is not None else {}))
    data = load_task_data(corpus, "mt", sched, int(config.get("vocab_size", 8000)))
    return Trainer(model, config, data, sched, seed, Path(out), progress=False).run(resume=True)


def _train(model: str, budget: str, schedule: str, seed: int, out: Path, max_time: float | None) -> dict[str, Any]:
    from bench.budget.spec import load_budget  # yaml (budget files): loaded only when a run is trained

    config = resolve_model(model, "mt", budget).to_dict()
    overrides = load_budget(budget).schedule_overrides(schedule)
    kwargs = dict(model=model, config=config, schedule=schedule, overrides=overrides, seed=seed, out=str(out),
                  max_time=max_time)
    return call_in_child("bench.sweep.study:train_one", kwargs, what=f"training {schedule} seed {seed}", threads=1)


def compare_recipes(
    model: str = "transformer",
    budget: str = "100M",
    seeds: tuple[int, ...] = (1, 2),
    out: Path = DEFAULT_OUT,
    jobs: int = 2,
) -> dict[str, Any]:
    """The study (module docstring): both recipes trained and evaluated, the results written to ``out`` and returned.

    Args:
        model: the family.
        budget: the budget it is solved at.
        seeds: the training seeds of each recipe.
        out: the output folder.
        jobs: training processes at a time.
    """
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
    write_text(out / "recipes.json", json.dumps(result, indent=2))
    write_text(out / "recipes.md", markdown(result))
    _figure({k: read_curve(r["folder"]) for k, r in runs.items()}, out / "learning_curve.png", model, budget)
    return result


def markdown(result: dict[str, Any]) -> str:
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
    import matplotlib  # matplotlib: loaded only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: loaded only when a figure is drawn

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
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
    finally:
        plt.close(fig)
