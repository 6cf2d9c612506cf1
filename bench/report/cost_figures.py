"""Figures of the cost curves (bench.sweep.cost_curves): latency vs MACs, the ratio to the Transformer vs MACs (with
its 95% interval), and parameters vs MACs; a line per family, one panel per backend (and thread count).
PNG (200 dpi) and PDF, matplotlib's Agg canvas in seaborn's whitegrid style, as the sweep's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report.style import MARKERS, family_order, family_palette, save

MACS_LABEL = "MACs (batch 1, 30 + 30 tokens; log scale)"


def _panels(df: Any) -> list[tuple[str, Any]]:
    keys = ["backend", "threads", "workload"]
    return [(f"{b}, {t} thread{'s' if t != 1 else ''}, {w}", g) for (b, t, w), g in df.groupby(keys, sort=True)]


def _lines(ax: Any, g: Any, y: str, err: tuple[str, str] | None = None) -> None:
    order = family_order(g["family"])
    palette = family_palette(order)
    for i, fam in enumerate(order):
        f = g[g["family"] == fam].sort_values("macs")
        if f.empty:
            continue
        ax.plot(f["macs"], f[y], marker=MARKERS[i % len(MARKERS)], color=palette[fam], label=fam)
        if err is not None:
            ax.fill_between(f["macs"], f[err[0]], f[err[1]], color=palette[fam], alpha=0.2, linewidth=0)
    ax.set_xscale("log")


def draw_curves(df: Any, folder: Path) -> list[Path]:
    """The three figures into ``folder``; returns the files written."""
    written: list[Path] = []
    panels = _panels(df)
    specs = [
        ("latency_vs_macs", "p50_ms", "latency p50 (ms, batch 1; log scale)", None, True),
        ("ratio_vs_macs", "ratio_vs_transformer", "latency / the Transformer's (95% interval)",
         ("ratio_ci_low", "ratio_ci_high"), False),
    ]
    with sns.axes_style("whitegrid"):
        for stem, y, ylabel, err, logy in specs:
            fig = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, len(panels), squeeze=False)[0]
            for ax, (title, g) in zip(axes, panels):
                _lines(ax, g, y, err)
                if logy:
                    ax.set_yscale("log")
                if y == "ratio_vs_transformer":
                    ax.axhline(1.0, color="grey", linewidth=0.8)
                ax.set_title(title)
                ax.set_xlabel(MACS_LABEL)
                ax.set_ylabel(ylabel)
            axes[0].legend()
            written += save(fig, folder / stem)
        fig = Figure(figsize=(5.0, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        one = df.drop_duplicates(["family", "budget"]).assign(params_m=lambda d: d["params"] / 1e6)
        _lines(ax, one, "params_m")
        ax.set_yscale("log")
        ax.set_xlabel(MACS_LABEL)
        ax.set_ylabel("parameters (millions, without embeddings; log scale)")
        ax.set_title("parameters at each MAC budget")
        ax.legend()
        written += save(fig, folder / "params_vs_macs")
    return written
