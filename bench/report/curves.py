"""Training figures: learning curves (validation NLL against target tokens and against wall time, a line per
row, the mean over seeds with a band for their spread) and the tuning figure (final validation NLL against
the peak learning rate, a line per family, the chosen rate marked).

The in-training validation is a fixed random sample of the validation split (the same sentences for every
run), and the last point of each curve is the whole split, so a curve and its final figure are on one scale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.report.leaderboard import display_name
from bench.report.style import FORMATS, family_palette, new_figure, save, styled, with_format

GRID_POINTS = 60


def _curve_points(curve: Any, x: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(float(e[x]), float(e["valid_nll"])) for e in curve or [] if e.get("valid_nll") is not None and x in e]
    pts.sort()
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def curve_band(curves: list[Any], x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, mean, low, high) of validation NLL over seeds, interpolated on a common grid of ``x`` (target
    tokens or wall seconds) that every seed covers; None when no seed has two points."""
    series = [_curve_points(c, x) for c in curves]
    series = [(xs, ys) for xs, ys in series if len(xs) >= 2]
    if not series:
        return None
    lo, hi = max(xs[0] for xs, _ in series), min(xs[-1] for xs, _ in series)
    if hi <= lo:
        return None
    grid = np.linspace(lo, hi, GRID_POINTS)
    ys = np.stack([np.interp(grid, xs, yv) for xs, yv in series])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def learning_curve_rows(records: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{row model: {"family": ..., "curves": [one per seed]}} from the train records that carry a curve."""
    train = records[records["stage"] == "train"] if "stage" in records else records.iloc[0:0]
    out: dict[str, dict[str, Any]] = {}
    for model, part in train.groupby("model", sort=True):
        curves = [c for c in part.get("curve", []) if isinstance(c, list) and c]
        if curves:
            out[str(model)] = {"family": str(part["family"].iloc[0]), "curves": curves}
    return out


def fig_learning_curves(records: pd.DataFrame, failed: set[str] | None = None) -> tuple[Figure | None, str]:
    rows = learning_curve_rows(records)
    if not rows:
        return None, "no train record carries a learning curve"
    failed = failed or set()
    if all(curve_band(r["curves"], "tokens") is None for r in rows.values()):
        return None, "no learning curve has two validation points yet"
    fig, (ax_tok, ax_wall) = new_figure(2)
    palette = family_palette([r["family"] for r in rows.values()])
    for model, r in rows.items():
        color = palette[r["family"]]
        style = "--" if "post-norm" in model else "-"
        n = len(r["curves"])
        for ax, x, scale in ((ax_tok, "tokens", 1e6), (ax_wall, "wall_s", 60.0)):
            band = curve_band(r["curves"], x)
            if band is None:
                continue
            grid, mean, low, high = band
            label = f"{display_name(model)} ({n} seed{'s' if n > 1 else ''}){' — failed' if model in failed else ''}"
            ax.plot(grid / scale, mean, style, color=color, lw=1.4, label=label, alpha=0.5 if model in failed else 1)
            if n > 1:
                ax.fill_between(grid / scale, low, high, color=color, alpha=0.18, lw=0)
    ax_tok.set_xlabel("target tokens seen (millions)")
    ax_wall.set_xlabel("training wall time (minutes, this machine)")
    for ax in (ax_tok, ax_wall):
        ax.set_ylabel("validation NLL (nats per target token)\nlower is better")
    budget = ", ".join(sorted({str(b) for b in records.get("budget", pd.Series(dtype=str)).dropna()}))
    ax_tok.set_title(f"Learning curves at {budget or '?'} (mean over seeds; band: min-max)")
    ax_wall.legend(fontsize=7, loc="upper right")
    fig.supxlabel(
        "in-training validation: a fixed random sample of the validation split; last point: the whole split",
        fontsize=6.5, color="0.4", x=0.01, ha="left",
    )
    return fig, ""


def fig_tuning(trials: list[dict[str, Any]], chosen: dict[str, Any]) -> tuple[Figure | None, str]:
    if not trials:
        return None, "no tuning records"
    fig, (ax,) = new_figure(1)
    families = sorted({t["family"] for t in trials})
    palette = family_palette(families)
    for fam in families:
        mine = sorted((t for t in trials if t["family"] == fam), key=lambda t: t["lr"])
        xs = [t["lr"] for t in mine if t.get("valid_nll") is not None]
        ys = [t["valid_nll"] for t in mine if t.get("valid_nll") is not None]
        ax.plot(xs, ys, "-o", color=palette[fam], label=display_name(fam), ms=4)
        for t in mine:
            if t.get("valid_nll") is None:
                ax.annotate("diverged", (t["lr"], max(ys) if ys else 0), color=palette[fam], fontsize=7)
        pick = chosen.get(fam, {}).get("lr")
        if pick in xs:
            ax.scatter([pick], [ys[xs.index(pick)]], s=140, facecolor="none", edgecolor=palette[fam], lw=1.5,
                       zorder=4)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted({t["lr"] for t in trials}))
    ax.set_xticklabels([f"{v:g}" for v in sorted({t["lr"] for t in trials})])
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final validation NLL (nats per target token)\nlower is better")
    tokens = sorted({t["tokens_per_trial"] for t in trials})
    ax.set_title(f"Peak-rate search: {len(trials) // max(len(families), 1)} trials per family, "
                 f"{', '.join(f'{v / 1e6:.2f}M' for v in tokens)} target tokens each (circled: chosen)")
    ax.legend(fontsize=7)
    return fig, ""


def write_training_figures(results_dir: Path | str, records: pd.DataFrame, failed: set[str] | None = None,
                           notes: list[str] | None = None) -> list[Path]:
    """``figures/learning_curves`` and, where the budget was tuned, ``figures/tuning`` (.png and .pdf).

    Args:
        results_dir: the results folder.
        records: its current records.
        failed: the models whose training failed; None: none.
        notes: takes a line for each figure skipped; None: not told.
    """
    from bench.train.tune import read_trials  # torch, the model registry: loaded only when figures are drawn

    results_dir = Path(results_dir)
    written: list[Path] = []
    fig, why = styled(fig_learning_curves, records, failed)
    if fig is not None:
        written += styled(save, fig, results_dir / "figures" / "learning_curves")
    else:
        if notes is not None:
            notes.append(f"learning_curves: skipped, {why}")
        _remove(results_dir / "figures" / "learning_curves")  # it would no longer match the records
    trials = read_trials(results_dir)
    if trials:
        chosen = json.loads((results_dir / "tuning" / "chosen.json").read_text(encoding="utf-8"))["chosen"]
        fig, _ = styled(fig_tuning, trials, chosen)
        written += styled(save, fig, results_dir / "figures" / "tuning")
    else:
        _remove(results_dir / "figures" / "tuning")
    return written


def _remove(stem: Path) -> None:
    for fmt in FORMATS:
        with_format(stem, fmt).unlink(missing_ok=True)
