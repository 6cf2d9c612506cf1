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
MARKERS = ("o", "s", "D", "^", "v", "P", "X")


def family_order(present: Sequence[str] = ()) -> list[str]:
    """The registry's family order (the paper's three first, then every family added in a file of its own),
    then any other name in ``present`` (a baseline row, a family this process has not registered), sorted."""
    from models import families  # the registry (torch loads when a figure is drawn, not when the report starts)

    order = list(families())
    return order + sorted({str(f) for f in present} - set(order))


def family_palette(families: Sequence[str] | pd.Series) -> dict[str, Any]:
    """A colour per family, the same in every figure: the family's place in the registry's order picks it (the
    paper's three keep theirs whatever else is drawn), names outside the registry come after."""
    families = [str(f) for f in families]  # a Series' `in` looks at its index, not its values
    order = family_order(families)
    colors = sns.color_palette("colorblind", n_colors=len(order))
    return {f: colors[order.index(f)] for f in order if f in families}


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
