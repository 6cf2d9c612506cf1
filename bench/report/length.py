"""The length study: does the short schedule's ranking hold when the same recipe trains 4x and 16x longer?

Reads a budget's translation folder and its longer-schedule siblings (``results/100M``, ``100M-x4``,
``100M-x16``: the same models, data, recipe and peak rates; only the target tokens and so the cosine's length
differ) and writes ``results/combined/length.md`` and ``length.png|pdf``:

- per family and length: the seeds, the final validation NLL (whole split) and test BLEU, mean and spread;
- each pair's gap at each length (A minus B) with its 95% interval and p-value, from the suite's paired
  bootstrap over sentences (and seeds, where a row has several) on that folder's own records;
- the target tokens each family's in-training curve needed to reach given validation NLLs (the curve's
  fixed 400-sentence validation subset, so a little off the whole-split figures);
- the rule that sets the 16x runs' dropout, evaluated on the 4x curves: if any family's 4x curve rises more
  than ``OVERFIT_RISE`` nats above its best before the end, the 16x runs train with dropout 0.1 for every
  family, otherwise without;
- the searched shapes, where a length has them (the budget's ``shape: searched`` variants): each family's
  searched-shape row per length with its seeds, the gaps between the searched rows and of each against its
  family's paper-shape row; dashed lines in the figure.

Everything else reads the primary rows (no other variants, no compressed rows) of runs that trained (status ok).
The data (bench.report.length_data) is read apart from its rendering here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bench.errors import BenchError
from bench.infra.atomic import write_text
from bench.report.baselines import lead_k, read_baseline, row_name
from bench.report.leaderboard import display_name
from bench.report.length_data import (
    METRICS,
    OVERFIT_RISE,
    collect,
    family_pairs,
    length_folders,
    mean_sd,
    mean_tokens,
    overfit_rule,
    tokens_to_reach,
)
from bench.report.style import family_palette, new_figure, save, styled

REACH = (4.0, 3.5, 3.0, 2.75, 2.5, 2.25)  # validation NLLs whose first crossing the tokens table reports


def _tok(n: float) -> str:
    if n >= 1e7:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e6:.1f}M".replace(".0M", "M") if n >= 1e6 else f"{n / 1e3:.0f}k"


def _gap(r: dict[str, Any] | None, fmt: str) -> str:
    if not r:
        return "–"
    lo, hi = r["ci95"]
    return f"{r['diff']:+{fmt}} [{lo:+{fmt}}, {hi:+{fmt}}] p={r['p_value']:.3f}"


def _in_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _factors(lengths: Sequence[dict[str, Any]]) -> str:
    """``4x and 16x``: the longer schedules that have trained runs, in words."""
    return _in_words([f"{ln['factor']}x" for ln in lengths if ln["factor"] > 1]) or "1x"


def _dropout_words(ln: dict[str, Any]) -> str:
    """A length's dropout as its trained rows recorded it: ``dropout 0.1``, ``dropout 0 / 0.1`` (rows differ), or
    ``dropout not recorded``."""
    drop = ln.get("dropout") or []
    return "dropout " + " / ".join(f"{d:g}" for d in drop) if drop else "dropout not recorded"


def _same_recipe(lengths: Sequence[dict[str, Any]], task: str = "mt") -> str:
    """What is the same at every length, and each length's dropout where they differ in it (translation's longest
    schedule takes the dropout the rule below sets, so its gaps are read under another regularisation)."""
    if len({_dropout_words(ln) for ln in lengths}) <= 1:
        return ("The same models, data, recipe and peak rates at every length (the short schedule's tuned rates); "
                "only the target tokens, and with them the cosine's length, differ.")
    words = "; ".join(f"{ln['factor']}x ({_tok(mean_tokens(ln))} tokens): {_dropout_words(ln)}" for ln in lengths)
    rule = "; the rule that set it is below" if task == "mt" else ""
    return ("The same models, data and peak rates at every length (the short schedule's tuned rates), and the same "
            f"recipe except dropout ({words}{rule}): compare a gap across lengths with that in mind. Otherwise only "
            "the target tokens, and with them the cosine's length, differ.")


def _best_last(f: dict[str, Any]) -> str:
    """``best (at tokens) / last`` of the family's in-training curves, means over seeds (– without curves)."""
    curves = [c for c in f.get("curves", {}).values() if c]
    if not curves:
        return "–"
    best = [min(c, key=lambda e: e["valid_nll"]) for c in curves]
    return (f"{np.mean([b['valid_nll'] for b in best]):.3f} ({_tok(float(np.mean([b['tokens'] for b in best])))})"
            f" / {np.mean([c[-1]['valid_nll'] for c in curves]):.3f}")


def _dropout_note(lengths: Sequence[dict[str, Any]]) -> str:
    """``; 16x: dropout 0.1`` for each longer length whose dropout differs from the first length's (else nothing);
    the same comparison as the table's first sentence (``_same_recipe``)."""
    if not lengths:
        return ""
    base = _dropout_words(lengths[0])
    odd = [f"{ln['factor']}x: {_dropout_words(ln)}" for ln in lengths[1:] if _dropout_words(ln) != base]
    return "; " + ", ".join(odd) if odd else ""


def figure_title(lengths: Sequence[dict[str, Any]]) -> str:
    """The length figure's title: the factors in words (``1x, 4x and 16x``), any dropout that differs, and what
    the dashed lines are when the searched shapes are drawn."""
    said = _in_words([f"{ln['factor']}x" for ln in lengths]) or "1x"
    dashed = "; dashed: searched shapes" if any(ln.get("searched") for ln in lengths) else ""
    return (f"The short schedule's recipe at {said} its tokens{_dropout_note(lengths)} (band: seed min to max"
            f"{dashed})")


def render(data: dict[str, Any]) -> str:
    lengths = data["lengths"]
    task = data.get("task", "mt")
    metric = METRICS[task][2]
    fams = sorted({f for ln in lengths for f in ln["families"]})
    out = [f"# The length study: the short schedule's ranking at {_factors(lengths)} the tokens", "",
           f"Budget {lengths[0]['folder'].name if lengths else ''}, "
           f"{ {'mt': 'translation', 'sum': 'summarization'}[task]}.", "",
           _same_recipe(lengths, task) + " Warm-up: the recipe's 500 updates at every length. Folders: "
           + ", ".join(f"`{ln['folder'].name}` ({_tok(mean_tokens(ln))} tokens)"
                       for ln in lengths) + ".", "",
           "## Per family", "",
           f"| family | target tokens | seeds | valid NLL | sample NLL: best (at tokens) / last | test {metric} "
           "| status |",
           "|:---|---:|---:|---:|---:|---:|:---|"]
    for fam in fams:
        for ln in lengths:
            f = ln["families"].get(fam)
            if f is None:
                continue
            out.append(f"| {display_name(fam)} | {_tok(f['tokens'])} | {len(f['nll'])} | {_cell(f['nll'], '.3f')} | "
                       f"{_best_last(f)} | {_cell(f['test'], '.2f')} | {_status(f)} |")
    fitted = [f"{display_name(fam)} at {_tok(f['tokens'])}: {f['reason']}" for fam in fams for ln in lengths
              if (f := ln["families"].get(fam)) and f["status"] == "ok" and f["reason"] and "overfit" in f["reason"]]
    out += ["", "± is the standard deviation over seeds. Valid NLL: nats per target token on the whole validation "
            "split, lower is better. Sample NLL: the in-training validation (the recipe's fixed sample, every 200 "
            "updates), its lowest point and the target tokens it was reached at, then its last point, means over "
            "seeds: a best well below the last is a run that overfit before its schedule ended, and whose valid NLL "
            "(its final weights) understates what it reached."]
    out += ["", "Overfit (trained, ranked; the evaluated weights are the end of the schedule, as for every row):", ""] \
        + [f"- {x}" for x in fitted] if fitted else []
    out += ["", "## Gaps at each length (A minus B)", "",
            f"| A | B | target tokens | seeds A/B | Δvalid NLL [95% interval] | Δ{metric} [95% interval] |",
            "|:---|:---|---:|---:|:---|:---|"]
    for a, b in family_pairs(fams):
        for ln in lengths:
            r = ln["pairs"].get((a, b))
            if r is None:
                continue
            gaps = f"{_gap(r.get('valid_nll'), '.3f')} | {_gap(r.get(METRICS[task][1]), '.2f')}"
            out.append(f"| {display_name(a)} | {display_name(b)} | {_tok(mean_tokens(ln))} | "
                       f"{r['seeds_a']}/{r['seeds_b']} | {gaps} |")
    one = "sacreBLEU's paired bootstrap" if task == "mt" else "a paired bootstrap over sentences and summaries"
    out += ["", "Interval and p-value: the suite's two-level paired bootstrap (seeds with replacement per row, then "
            f"sentences shared by both rows; with one seed per row, {one}), on each length's "
            "own records. An interval that excludes 0 with p < 0.05 is significant.", ""]
    out += _ranking_lines(lengths)
    out += _searched_lines(lengths, task)
    out += ["", "## Target tokens to reach a validation NLL", "",
            "From each run's in-training curve (validation every 200 updates on the recipe's fixed 400-sentence "
            "subset, seed 1). A longer schedule holds its rate high for longer, so the same family can reach a "
            "level at other tokens at another length; – : never reached.", "",
            "| family | schedule | " + " | ".join(f"≤ {x:g}" for x in REACH) + " |",
            "|:---|---:|" + "---:|" * len(REACH)]
    for fam in fams:
        for ln in lengths:
            f = ln["families"].get(fam)
            if f is None or not f["curves"]:
                continue
            curve = f["curves"].get(1) or next(iter(f["curves"].values()))
            cells = [(_tok(t) if (t := tokens_to_reach(curve, x)) is not None else "–") for x in REACH]
            out.append(f"| {display_name(fam)} | {_tok(mean_tokens(ln))} | " + " | ".join(cells) + " |")
    if task != "mt":  # the 16x dropout rule is translation's length study
        return "\n".join(out + _baseline_lines(data)) + "\n"
    x4 = next((ln for ln in lengths if ln["factor"] == 4), None)
    out += ["", "## The 16x runs' dropout", ""]
    if x4 is None:
        out.append("No 4x records yet: the rule cannot be evaluated.")
    else:
        rule = overfit_rule({f: (v["curves"].get(1) or next(iter(v["curves"].values()), []))
                             for f, v in x4["families"].items() if v["curves"]})
        out.append(f"Rule: if any family's 4x in-training validation curve rises more than {OVERFIT_RISE} nats above "
                   "its best before the end, the 16x runs train with dropout 0.1 for every family, otherwise without.")
        out.append("")
        out.append("| family | best (4x curve) | largest rise above the best so far | last in-training validation |")
        out.append("|:---|---:|---:|---:|")
        for fam, v in sorted(rule["per_family"].items()):
            out.append(f"| {display_name(fam)} | {v['best']:.4f} | {v['rise']:+.4f} | {v['last']:.4f} |")
        fams4 = set(rule["per_family"])
        missing = [f for f in fams if f not in fams4]
        verdict = "dropout 0.1" if rule["dropout"] else "no dropout (0.0)"
        # a rise decides for dropout whatever the missing curves do; no rise yet is provisional while any is missing
        pending = f" (provisional: no 4x curve yet for {', '.join(map(display_name, missing))})" \
            if missing and not rule["dropout"] else ""
        out += ["", f"Decision: the 16x runs train with **{verdict}** for every family{pending}."]
    return "\n".join(out) + "\n"


def _cell(values: dict[int, float], fmt: str) -> str:
    """``mean ± sd`` over seeds (``mean`` for one seed, – for none)."""
    if not values:
        return "–"
    m, sd = mean_sd(values.values())
    return f"{m:{fmt}}" + (f" ± {sd:{fmt}}" if sd is not None else "")


def _status(f: dict[str, Any]) -> str:
    overfit = f["status"] == "ok" and f["reason"] and "overfit" in f["reason"]
    return "ok, overfit (below)" if overfit else f["status"] + (f" ({f['reason']})" if f["reason"] else "")


def _seeds(f: dict[str, Any]) -> str:
    """``3 (2-4)``, ``2 (1, 3)``, ``1 (1)``: how many seeds and which."""
    seeds = sorted(f["nll"])
    which = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))
    return f"{len(seeds)} ({which})"


def _searched_lines(lengths: Sequence[dict[str, Any]], task: str) -> list[str]:
    """The searched shapes across lengths: each family's searched-shape row per length, the gaps between them and
    against each family's paper-shape row (nothing when no length has searched-shape rows)."""
    if not any(ln.get("searched") for ln in lengths):
        return []
    metric, key = METRICS[task][2], METRICS[task][1]
    fams = sorted({f for ln in lengths for f in ln["searched"]})
    out = ["", "## At the searched shapes", "",
           "Each family's shape from the budget's equal-budget shape search (its `shape: searched` rows), trained at "
           "each length with the recipe, data and peak rate of its paper-shape row. Which seeds each row has is "
           "listed: the short schedule's searched rows leave out the seed whose trials chose the shape.", "",
           f"| family | row | target tokens | seeds | valid NLL | sample NLL: best (at tokens) / last | test {metric} "
           "| status |",
           "|:---|:---|---:|---:|---:|---:|---:|:---|"]
    for fam in fams:
        for ln in lengths:
            if (f := ln["searched"].get(fam)) is not None:
                out.append(f"| {display_name(fam)} | {f['model']} | {_tok(f['tokens'])} | {_seeds(f)} | "
                           f"{_cell(f['nll'], '.3f')} | {_best_last(f)} | {_cell(f['test'], '.2f')} | {_status(f)} |")
    fitted = [f"{f['model']} at {_tok(f['tokens'])}: {f['reason']}" for fam in fams for ln in lengths
              if (f := ln["searched"].get(fam)) and f["status"] == "ok" and f["reason"] and "overfit" in f["reason"]]
    if fitted:
        out += ["", "Overfit (trained, ranked):", ""] + [f"- {x}" for x in fitted]
    out += ["", f"| A | B | target tokens | seeds A/B | Δvalid NLL [95% interval] | Δ{metric} [95% interval] |",
            "|:---|:---|---:|---:|:---|:---|"]
    said: list[tuple[str, list[str]]] = []
    # (A's family, B's family, B at its searched shape too): the searched rows among themselves, then each
    # against its family's paper-shape row
    for a, b, searched_b in [(a, b, True) for a, b in family_pairs(fams)] + [(f, f, False) for f in fams]:
        what = (f"{display_name(a)} (searched) minus {display_name(b)} (searched)" if searched_b else
                f"{display_name(a)}'s searched shape minus its paper shape")
        parts = []
        for ln in lengths:
            row_a, row_b = ln["searched"].get(a), ln["searched"].get(b) if searched_b else None
            name_b = row_b["model"] if row_b else (b if not searched_b else None)
            r = ln["searched_pairs"].get((row_a["model"], name_b)) if row_a and name_b else None
            if r is None:
                continue
            shown_b = name_b if searched_b else f"{display_name(b)} (paper shape)"
            out.append(f"| {row_a['model']} | {shown_b} | {_tok(mean_tokens(ln))} | {r['seeds_a']}/{r['seeds_b']} | "
                       f"{_gap(r.get('valid_nll'), '.3f')} | {_gap(r.get(key), '.2f')} |")
            if r.get("valid_nll"):
                parts.append(f"{r['valid_nll']['diff']:+.3f} nats at {_tok(mean_tokens(ln))}")
        if parts:
            said.append((what, parts))
    out += [""] + [f"- {what}: " + ", ".join(parts) + "." for what, parts in said]
    return out


def _ranking_lines(lengths: list[dict[str, Any]]) -> list[str]:
    """Whether the order by validation NLL at the short length holds at each longer one, in words."""
    out = ["## Does the ranking hold?", ""]
    orders = []
    for ln in lengths:
        ok = {f: np.mean(list(v["nll"].values())) for f, v in ln["families"].items() if v["status"] == "ok"}
        orders.append((ln, sorted(ok, key=ok.get)))
    first = orders[0][1] if orders else []
    for ln, order in orders:
        shared = [f for f in order if f in first]
        same = shared == [f for f in first if f in order]
        verdict = ("" if ln is orders[0][0] else
                   " (one family so far: no order yet)" if len(order) < 2 else
                   " (fewer than two families ranked at both lengths: no order to compare)" if len(shared) < 2 else
                   " (the same order)" if same else " (**another order**)")
        out.append(f"- {_tok(mean_tokens(ln))} tokens: " + " < ".join(map(display_name, order)) + verdict)
    for a, b in family_pairs({f for ln in lengths for f in ln["families"]}):
        parts = [f"{r['valid_nll']['diff']:+.3f} nats at {_tok(mean_tokens(ln))}"
                 for ln in lengths if (r := ln["pairs"].get((a, b))) and r.get("valid_nll")]
        if parts:
            out.append(f"- {display_name(a)} minus {display_name(b)}: " + ", ".join(parts) + ".")
    return out


def fig_length(data: dict[str, Any]) -> tuple[Figure | None, str]:
    lengths = data["lengths"]
    if len(lengths) < 2:
        return None, "fewer than two lengths with records"
    fams = sorted({f for ln in lengths for f in ln["families"]})
    palette = family_palette(fams)
    fig, (left, right) = new_figure(2)
    metric = METRICS[data.get("task", "mt")][2]
    for ax, key, label in ((left, "nll", "validation NLL (nats/token), lower is better"),
                           (right, "test", f"test {metric}, higher is better")):
        # the paper's shapes: solid lines with seed bands; the searched shapes (where trained): dashed, no band
        for fam, rows, style in [(f, "families", "-") for f in fams] + [(f, "searched", "--") for f in fams]:
            xs, ys, lo, hi = [], [], [], []
            for ln in lengths:
                f = ln.get(rows, {}).get(fam)
                if f is None or f["status"] != "ok" or not f[key]:
                    continue
                v = np.asarray(list(f[key].values()), dtype=float)
                xs.append(f["tokens"])
                ys.append(v.mean())
                lo.append(v.min())
                hi.append(v.max())
                ax.scatter([f["tokens"]] * len(v), v, color=palette[fam], s=10, alpha=0.5, linewidths=0)
            if not xs:
                continue
            name = display_name(fam) + (" (searched shape)" if rows == "searched" else "")
            ax.plot(xs, ys, marker="o" if rows == "families" else "s", linestyle=style, color=palette[fam],
                    label=name, fillstyle="full" if rows == "families" else "none")
            if rows == "families" and any(h > lo_ for lo_, h in zip(lo, hi, strict=True)):
                ax.fill_between(xs, lo, hi, color=palette[fam], alpha=0.18, linewidth=0)
        ax.set_xscale("log")
        ticks = [mean_tokens(ln) for ln in lengths]
        ax.set_xticks(ticks, [_tok(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training target tokens (log)")
        ax.set_ylabel(label)
    lead = data.get("lead")
    if lead is not None:  # the task's baseline: what a model must pass (lead-k for summarization)
        right.axhline(lead["value"], color="0.35", linestyle="--", linewidth=1, label=lead["name"])
        right.legend(loc="best", fontsize=8)
    left.legend(loc="best", fontsize=8)
    fig.suptitle(figure_title(lengths))
    return fig, ""


def _lead(base: Path) -> dict[str, Any] | None:
    """Summarization's lead-k baseline (``<base>/baselines/lead.json``, bench baseline): name and test ROUGE-L."""
    rec = read_baseline(base, "lead")
    best = lead_k(rec) if rec else None
    if not best or "rougeL" not in best.get("test", {}):
        return None
    return {"name": row_name(best), "value": float(best["test"]["rougeL"])}


def _baseline_lines(data: dict[str, Any]) -> list[str]:
    lead = data.get("lead")
    if lead is None:
        return []
    passed = [f"{display_name(fam)} at {_tok(f['tokens'])}" for ln in data["lengths"]
              for fam, f in sorted(ln["families"].items()) if f["test"] and mean_sd(f["test"].values())[0]
              > lead["value"]]
    return ["", "## Against the baseline", "",
            f"{lead['name']} (the first words of the description, k chosen on validation) scores test ROUGE-L "
            f"{lead['value']:.2f}. " + (f"Above it: {', '.join(passed)}." if passed else "No run is above it.")]


STUDY_BUDGET = "100M"  # the length study's budget writes length.*; another budget length-<budget>.*


def write_length(base: Path | str, out_dir: Path | str, budget: str | None = None,
                 searched: Sequence[str] | set[str] = ()) -> list[Path]:
    """``length.md`` and ``length.png|pdf`` in ``out_dir`` from ``base`` and its longer siblings (another
    budget than the study's: ``length-<budget>.*``); [] when there are fewer than two lengths.

    Args:
        base: the short schedule's results folder (results/<budget>).
        out_dir: where the files go.
        budget: the budget the files are named for; None: ``base``'s folder name.
        searched: the budget's searched-shape variants (``shape: searched``), compared across lengths too.
    """
    budget = budget or Path(base).name
    stem = "length" if budget == STUDY_BUDGET else f"length-{budget}"
    folders = length_folders(base)
    if len(folders) < 2:
        return []
    data = collect(folders, searched)
    if not any(ln["families"] for ln in data["lengths"]):
        raise BenchError(f"no train records in {', '.join(str(f) for _, f in folders)}")
    if len(data["lengths"]) < 2:
        return []  # one length has trained runs (the others only profiles): no study yet
    data["lead"] = _lead(Path(base)) if data["task"] == "sum" else None
    out_dir = Path(out_dir)
    written = [write_text(out_dir / f"{stem}.md", render(data))]
    fig, _ = styled(fig_length, data)
    if fig is not None:
        written += save(fig, out_dir / stem)
    return written
