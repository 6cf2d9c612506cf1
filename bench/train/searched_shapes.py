"""Searched-shape rows: a budget's ``shape: searched`` variants given the shape its shape search confirmed
(bench.train.shapes writes ``<results>/shapes/chosen.json``; docs/protocol.md, "Shape search").

A searched-shape row is its family with the shape's knobs set and its FFN ratio on the solver's width grid, the
very variant the search solved for that shape's confirmation run, so the row trains that run's config.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.budget.shape_plan import Shape, paper_config, paper_shape, shape_overrides
from bench.budget.spec import Budget, Variant
from bench.errors import BenchError
from bench.train.schedules import LONGER

FOLDER = "shapes"  # <results>/shapes: the search's records
CHOSEN = "chosen.json"


def shape_variant(key: str, family: str, label: str, shape: Shape, paper: Shape, sets: dict[str, Any],
                  tasks: tuple[str, ...] | None = None) -> Variant:
    """``shape`` of ``family`` as a row of the budget: its knobs set, and its FFN ratio on the solver's width
    grid unless it is the paper's (then the family's own rule, e.g. Lite's flattened d).

    Args:
        key: the row's name.
        family: the family.
        label: the row's name in tables and figures.
        shape: the shape.
        paper: the family's paper shape.
        sets: the config keys the shape sets (bench.budget.shape_plan.shape_overrides).
        tasks: the tasks whose sweeps include the row; None: every task.
    """
    ratio = None if shape.ffn_ratio == paper.ffn_ratio else shape.ffn_ratio
    extra = {} if tasks is None else {"tasks": tasks}
    return Variant(key, family, label, sets, ffn_ratio=ratio, **extra)


def with_searched_shapes(budget: Budget, folder: Path) -> Budget:
    """``budget`` with each ``shape: searched`` variant given the shape its family's search chose and confirmed
    (``folder``/chosen.json: ``confirmed``, the best of the full-recipe runs of the two best trials), as a row of
    the sweep labelled with that shape. A variant whose family has no confirmed search, or whose search chose the
    paper's shape (the family's own row is then that row), is left out, with the reason in ``skipped``.

    Args:
        budget: a loaded budget (bench.budget.spec.load_budget).
        folder: the shape search's folder, ``<results>/shapes`` of the schedule the search ran on.
    """
    if not budget.searched:
        return budget
    chosen: dict[str, Any] = {}
    path = Path(folder) / CHOSEN
    if path.is_file():
        try:
            chosen = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BenchError(f"{path} is not a shape search's record ({exc}); run the search again") from None
    confirmed = (chosen.get("confirmed") or {}) if isinstance(chosen, dict) else None
    if not isinstance(confirmed, dict):
        raise BenchError(f"{path} is not a shape search's record ('confirmed' must map families to their shapes); "
                         "run the search again")
    variants, skipped = dict(budget.variants), dict(budget.skipped)
    for key, v in budget.searched.items():
        best = confirmed.get(v.model)
        if best is None:
            why = f"no finished shape search ({path} is missing)" if not chosen else \
                f"no confirmed shape for {v.model} in {path}"
            skipped[key] = f"{why}: run `python -m bench shapes --budget {budget.name} --confirm`"
            continue
        paper_cfg = paper_config(budget, v.model)
        try:
            shape = Shape(**best["shape"])
            shape = replace(shape, ffn_ratio=float(shape.ffn_ratio))
        except (TypeError, KeyError, ValueError) as exc:
            raise BenchError(f"{path}: {v.model}'s confirmed shape is not a shape ({type(exc).__name__}: {exc}); "
                             "run the search again") from None
        paper = paper_shape(paper_cfg)
        if shape == paper:
            skipped[key] = f"the shape search chose {v.model}'s paper shape ({shape.slug}): its own row is that row"
            continue
        label = v.label if v.label != key else f"{v.model} (searched shape)"  # the shape's name joins it
        label = f"{label[:-1]}, {shape.slug})" if label.endswith(")") else f"{label} ({shape.slug})"
        variants[key] = shape_variant(key, v.model, label, shape, paper,
                                      shape_overrides(v.model, paper_cfg, shape), v.tasks)
    return replace(budget, variants=variants, skipped=skipped, searched={})


def searched_shapes_folder(results: Path, schedule: str, budget: Budget) -> Path:
    """Where a sweep on ``schedule`` reads its searched shapes: the search of its own results folder, or for a
    longer schedule of the length study (bench.train.schedules.LONGER) the search of the schedule it lengthens.

    Args:
        results: the sweep's results folder (``results/100M-x4``).
        schedule: the sweep's schedule name.
        budget: the budget (its results folder names).
    """
    if schedule in LONGER:
        return results.parent / budget.results_name(LONGER[schedule][0]) / FOLDER
    return results / FOLDER


# what a reused row's run replaces in the paper trial's record: the fields of a run, not of the shape
RUN_FIELDS = ("best_valid_nll", "final_sample_valid_nll", "curve", "train_steps", "train_tokens", "train_wall_s",
              "tokens_per_s", "stop", "schedule_config", "config_hash", "command", "created", "started", "env",
              "unigram_entropy", "threads", "error")


def paper_runs(comparison: Path, paper: dict[str, dict[str, Any]], schedules: dict[str, dict[str, Any]],
               seed: int, corpus: str) -> dict[str, dict[str, Any]]:
    """Each family's paper shape as a full-recipe run, from the comparison's own row: the row trains that very
    config on that very recipe (the paper shape is the budget's row), so its seed-``seed`` run is the paper shape's
    confirmation run, already trained. family -> the paper trial's shape fields (family, shape, config, MACs,
    ...) with the row's run in place of the trial's (validation NLL on the whole split, curve, steps, target
    tokens, hash: ``RUN_FIELDS``), ``trial_kind`` "full" and ``reused_from`` (the row's record); a family whose
    row has no such finished run (another config, recipe or corpus, not trained yet) is left out.

    Args:
        comparison: the comparison's results folder (``results/100M``).
        paper: family -> its paper-shape trial record (config, shape, slug, ...).
        schedules: family -> the full recipe at its tuned rate (Schedule.to_dict()).
        seed: the confirmation runs' seed.
        corpus: the search's corpus (a row trained on another is not this search's run).
    """
    out = {}
    schedules = json.loads(json.dumps(schedules))  # as a record holds it (tuples as lists)
    for family, trial in paper.items():
        for train_path in sorted((Path(comparison) / "runs").glob(f"{family}-*/train-s{seed}.json")):
            try:
                rec = json.loads(train_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # not a record this choice can read; the row's own report names it
            if rec.get("model") != family or rec.get("variant") or rec.get("config") != trial["config"] \
                    or rec.get("schedule_config") != schedules[family] or rec.get("corpus") != corpus \
                    or rec.get("valid_nll") is None:
                continue
            shape = {k: v for k, v in trial.items() if k not in RUN_FIELDS}
            out[family] = {**shape, **{k: rec[k] for k in RUN_FIELDS if k in rec}, "valid_nll": rec["valid_nll"],
                           "trial_kind": "full", "tokens_per_trial": _tokens(rec["schedule_config"]),
                           "reused_from": str(train_path.relative_to(Path(comparison).parent))}
            break
    return out


def _tokens(schedule: dict[str, Any]) -> int:
    """The target tokens a run of this schedule (a record's ``schedule_config``) trains: its stop, else its whole
    budget (as bench.train.tune.trial_tokens counts a trial's)."""
    return int(schedule.get("stop_tokens") or schedule.get("max_tokens") or 0)
