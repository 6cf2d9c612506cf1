"""What every figure of the report shares: the family colours, a new figure on the Agg canvas, the style, and
writing PNG and PDF together (both or neither)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.infra.atomic import write_files

FORMATS = ("png", "pdf")
FAMILY_ORDER = ("transformer", "evolved_transformer", "lite_transformer")
MARKERS = ("o", "s", "D", "^", "v", "P", "X")


def family_palette(families: Sequence[str] | pd.Series) -> dict[str, Any]:
    """A colour per family: the three paper families always the same colours, others after them."""
    families = [str(f) for f in families]  # a Series' `in` looks at its index, not its values
    known = [f for f in FAMILY_ORDER if f in families] + sorted(f for f in set(families) if f not in FAMILY_ORDER)
    colors = sns.color_palette("colorblind", n_colors=max(len(FAMILY_ORDER), len(known)))
    return {f: colors[FAMILY_ORDER.index(f) if f in FAMILY_ORDER else i] for i, f in enumerate(known)}


def new_figure(panels: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(5.6 * panels if panels > 1 else 7.0, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.margins(x=0.12, y=0.12)
    return fig, list(axes)


def save(fig: Figure, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.pdf, both or neither (bench.infra.atomic)."""

    def writer(fmt: str):
        def write(path: Path) -> None:
            fig.savefig(path, format=fmt, dpi=200, metadata={"CreationDate": None} if fmt == "pdf" else None)

        return write

    return write_files({with_format(stem, fmt): writer(fmt) for fmt in FORMATS})


def with_format(stem: Path, fmt: str) -> Path:
    return stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: "1.2G" must stay whole


def styled(fn, *args):
    """``fn(*args)`` drawn in the report's style (seaborn whitegrid, notebook context at 0.8)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        return fn(*args)
