"""From command-line words to a model config: ``--budget`` (solved by bench.budget) then ``--set KEY=VALUE``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError
from bench.train.tasks import model_task
from models import ConfigError, ModelConfig, get_entry, resolve_config


def parse_sets(model: str, sets: Sequence[str]) -> dict[str, Any]:
    """``["d_model=256", "conv=lightweight"]`` -> typed overrides for ``model``'s config."""
    cls = get_entry(model).config_cls
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise BenchError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = cls.parse_value(key.strip(), value)
    return out


def resolve_model(
    model: str, task: str = "mt", budget: str | None = None, sets: Sequence[str] = (), schedule: str | None = None
) -> ModelConfig:
    """The config a command measures: the budget's solution for ``model`` (if a budget is given), with the
    ``--set`` overrides applied on top. Raises BenchError/ConfigError with one clear line. ``task`` may be
    ``sum``: its config is a translation model's (bench.train.tasks), solved under the budget's summarization
    protocol.

    Args:
        model: a registered family.
        task: mt, lm or sum.
        budget: a budget name (100M, 6ms) or file; None: the family's defaults, nothing solved.
        sets: ``--set KEY=VALUE`` strings, applied last.
        schedule: the schedule the config trains on: a budget's knobs for that schedule apply (e.g. the length
            study's x16 dropout), as a sweep on it applies them; None: the budget's own.
    """
    overrides: dict[str, Any] = {}
    if budget is not None:
        from bench.budget.solve import solve_model  # yaml (budget files): loaded only when a budget is named
        from bench.budget.spec import load_budget  # yaml (budget files): loaded only when a budget is named

        spec = load_budget(budget, task=task)
        spec = spec.for_schedule(schedule) if schedule is not None else spec
        overrides.update(solve_model(spec, model).config.to_dict())
        overrides.pop("task", None)
    overrides.update(parse_sets(model, sets))
    try:
        return resolve_config(model, model_task(task), **overrides)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive: never a traceback
        raise BenchError(str(exc)) from None
