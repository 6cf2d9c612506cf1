"""The profile of a model: params and MACs by every counter, counted with a budget's protocol. One path for
``python -m bench profile`` and the sweep's profile stage, so both count the same way."""

from __future__ import annotations

from typing import Any

from bench.cost.analytic import Protocol
from bench.cost.counting import count_macs
from bench.cost.params import count_params
from models import create_model


def protocol_of(budget: str | None, task: str = "mt") -> Protocol:
    """The MAC protocol of a budget spec (its file's ``protocol`` section), or the default one without a budget
    (summarization: the template budget file's ``protocol: sum:`` counts, its only convention)."""
    from bench.budget.spec import TEMPLATE, load_budget  # yaml (budget files): loaded only when a budget is read

    if budget is None:
        return load_budget(TEMPLATE, task=task).protocol if task == "sum" else Protocol()

    return load_budget(budget, task=task).protocol


def profile(model: str, config: dict[str, Any], protocol: Protocol = Protocol()) -> dict[str, Any]:
    """``params``, ``params_total`` and bench.cost.counting's MAC report (every counter) of ``model`` built from
    ``config``.

    Args:
        model: a registered family.
        config: its config keys.
        protocol: the inputs counted: batch, source and target tokens.
    """
    net = create_model(model, **config)
    return {**count_params(net), **count_macs(net, protocol=protocol).to_dict()}


def paper_macs(model: str, config: dict[str, Any], protocol: Protocol = Protocol()) -> tuple[int, int]:
    """(macs, macs_with_output) of the paper's convention by the primary counter alone.

    Args:
        model: a registered family.
        config: its config keys.
        protocol: the inputs counted: batch, source and target tokens.
    """
    report = count_macs(create_model(model, **config), counters=(), protocol=protocol)
    return report.macs, report.macs_with_output
