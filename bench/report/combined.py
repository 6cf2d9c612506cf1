"""Several budgets on one plot: quality vs MACs for results folders side by side (e.g. results/100M and
results/500M), one Pareto front over all of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.errors import BenchError
from bench.infra.atomic import write_text
from bench.report.baselines import models_only
from bench.report.columns import present, unique_join
from bench.report.figures import (
    footnote,
    macs_label,
    point_label,
    quality_and_macs,
    quality_spec,
    scatter,
    target_line,
    task_name,
)
from bench.report.leaderboard import build_leaderboard, current_records, display_name
from bench.report.quality import pairwise_note, pairwise_table, render_pairwise
from bench.report.style import MARKERS, family_palette, new_figure, save, styled


def combined_leaderboard(results_dirs: Sequence[Path | str]) -> pd.DataFrame:
    """The base rows (no compression) of several results folders, one after the other, with ``results``."""
    parts: list[pd.DataFrame] = []
    seen: dict[str, str] = {}  # budget -> the folder that holds it
    for d in results_dirs:
        df = models_only(build_leaderboard(d))  # families only: a baseline is no budget's point
        df = df[df["compression"] == "none"].copy()
        df["results"] = Path(d).name
        df["budget"] = df["budget"].where(df["budget"].map(present), Path(d).name)
        for budget in dict.fromkeys(df["budget"].astype(str)):
            if budget in seen and seen[budget] != Path(d).name:  # the rows are keyed by budget: they would pool
                raise BenchError(f"{seen[budget]} and {Path(d).name} both hold budget {budget}: combine one of them "
                                 "(a longer schedule's folder is the length study's: results/combined/length.md)")
            seen[budget] = Path(d).name
        parts.append(df)
    if not parts:
        raise BenchError("no results folders to combine")
    return pd.concat(parts, ignore_index=True)


def budget_recipes(df: pd.DataFrame) -> dict[str, str]:
    """Each budget's recipe (norm placement and dropout of its families' own trained rows; the peak rates are
    tuned per family and budget by one search, so they are not the recipe), in the budgets' order."""
    budgets = list(dict.fromkeys(df["budget"].astype(str)))
    return {b: _recipe(df[df["budget"].astype(str) == b], lr=False).strip(" ()") for b in budgets}


def mixed_recipes(df: pd.DataFrame) -> str | None:
    """Why the budgets of ``df`` are not one comparison (their recipes, when they differ), else None."""
    recipes = {b: r for b, r in budget_recipes(df).items() if r}
    if len(set(recipes.values())) <= 1:
        return None
    return "budgets trained under different recipes: " + ", ".join(f"{b} ({r})" for b, r in recipes.items())


def fig_combined(df: pd.DataFrame) -> tuple[Figure | None, str]:
    mixed = mixed_recipes(df)
    if mixed:  # one figure, one recipe: budgets of different recipes are not one comparison
        return None, mixed
    q, data, why = quality_and_macs(df, "no quality metric in any of the results folders")
    if q is None:
        return None, why
    budgets = list(dict.fromkeys(data["budget"].astype(str)))
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(budgets)}
    fig, (ax,) = new_figure()
    target_line(ax, data)
    palette = family_palette(data["family"])
    scatter(
        ax,
        data,
        "macs_m",
        q["col"],
        maximize_y=q["maximize"],
        yerr=q["std"],
        palette=palette,
        labels=[point_label(m) for m in data["model"]],
        markers=markers,
        marker_col="budget",
    )
    for b, mk in markers.items():  # legend entries for the budgets' markers, with each budget's recipe
        ax.scatter([], [], marker=mk, color="0.3", label=f"budget {b}{_recipe(data[data['budget'].astype(str) == b])}")
    ax.set_xlabel(macs_label(df))
    ax.set_ylabel(q["label"])
    ax.set_title(f"{q['name']} vs MACs across budgets ({', '.join(budgets)}; {task_name(df)})")
    ax.legend(fontsize=7, loc="best")
    footnote(fig, df)
    return fig, ""


def _recipe(rows: pd.DataFrame, lr: bool = True) -> str:
    """A budget's training recipe in a few words (norm placement, dropout, and with ``lr`` the peak rates), so
    that budgets trained under different recipes are not read as one comparison."""
    trained = rows[rows["status"].map(present)] if "status" in rows else rows.iloc[0:0]
    if "family" in trained:  # the families' own rows, not the extra (variant) rows such as post-norm
        trained = trained[trained["model"].astype(str) == trained["family"].astype(str)]
    if not len(trained):
        return ""
    norms = {bool(v) for v in trained.get("normalize_before", []) if present(v)}
    parts = [{frozenset({True}): "pre-norm", frozenset({False}): "post-norm"}.get(frozenset(norms), "mixed norms")]
    for col, name in (("dropout", "dropout"), ("peak_lr", "peak lr"))[: 2 if lr else 1]:
        value = unique_join(trained[col]) if col in trained else ""
        parts += [f"{name} {value}"] if value else []
    return f" ({'; '.join(parts)})"


def write_combined_figure(results_dirs: Sequence[Path | str], out_path: Path | str) -> list[Path]:
    """Quality vs MACs for several results folders on one plot (e.g. results/100M and results/500M), one Pareto
    front over all of them; written to ``out_path`` with suffixes .png and .pdf. Returns the paths written.
    Raises BenchError when a folder has no records or none has a quality metric."""
    df = combined_leaderboard(results_dirs)
    fig, why = styled(fig_combined, df)
    if fig is None:
        raise BenchError(f"cannot draw the combined figure: {why}")
    out_path = Path(out_path)
    stem = out_path.with_suffix("") if out_path.suffix in (".png", ".pdf") else out_path
    return styled(save, fig, stem)


def step_records(results_dirs: Sequence[Path | str]) -> pd.DataFrame:
    """The families' own records of several results folders (current configurations, no compression), each row
    named ``<family> @ <budget>``, so that the suite's paired bootstrap compares one family across budgets (the
    same corpus, splits and tokenizer: the same sentences)."""
    parts = []
    for d in results_dirs:
        recs = current_records(d)
        recs = recs[recs["model"].astype(str) == recs["family"].astype(str)].copy()
        if "compression" in recs:
            recs = recs[recs["compression"].isna() | (recs["compression"] == "none")]
        budget = recs["budget"].where(recs["budget"].map(present), Path(d).name).astype(str) if "budget" in recs \
            else Path(d).name  # as combined_leaderboard names it
        recs["model"] = recs["family"].astype(str) + " @ " + budget
        parts.append(recs)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def budget_steps(df: pd.DataFrame, records: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    """The budget step (each family at each larger budget minus the same family at the smallest, under one
    recipe: bench.report.quality.pairwise_table's rows) and the steps left out for another recipe."""
    recipes = {b: r for b, r in budget_recipes(df).items() if r}  # budgets with trained rows
    macs = pd.to_numeric(df["macs"], errors="coerce")
    budgets = sorted(recipes, key=lambda b: float(macs[df["budget"].astype(str) == b].median()))  # smallest first
    if not budgets:
        return [], []
    fams = sorted({str(f) for f in df["family"]}) if "family" in df else []
    pairs, other = [], []
    for fam in fams:
        for b in budgets[1:]:
            if recipes[b] != recipes[budgets[0]]:
                other.append(f"{display_name(fam)} {b}")
                continue
            pairs.append((f"{fam} @ {b}", f"{fam} @ {budgets[0]}"))
    rows = pairwise_table(records, pairs) if pairs and not records.empty else []
    skipped = [f"{', '.join(other)}: trained under another recipe than {budgets[0]} ({recipes[budgets[0]]}), not "
               "compared"] if other else []
    return rows, skipped


def step_verdict(rows: Sequence[dict[str, Any]]) -> str:
    """Does the larger budget help, family by family? Each step's validation NLL difference (larger minus
    smaller budget) read against its interval: lower or higher, and whether its interval crosses 0; then
    whether every family's larger budget is at or below its smaller one (the bar a budget step should pass)."""
    words, higher = [], []
    for r in rows:
        nll = r.get("valid_nll")
        if not nll:
            continue
        fam, big = r["a"].split(" @ ")
        small = r["b"].split(" @ ")[1]
        lo, hi = nll["ci95"]
        verdict = "higher" if nll["diff"] > 0 else "lower"
        verdict += "" if hi < 0 or lo > 0 else ", but its interval crosses 0"
        words.append(f"{display_name(fam)} {big} - {small}: {nll['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] ({verdict})")
        if nll["diff"] > 0:
            higher.append(f"{display_name(fam)} at {big}")
    if not words:
        return "No budget step has validation NLL on both sides."
    bar = ("every family's larger budget is at or below its smaller budget's validation NLL" if not higher else
           f"not every family's larger budget is at or below its smaller budget's validation NLL: {', '.join(higher)} "
           "is higher")
    return "Validation NLL, larger minus smaller budget: " + "; ".join(words) + f". So {bar}."


def combined_table(df: pd.DataFrame, records: pd.DataFrame | None = None) -> str:
    """Markdown: each family's own row at every budget (quality with its seed spread, validation NLL, status,
    recipe) and its validation NLL against the smallest budget's, so that "does more compute help, under the
    same recipe?" is answered per family in one place; with ``records`` (:func:`step_records`) the budget step
    with intervals, for budgets of one recipe."""
    q = quality_spec(df)
    rows = df[df["model"].astype(str) == df["family"].astype(str)] if "family" in df else df
    heads = ["family", "budget", "recipe", "MACs (M)", q["name"] if q else "quality", "valid NLL", "Δ valid NLL",
             "seeds", "status"]
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join([":---"] * 3 + ["---:"] * 6) + "|"]
    for fam, group in rows.groupby("family", sort=True):
        group = group.sort_values("macs")
        base = next((v for v in group["valid_nll"] if present(v)), None)
        for _, r in group.iterrows():
            def pm(col: str, fmt: str) -> str:
                if not present(r.get(col)):
                    return "–"
                std = r.get(f"{col}_std")
                return f"{r[col]:{fmt}}" + (f" ± {std:{fmt}}" if present(std) else "")

            nll = r.get("valid_nll")
            delta = f"{nll - base:+.3f}" if present(nll) and base is not None else "–"
            budget = str(r["budget"])
            # the budget's shared recipe, and this family's own peak rate (tuning may set it per family)
            recipe = _recipe(rows[rows["budget"].astype(str) == budget], lr=False).strip(" ()")
            if present(r.get("peak_lr")):
                lr = r["peak_lr"]  # the leaderboard's text ("0.001", or "0.001, 0.004" for several) or a number
                recipe += ("; " if recipe else "") + f"peak lr {f'{lr:g}' if isinstance(lr, float) else lr}"
            recipe = recipe or "–"
            out.append(f"| {display_name(str(fam))} | {budget} | {recipe} | {r['macs'] / 1e6:.1f} | "
                       f"{pm(q['col'], '.2f') if q else '–'} | {pm('valid_nll', '.3f')} | {delta} | "
                       f"{int(r['n_eval'] or 0) if present(r.get('n_eval')) else 0} | "
                       f"{r['status'] if present(r.get('status')) else '–'} |")
    text = "\n".join(out) + ("\n\nΔ valid NLL: against the same family's smallest budget (negative: the larger "
                             "budget is better). Rows of different recipes are not one comparison.\n")
    if records is None:
        return text
    mixed = mixed_recipes(df)
    rows, skipped = budget_steps(df, records)
    recipe = next((r for r in budget_recipes(df).values() if r), "–")
    text += "\n## The budget step\n\n" + (f"One recipe: {recipe}.\n\n" if not mixed else
                                           f"Not one comparison: {mixed}.\n\n")
    if rows:
        name = lambda m: f"{display_name(m.split(' @ ')[0])} @ {m.split(' @ ')[1]}"  # noqa: E731
        text += "\n".join(render_pairwise(rows, name=name)) + "\n\n" + pairwise_note(rows) + "\n"
        text += "\n" + step_verdict(rows) + "\n"
    text += ("\n" if rows and skipped else "") + "".join(f"{s}.\n" for s in skipped)
    return text


def write_combined_table(results_dirs: Sequence[Path | str], out_path: Path | str) -> Path:
    """:func:`combined_table` of several results folders with the budget step, written to ``out_path``."""
    out = Path(out_path)
    write_text(out, combined_table(combined_leaderboard(results_dirs), step_records(results_dirs)))
    return out
