"""The shape search's table and figure (bench.train.shapes): ``shapes.md``, every candidate with its solved size, trial
NLL and rank (and its full run's where it was confirmed); ``shapes.png|pdf``, the trial validation NLL of every
candidate, a panel per family, the paper's shape drawn as a star and the best circled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.report.leaderboard import display_name
from bench.report.style import family_palette, new_figure, save, styled


def _nll(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and math.isfinite(v) else "diverged"


def table(summary: dict[str, Any], records: list[dict[str, Any]], confirmed: list[dict[str, Any]]) -> str:
    """shapes.md: every candidate (shape, d_model, ffn_dim, MACs and % off the budget, params, trial NLL and rank;
    the full run's NLL and rank where it was confirmed), with the search's rules stated.

    Args:
        summary: the search's summary (chosen.json).
        records: each trial's record.
        confirmed: the confirmation runs' records.
    """
    tokens, recipe = summary["tokens_per_trial"], summary["recipe_tokens"]
    counts = ", ".join(f"{f} {n}" for f, n in summary["candidates"].items())
    lines = [
        f"# Shape search at {summary['budget']} ({summary['task']})",
        "",
        f"Every family's candidates (the paper's shape and moves of its depth, heads and FFN ratio) are solved to "
        f"{summary['target_macs']:,} MACs within +-{summary['tolerance']:.0%} by the budget's solver, then trained "
        f"as truncated trials: the {summary['schedule']} recipe ({recipe:,} target tokens) at the family's tuned "
        f"peak rate, stopped after {tokens:,} target tokens ({tokens / recipe:.2f} of a seed), seed "
        f"{summary['seed']}; ranked on the final validation NLL over the whole validation split (lower is better; "
        "ties to the paper's shape).",
        "",
        f"Candidates per family (at most {summary['trials_per_family']}): {counts}; {tokens:,} target tokens per "
        f"trial for every family.",
    ]
    for f, n in summary.get("fewer_candidates", {}).items():
        lines.append(f"{f} has {n} candidates, fewer than trials_per_family {summary['trials_per_family']}: its "
                     "grid or list holds no more.")
    rates = ", ".join(f"{f} {v:g}" for f, v in summary["lr"].items())
    lines += ["", f"Peak rates: {rates}; {summary['rate_note']}.", ""]
    full = {(r["family"], r["shape_slug"]): r for r in confirmed}
    reused = summary.get("paper_runs", {})  # the paper shape's full run: the family's own row, seed 1
    full.update({(f, r["shape_slug"]): r for f, r in reused.items()})
    franks = {f: v["ranks"] for f, v in summary.get("confirmed", {}).items()}
    head = ["family", "shape", "layers", "heads", "FFN ratio", "d_model", "ffn_dim", "MACs", "vs budget", "params",
            "trial NLL", "trial rank"]
    if confirmed:
        head += ["full-run NLL", "full-run rank"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ranks = {f: v["ranks"] for f, v in summary["chosen"].items()}
    for r in sorted(records, key=lambda r: (list(summary["chosen"]).index(r["family"]), r["candidate"])):
        s, slug = r["shape"], r["shape_slug"]
        row = [r["family"], f"{slug}{' (paper)' if r['paper_shape'] else ''}",
               f"{s['encoder_layers']}+{s['decoder_layers']}" if s["encoder_layers"] else str(s["decoder_layers"]),
               str(s["heads"]), f"{s['ffn_ratio']:g}", str(r["d_model"]), str(r["ffn_dim"]), f"{r['macs']:,}",
               f"{r['rel_error']:+.2%}", f"{r['params']:,}", _nll(r["valid_nll"]),
               str(ranks[r["family"]].get(slug) or "-")]
        if confirmed:
            c = full.get((r["family"], slug))
            nll = (_nll(c["valid_nll"]) + (" (its row)" if "reused_from" in c else "")) if c else ""
            row += [nll, str(franks.get(r["family"], {}).get(slug) or "-") if c else ""]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Best per family (trial ranking): " + "; ".join(
        f"{f} {v['shape_slug']}{' (paper)' if v['paper_shape'] else ''}, NLL {_nll(v['valid_nll'])}, confirm "
        f"{' and '.join(v['confirm'])}" for f, v in summary["chosen"].items()) + "."]
    if reused:
        lines += ["", "The paper shape's full run is its family's own row of the comparison, seed 1 (the same "
                  "config, recipe, rate and seed; not trained again): " + "; ".join(
                      f"{f} `{r['reused_from']}`" for f, r in reused.items()) + "."]
    if summary.get("confirmed"):
        with_paper = [f for f in summary["chosen"] if f in reused or any(r["paper_shape"] and r["family"] == f
                                                                          for r in confirmed)]
        runs_of = "the two best" + ("" if not with_paper else " and the paper shape" if len(with_paper) == len(
            summary["chosen"]) else f" and the paper shape ({', '.join(with_paper)})")
        lines += ["", f"Full-recipe runs of {runs_of} (one seed each): " + "; ".join(
            f"{f} {v['shape_slug']} best, NLL {_nll(v['valid_nll'])}"
            + (" (the paper's shape: no searched-shape row, the family's own row is it)" if v["paper_shape"] else
               "" if v["shape_slug"] == summary["chosen"][f]["shape_slug"] else
               f" (trial rank {summary['chosen'][f]['ranks'].get(v['shape_slug'])})")
            for f, v in summary["confirmed"].items()) + "."]
    return "\n".join(lines) + "\n"


def fig_shapes(records: list[dict[str, Any]], summary: dict[str, Any]) -> tuple[Figure | None, str]:
    if not records:
        return None, "no shape trial records"
    families = [f for f in summary["chosen"] if any(r["family"] == f for r in records)]
    fig, axes = new_figure(len(families))
    palette = family_palette(families)
    for ax, fam in zip(axes, families):
        mine = sorted((r for r in records if r["family"] == fam), key=lambda r: r["candidate"])
        ok = [(i, r) for i, r in enumerate(mine) if r.get("valid_nll") is not None and math.isfinite(r["valid_nll"])]
        ax.plot([i for i, _ in ok], [r["valid_nll"] for _, r in ok], "o", color=palette[fam], ms=5)
        for i, r in ok:
            if r["paper_shape"]:
                ax.plot([i], [r["valid_nll"]], "*", color="black", ms=11, zorder=4, label="paper's shape")
            if r["shape_slug"] == summary["chosen"][fam]["shape_slug"]:
                ax.scatter([i], [r["valid_nll"]], s=160, facecolor="none", edgecolor=palette[fam], lw=1.5, zorder=5)
        top = max((r["valid_nll"] for _, r in ok), default=0.0)
        for i, r in enumerate(mine):
            if (i, r) not in ok:
                ax.annotate("diverged", (i, top), color=palette[fam], fontsize=7, rotation=90)
        ax.set_xticks(range(len(mine)))
        ax.set_xticklabels([r["shape_slug"] for r in mine], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{display_name(fam)}: {len(mine)} shapes", fontsize=9)
        ax.set_xlabel("candidate (L<enc>x<dec>-h<heads>-f<FFN ratio>)")
        if ok and any(r["paper_shape"] for _, r in ok):
            ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("trial validation NLL (nats per target token)\nlower is better")
    fig.suptitle(f"Shape search at {summary['budget']}: {summary['tokens_per_trial']:,} target tokens per trial, "
                 f"every family at its tuned peak rate (circled: best)", fontsize=9)
    return fig, ""


def write_shapes_figure(records: list[dict[str, Any]], summary: dict[str, Any], stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.pdf (nothing when there are no records).

    Args:
        records: each trial's record.
        summary: the search's summary.
        stem: the files' path without a suffix.
    """
    fig, _ = styled(fig_shapes, records, summary)
    return [] if fig is None else styled(save, fig, Path(stem))
