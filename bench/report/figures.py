"""Pareto figures from the leaderboard: quality vs MACs, quality vs latency, latency vs MACs, and several budgets
on one plot. PNG (200 dpi) and PDF, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch)
in seaborn's whitegrid style.

Conventions: every axis title says its unit and convention (MACs at batch 1 and 30+30 tokens, latency p50 at
batch 1 and 1 thread; summarization counts and times its own shapes, e.g. 70+10). Quality is test ROUGE-L F1
(summarization) or test BLEU (both higher is better) when the records have it, else test perplexity per token
(language models) or validation NLL in nats per target token (both lower is better). Each figure
draws the Pareto front as a step line (the best quality reachable at no more than a given cost), labels each
point with its model, and draws the seed spread (sample std) as error bars where there are several seeds.
Compressed variants (bench.compress) appear only in the size figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.report.baselines import models_only, reference_lines
from bench.report.columns import present, unique_join
from bench.report.curves import write_training_figures
from bench.report.latency_trust import draw_hollow, split_noisy
from bench.report.leaderboard import build_leaderboard, current_records, display_name
from bench.report.render import mac_tokens, quality_kind
from bench.report.style import FORMATS, family_palette, new_figure, save, styled, with_format

FIGURES = ("quality_vs_macs", "quality_vs_latency", "latency_vs_macs", "quality_vs_size")


# ------------------------------------------------------------------------------------------------ Pareto
def pareto_front(points: Any, minimize_x: bool = True, maximize_y: bool = True) -> np.ndarray:
    """Indices of the points no other point dominates, in increasing x.

    ``points``: (n, 2) array-like of (x, y). A point dominates another when it is at least as good on both
    axes and strictly better on one ("good" = small x when ``minimize_x``, large y when ``maximize_y``).
    Equal points do not dominate each other (both stay on the front). Points with a NaN or infinite
    coordinate are never on the front. O(n log n): sort by (x, y) in the "smaller is better" frame and sweep.

    Args:
        points: (n, 2) array-like of (x, y).
        minimize_x: small x is good (else large).
        maximize_y: large y is good (else small).
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    ok = np.flatnonzero(np.isfinite(pts).all(axis=1))
    xs = pts[ok, 0] if minimize_x else -pts[ok, 0]
    ys = -pts[ok, 1] if maximize_y else pts[ok, 1]
    order = np.lexsort((ys, xs))  # by x, then y
    front = []
    best_y, best_x = math.inf, math.inf
    for i in order:
        if ys[i] < best_y:
            best_y, best_x = ys[i], xs[i]
            front.append(ok[i])
        elif ys[i] == best_y and xs[i] == best_x:  # a duplicate of the point that set the record
            front.append(ok[i])
    front_arr = np.asarray(front, dtype=int)
    return front_arr[np.argsort(pts[front_arr, 0], kind="stable")]


# ------------------------------------------------------------------------------------------------ quality
def quality_spec(df: pd.DataFrame) -> dict[str, Any] | None:
    """Which column measures quality here, its spread column, axis title and direction; None without any."""
    kind = quality_kind(df)
    if kind == "rouge":
        beam = unique_join(df["beam"]) if "beam" in df else None
        label = f"test ROUGE-L F1 (rouge-score, stemmed{', beam ' + beam if beam else ''})\nhigher is better"
        return {"col": "rougeL_test", "std": "rougeL_test_std", "label": label, "maximize": True, "name": "ROUGE-L"}
    if kind == "bleu":
        beam = unique_join(df["beam"]) if "beam" in df else None
        label = f"test BLEU (sacreBLEU{', beam ' + beam if beam else ''})\nhigher is better"
        return {"col": "bleu_test", "std": "bleu_test_std", "label": label, "maximize": True, "name": "BLEU"}
    if kind == "ppl":
        return {
            "col": "ppl",
            "std": "ppl_std",
            "label": "test perplexity (per token)\nlower is better",
            "maximize": False,
            "name": "perplexity",
        }
    if "valid_nll" in df and df["valid_nll"].map(present).any():
        return {
            "col": "valid_nll",
            "std": "valid_nll_std",
            "label": "validation NLL (nats / target token)\nlower is better",
            "maximize": False,
            "name": "validation NLL",
        }
    return None


def _is_lm(df: pd.DataFrame) -> bool:
    return "task" in df and (df["task"] == "lm").any()


def task_name(df: pd.DataFrame) -> str:
    if "task" in df and (df["task"] == "sum").any():
        return "summarization"
    return "language model" if _is_lm(df) else "translation"


def macs_label(df: pd.DataFrame) -> str:
    tokens = "30 tokens" if _is_lm(df) else "{}+{} tokens".format(*mac_tokens(df))
    return f"MACs (millions; batch 1, {tokens}, paper convention)"


def latency_label(workload: str, df: pd.DataFrame, direction: bool = False) -> str:
    """The axis label of a latency p50, the decoding workload named for the task.

    Args:
        workload: "forward" or the decoding workload.
        df: the leaderboard, whose task names the decoding (translate, summarize, generate-30).
        direction: add ", lower is better".
    """
    decode = {"language model": "generate-30", "summarization": "summarize"}.get(task_name(df), "translate")
    what = "forward" if workload == "forward" else decode
    return f"{what} latency p50 (ms)\nbatch 1, 1 CPU thread, fp32" + (", lower is better" if direction else "")


def workload_title(workload: str, df: pd.DataFrame) -> str:
    if workload == "forward":
        return "forward: the MAC pass (teacher-forced)"
    if task_name(df) == "summarization":
        return "summarize: encode {} + {} greedy steps".format(*mac_tokens(df))
    return "generate: 30 greedy steps with caches" if _is_lm(df) else "translate: encode + 30 greedy steps"


# ------------------------------------------------------------------------------------------------ drawing
_VARIANT = re.compile(r"^([a-z0-9_]+) \((.*)\)$")
_SEARCHED = re.compile(r"searched shape, L(\d+)(?:x(\d+))?-h\d+-f[\d.]+")  # bench.budget.shape_plan.Shape.slug


def point_label(model: str) -> str:
    """A figure's short name of a row: the family's display name ("Lite Transformer"), and for a variant
    "<family> (<what>)" with the family's display name and a short what ("searched 4+4", "post-norm"); a
    leaderboard keeps the full label."""
    m = _VARIANT.match(model)
    if m is None:
        return display_name(model)
    what = _SEARCHED.sub(lambda s: f"searched {s.group(1)}+{s.group(2)}" if s.group(2) else
                         f"searched {s.group(1)} layers", m.group(2)).replace(", paper", "")
    return f"{display_name(m.group(1))} ({what})"


def _label_points(ax: Axes, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str], fontsize: float = 8) -> None:
    """Label each point just above and to its right (to its left when only that side has room), nudging labels
    up where they would overlap and sideways to stay inside the axes; a thin leader line joins a label moved
    away from its point."""
    fig = ax.figure
    ax.autoscale_view()
    disp = ax.transData.transform(np.column_stack([xs, ys]))
    box = ax.get_window_extent()
    px_per_pt = fig.dpi / 72
    char_w, line_h, gap = 0.58 * fontsize * px_per_pt, 1.3 * fontsize * px_per_pt, 4 * px_per_pt
    placed: list[tuple[float, float, float]] = []  # (x0, x1, y0) of placed labels, display px
    for i in np.argsort(disp[:, 1], kind="stable"):
        x, y = disp[i]
        width = char_w * len(labels[i])
        right = x + gap + width < box.x1 or x - box.x0 < box.x1 - x  # the side with room, else the wider
        x0 = x + gap if right else x - gap - width
        x0 = min(max(x0, box.x0 + gap), box.x1 - gap - width) if width < box.width - 2 * gap else x0  # inside
        ly = y + gap
        for px0, px1, py in sorted(placed, key=lambda p: p[2]):
            if px0 < x0 + width and x0 < px1 and abs(ly - py) < line_h:
                ly = py + line_h
        placed.append((x0, x0 + width, ly))
        ax.annotate(
            labels[i],
            (xs[i], ys[i]),
            xytext=(((x0 if right else x0 + width) - x) / px_per_pt, (ly - y) / px_per_pt),
            textcoords="offset points",
            ha="left" if right else "right",
            va="bottom",
            fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if ly - y > 2 * gap else None,
        )


def _draw_front(ax: Axes, xs: np.ndarray, ys: np.ndarray, minimize_x: bool, maximize_y: bool) -> None:
    idx = pareto_front(np.column_stack([xs, ys]), minimize_x=minimize_x, maximize_y=maximize_y)
    if len(idx) == 0:
        return
    fx, fy = list(xs[idx]), list(ys[idx])
    finite = np.isfinite(xs) & np.isfinite(ys)
    far = xs[finite].max() if minimize_x else xs[finite].min()
    if far != fx[-1 if minimize_x else 0]:  # carry the last step on to the costliest point
        if minimize_x:
            fx.append(far)
            fy.append(fy[-1])
        else:
            fx.insert(0, far)
            fy.insert(0, fy[0])
    ax.step(
        fx, fy, where="post" if minimize_x else "pre", color="0.35", lw=1.2, ls="--", zorder=1, label="Pareto front"
    )


def scatter(
    ax: Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    *,
    minimize_x: bool = True,
    maximize_y: bool = True,
    yerr: str | None = None,
    labels: Sequence[str],
    palette: dict[str, Any],
    markers: dict[str, str] | None = None,
    marker_col: str | None = None,
) -> None:
    """The rows of ``data`` as points coloured by family, labelled, with their Pareto front; a failed run hollow and
    never on the front.

    Args:
        ax: the axes drawn on.
        data: the rows.
        x: the column on x.
        y: the column on y.
        minimize_x: small x is good (the front's direction).
        maximize_y: large y is good.
        yerr: the column of error bars; None: none.
        labels: each point's label, in row order.
        palette: family -> colour.
        markers: ``marker_col`` value -> marker; None: circles.
        marker_col: the column that picks the marker.
    """
    xs = data[x].astype(float).to_numpy()
    ys = data[y].astype(float).to_numpy()
    # a run that failed to train is drawn hollow and is never on a front
    failed = (data["status"] == "failed").to_numpy() if "status" in data else np.zeros(len(data), dtype=bool)
    _draw_front(ax, np.where(failed, np.nan, xs), ys, minimize_x, maximize_y)
    if yerr and yerr in data:
        err = data[yerr].astype(float).to_numpy()
        has = np.isfinite(err)
        if has.any():
            ax.errorbar(
                xs[has],
                ys[has],
                yerr=err[has],
                fmt="none",
                ecolor="0.4",
                elinewidth=1,
                capsize=3,
                zorder=2,
                label="± seed std",
            )
    labelled: set[str] = set()
    for i, (_, r) in enumerate(data.iterrows()):
        fam = str(r["family"])
        mk = markers[str(r[marker_col])] if markers and marker_col else "o"
        label = display_name(fam) if fam not in labelled else None
        labelled.add(fam)
        if failed[i]:
            ax.scatter([xs[i]], [ys[i]], facecolor="none", edgecolor=palette[fam], marker=mk, s=46, lw=1.2, zorder=3,
                       label=label)
        else:
            ax.scatter(
                [xs[i]], [ys[i]], color=palette[fam], marker=mk, s=46, edgecolor="white", lw=0.6, zorder=3, label=label
            )
    if failed.any():
        ax.scatter([], [], facecolor="none", edgecolor="0.3", marker="o", s=46, lw=1.2, label="failed run (hollow)")
    _label_points(ax, xs, ys, labels)


def footnote(fig: Figure, df: pd.DataFrame, errorbars: bool = True) -> None:
    """The figure's footnote: the rows' machine, torch version and schedule, and what the error bars are.

    Args:
        fig: the figure.
        df: the rows drawn.
        errorbars: say what the error bars are.
    """
    parts = []
    device = unique_join(df["device_model"]) if "device_model" in df else None
    if device:
        parts.append(device)
    torch = unique_join(df["torch"]) if "torch" in df else None
    if torch:
        parts.append(f"torch {torch}")
    sched = unique_join(df["schedule"]) if "schedule" in df else None
    if sched:
        parts.append(f"{sched} schedule")
    if errorbars:
        parts.append("error bars: sample std over seeds")
    fig.supxlabel("; ".join(parts), fontsize=6.5, color="0.4", x=0.01, ha="left")  # laid out, never overlaps


def _title(df: pd.DataFrame, what: str) -> str:
    budget = unique_join(df["budget"]) or "?"
    return f"{what} at {budget} MACs ({task_name(df)})"


def target_line(ax: Axes, df: pd.DataFrame) -> None:
    targets = sorted({float(t) for t in df.get("target_macs", []) if present(t)})
    for i, t in enumerate(targets):
        ax.axvline(
            t / 1e6, color="#c44e52", alpha=0.7, lw=1.2, ls=":", zorder=1, label="budget target" if i == 0 else None
        )


def _valid(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for c in cols:
        if c not in df:
            return df.iloc[0:0]
        mask &= pd.to_numeric(df[c], errors="coerce").notna().to_numpy()
    out = df[mask].copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c])
    return out


# ------------------------------------------------------------------------------------------------ figures
def quality_and_macs(df: pd.DataFrame, no_quality: str) -> tuple[dict | None, pd.DataFrame | None, str]:
    """(quality spec, rows with both MACs (in millions, ``macs_m``) and quality, reason when there are none)."""
    q = quality_spec(df)
    if q is None:
        return None, None, no_quality
    data = _valid(df.assign(macs_m=pd.to_numeric(df["macs"], errors="coerce") / 1e6), "macs_m", q["col"])
    if data.empty:
        return None, None, f"no model has both MACs and {q['name']}"
    return q, data, ""


def fig_quality_vs_macs(df: pd.DataFrame) -> tuple[Figure | None, str]:
    q, data, why = quality_and_macs(df, "no quality metric yet (no eval or train records)")
    if q is None:
        return None, why
    fig, (ax,) = new_figure()
    target_line(ax, data)
    reference_lines(ax, df, q)  # lead-k (summarization), when results/<budget>-sum/baselines/ has it
    scatter(
        ax,
        data,
        "macs_m",
        q["col"],
        maximize_y=q["maximize"],
        yerr=q["std"],
        palette=family_palette(data["family"]),
        labels=[point_label(m) for m in data["model"]],
    )
    ax.set_xlabel(macs_label(df))
    ax.set_ylabel(q["label"])
    ax.set_title(_title(df, f"{q['name']} vs MACs"))
    ax.legend(fontsize=7, loc="best")
    footnote(fig, df)
    return fig, ""


def fig_quality_vs_latency(df: pd.DataFrame) -> tuple[Figure | None, str]:
    q = quality_spec(df)
    if q is None:
        return None, "no quality metric yet (no eval or train records)"
    workloads = [w for w in ("forward", "translate") if not _valid(df, f"{w}_p50_ms_t1", q["col"]).empty]
    if not workloads:
        return None, f"no model has both a 1-thread latency and {q['name']}"
    fig, axes = new_figure(len(workloads))
    palette = family_palette(df["family"])
    for ax, w in zip(axes, workloads):
        data, noisy = split_noisy(_valid(df, f"{w}_p50_ms_t1", q["col"]), f"{w}_p50_ms_t1")  # noisy: hollow
        reference_lines(ax, df, q)
        scatter(
            ax,
            data,
            f"{w}_p50_ms_t1",
            q["col"],
            maximize_y=q["maximize"],
            yerr=q["std"],
            palette=palette,
            labels=[point_label(m) for m in data["model"]],
        )
        draw_hollow(ax, noisy, f"{w}_p50_ms_t1", q["col"], palette, [point_label(m) for m in noisy["model"]], q["std"])
        ax.set_xlabel(latency_label(w, df).replace("\n", ", "))
        ax.set_ylabel(q["label"])
        ax.set_title(workload_title(w, df), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(_title(df, f"{q['name']} vs latency"))
    footnote(fig, df)
    return fig, ""


def fig_latency_vs_macs(df: pd.DataFrame) -> tuple[Figure | None, str]:
    df = df.assign(macs_m=pd.to_numeric(df["macs"], errors="coerce") / 1e6)
    workloads = [w for w in ("forward", "translate") if not _valid(df, "macs_m", f"{w}_p50_ms_t1").empty]
    if not workloads:
        return None, "no model has both MACs and a 1-thread latency"
    fig, axes = new_figure(len(workloads))
    palette = family_palette(df["family"])
    for ax, w in zip(axes, workloads):
        col = f"{w}_p50_ms_t1"
        rows = _valid(df, "macs_m", col)
        data, noisy = split_noisy(rows, col)  # noisy figures: hollow, off the front
        target_line(ax, rows)
        rate = float(np.median(rows[col] / rows["macs_m"]))  # ms per million MACs
        lo, hi = rows["macs_m"].min(), rows["macs_m"].max()
        span = np.linspace(lo - 0.05 * (hi - lo + lo * 0.02), hi + 0.05 * (hi - lo + lo * 0.02), 2)
        ax.plot(span, span * rate, color="0.6", lw=1, ls="-.", zorder=0, label="latency ∝ MACs (median rate)")
        scatter(
            ax, data, "macs_m", col, maximize_y=False, palette=palette, labels=[point_label(m) for m in data["model"]]
        )
        draw_hollow(ax, noisy, "macs_m", col, palette, [point_label(m) for m in noisy["model"]])
        ax.set_xlabel(macs_label(df))
        ax.set_ylabel(latency_label(w, df, direction=True))
        ax.set_title(workload_title(w, df), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(_title(df, "Latency vs MACs (equal MACs, unequal latency)"))
    footnote(fig, df, errorbars=False)
    return fig, ""


def fig_quality_vs_size(df: pd.DataFrame) -> tuple[Figure | None, str]:
    if "compression" not in df or not (df["compression"] != "none").any():
        return None, "no compressed variants (no compress records)"
    q = quality_spec(df)
    if q is None:
        return None, "no quality metric for the compressed variants"
    data = _valid(df, "model_size_mb", q["col"])
    if data.empty:
        return None, f"no row has both a size and {q['name']}"
    fig, (ax,) = new_figure()
    reference_lines(ax, df, q)
    palette = family_palette(data["family"])
    for _, part in data.groupby("model"):
        part = part.sort_values("model_size_mb", ascending=False)
        ax.plot(part["model_size_mb"], part[q["col"]], color=palette[str(part["family"].iloc[0])], lw=0.8, alpha=0.6)
    labels = [f"{point_label(m)} ({'fp32' if c == 'none' else c})" for m, c in zip(data["model"], data["compression"])]
    scatter(
        ax, data, "model_size_mb", q["col"], maximize_y=q["maximize"], yerr=q["std"], palette=palette, labels=labels
    )
    ax.set_xlabel("model size (MB = 10^6 bytes; fp32: serialized weights, compressed: file on disk)")
    ax.set_ylabel(q["label"])
    ax.set_title(_title(df, f"{q['name']} vs model size"))
    ax.legend(fontsize=7, loc="best")
    footnote(fig, df)
    return fig, ""


_BUILDERS = {
    "quality_vs_macs": fig_quality_vs_macs,
    "quality_vs_latency": fig_quality_vs_latency,
    "latency_vs_macs": fig_latency_vs_macs,
    "quality_vs_size": fig_quality_vs_size,
}


def write_figures(results_dir: Path | str, notes: list[str] | None = None) -> list[Path]:
    """Draw every figure the records allow into ``results_dir/figures`` (``<name>.png`` and ``.pdf``; names in
    ``FIGURES``) and return the paths written. A figure the records cannot support yet is skipped, its reason
    appended to ``notes``, and an older file of that name removed (it would no longer match the records)."""
    results_dir = Path(results_dir)
    df = models_only(build_leaderboard(results_dir))  # a baseline is a reference line, never a point
    base = df[df["compression"] == "none"]
    out_dir = results_dir / "figures"
    written: list[Path] = []
    for name in FIGURES:
        fig, why = styled(_BUILDERS[name], df if name == "quality_vs_size" else base)
        stem = out_dir / name
        if fig is None:
            if notes is not None:
                notes.append(f"{name}: skipped, {why}")
            for fmt in FORMATS:
                with_format(stem, fmt).unlink(missing_ok=True)
            continue
        written += styled(save, fig, stem)
    failed = set(base.loc[base["status"] == "failed", "model"].astype(str)) if "status" in base else set()
    written += write_training_figures(results_dir, current_records(results_dir), failed, notes)
    return written
