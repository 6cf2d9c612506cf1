"""One protocol, checked from the records: do the families of a leaderboard train under the same recipe?

The report reads the train records of each family's primary row (its own name; variant rows such as the
post-norm ones differ by design and are named as such in the table) in the configuration it reports, and
compares what a fair comparison holds fixed: norm placement and every dropout knob of the model, every key of
the training schedule except the peak rate, the corpus, and the seeds. The peak rate may differ where tuning
chose it; each family's is listed with the rate ``tuning/chosen.json`` names, so a run trained at another
rate than its tuning chose shows. ``leaderboard.md`` prints the result under "One protocol".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.train.schedules import LONGER

MODEL_KEYS = ("normalize_before", "dropout", "attention_dropout", "activation_dropout", "weight_dropout")
# schedule keys that do not make a recipe: the peak rate is tuned per family; the rest is bookkeeping
SCHEDULE_FREE = ("lr", "log_every", "checkpoint_every")


def _plain(value: Any) -> Any:
    """A record value as something hashable and comparable (lists -> tuples; NaN -> None)."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a column with gaps reads as floats: 1024.0 is the 1024 the record holds
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_label(v) for v in value) + "]"
    return "none" if value is None else str(value)


def protocol_check(records: pd.DataFrame, results_dir: Path | str | None = None) -> dict[str, Any] | None:
    """What every family's primary train records agree on and where they differ; None without train records.

    Returns ``{"one": bool, "families": [...], "agree": {key: value}, "differ": {key: {family: [values]}},
    "seeds": {family: [seeds]}, "lr": {family: [rates]}, "chosen": {family: rate}}``."""
    if "stage" not in records or "family" not in records:
        return None
    train = records[(records["stage"] == "train") & (records["model"].astype(str) == records["family"].astype(str))]
    if train.empty:
        return None
    keys = [f"config.{k}" for k in MODEL_KEYS] + sorted(
        c for c in train.columns if c.startswith("schedule_config.") and c.split(".", 1)[1] not in SCHEDULE_FREE)
    keys += ["corpus"]
    values: dict[str, dict[str, set]] = {}
    for fam, part in train.groupby("family", sort=True):
        for key in keys:
            if key not in part.columns:
                continue
            seen = {_plain(v) for v in part[key]}
            if key.startswith("config.") and seen == {None}:
                continue  # not a knob of this family (e.g. weight dropout for the Transformer)
            values.setdefault(key, {})[str(fam)] = seen
    # the decoding each evaluation actually used (a re-evaluation with other settings would otherwise pass)
    evals = records[(records["stage"] == "eval") & (records["model"].astype(str) == records["family"].astype(str))]
    for key in ("beam", "length_penalty"):
        if key in evals.columns and evals[key].notna().any():
            for fam, part in evals.groupby("family", sort=True):
                values.setdefault(f"eval.evaluated_{key}", {})[str(fam)] = {_plain(v) for v in part[key]}
    families = sorted(str(f) for f in train["family"].unique())
    agree, differ, partial = {}, {}, {}
    for key, per in values.items():
        name = key.split(".", 1)[-1]
        union = set().union(*per.values())
        if len(union) == 1 and all(len(v) == 1 for v in per.values()):
            agree[name] = next(iter(union))
            if len(per) < len(families):  # a knob only some families have: say whose
                partial[name] = sorted(per)
        else:
            differ[name] = {f: sorted(map(_label, v)) for f, v in per.items()}
    seeds = {str(f): sorted(int(s) for s in part["seed"] if pd.notna(s)) for f, part in train.groupby("family")}
    if len({tuple(s) for s in seeds.values()}) > 1:
        differ["seeds"] = {f: [", ".join(map(str, s))] for f, s in seeds.items()}
    lr_col = "schedule_config.lr"
    lrs = {str(f): sorted({float(v) for v in part[lr_col] if pd.notna(v)}) for f, part in train.groupby("family")} \
        if lr_col in train else {}
    several = {f: r for f, r in lrs.items() if len(r) > 1}
    if several:  # one family, one rate: seeds at different rates are not one row
        differ["peak lr within a family"] = {f: [", ".join(f"{x:g}" for x in r)] for f, r in several.items()}
    tuned: dict[str, Any] = {}
    path = Path(results_dir) / "tuning" / "chosen.json" if results_dir else None
    factor = 1
    if path is not None and not path.exists():  # a longer schedule of the length study: its parent's tuning
        for name, (_, times) in LONGER.items():
            if Path(results_dir).name.endswith(f"-{name}"):
                path, factor = Path(results_dir).parent / Path(results_dir).name[: -len(name) - 1] / \
                    "tuning" / "chosen.json", times
    if path is not None and path.exists():
        tuned = json.loads(path.read_text(encoding="utf-8"))
    chosen = {f: v["lr"] for f, v in tuned.get("chosen", {}).items()}
    if chosen:
        off = {f: r for f, r in lrs.items() if r != [chosen.get(f)]}
        if off:
            differ["peak lr against tuning/chosen.json"] = {
                f: [f"{', '.join(f'{x:g}' for x in r)} " + (f"(chose {chosen[f]:g})" if f in chosen else "(not tuned)")]
                for f, r in off.items()}
        recipe = tuned.get("recipe_tokens")
        if recipe and "max_tokens" in agree and int(agree["max_tokens"]) != factor * int(recipe):
            differ["tuning's recipe"] = {"tuning/chosen.json": [f"tuned for {int(recipe):,} target tokens, the runs "
                                                                 f"trained {int(agree['max_tokens']):,}"]}
    return {"one": not differ and len(families) > 1, "families": families, "agree": agree, "partial": partial,
            "differ": differ, "seeds": seeds, "lr": lrs, "chosen": chosen,
            "tuned_at": _tuned_at(path, tuned, factor) if factor > 1 and chosen else None}


def _tuned_at(path: Path, tuned: dict[str, Any], factor: int) -> str:
    """Where a longer schedule's peak rates come from: the tuning of the schedule it lengthens."""
    return (f"{path.parent.parent.name}/tuning/chosen.json, tuned for {int(tuned['recipe_tokens']):,} target tokens: "
            f"the schedule this one lengthens {factor}x")


def render_protocol(check: dict[str, Any] | None, name=lambda m: m) -> list[str]:
    """Markdown lines of the "One protocol" section (empty without train records)."""
    if not check:
        return []
    out = ["", "### One protocol", ""]
    fams = ", ".join(name(f) for f in check["families"])
    if len(check["families"]) < 2:
        return out + [f"Only {fams} has train records in the configuration the table reports: nothing to compare."]

    def held(key: str, value: Any) -> str:
        only = check.get("partial", {}).get(key)
        return f"{key} {_label(value)}" + (f" ({', '.join(name(f) for f in only)} only)" if only else "")

    agreed = "; ".join(held(k, v) for k, v in sorted(check["agree"].items()))
    seeds = {tuple(s) for s in check["seeds"].values()}
    seed_text = (f"seeds {', '.join(map(str, next(iter(seeds))))} for every family" if len(seeds) == 1
                 else "seeds differ (below)")
    if check["one"]:
        out.append(f"**One protocol**: the train (and eval) records of every family's primary row ({fams}) agree on "
                   f"{agreed}; {seed_text}.")
    else:
        out.append(f"**Not one protocol**: the train (and eval) records of the primary rows ({fams}) differ in "
                   f"{', '.join(sorted(check['differ']))}. They agree on {agreed or 'nothing compared'}.")
        for key, per in sorted(check["differ"].items()):
            out.append(f"- {key}: " + "; ".join(f"{name(f)} {', '.join(v)}" for f, v in sorted(per.items())))
    if check["lr"]:
        rates = "; ".join(f"{name(f)} {', '.join(f'{r:g}' for r in v)}" for f, v in sorted(check["lr"].items()))
        source = (f" (as {check.get('tuned_at') or 'tuning/chosen.json'} chose)" if check["chosen"] and not any(
            k.startswith("peak lr") for k in check["differ"]) else "")
        out += ["", f"Peak learning rate, the one key tuning may set per family: {rates}{source}."]
    return out
