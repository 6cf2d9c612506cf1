"""Rendering the leaderboard: the compact table leaderboard.md and leaderboard.tex show, the full CSV, and
writing all three at once (bench.infra.atomic: rendered first, then moved into place together; on an error no
partial file is left)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.evaluation.rouge import ROUGE_TYPES
from bench.infra.atomic import write_files
from bench.report import latency_trust as trust
from bench.report.baselines import STATUS, floor_notes, models_only, pair_note
from bench.report.columns import present, unique_join
from bench.report.leaderboard import build_leaderboard, display_name
from bench.report.protocol import render_protocol
from bench.report.quality import DRIFT_NATS, PLATEAU_NATS, pairwise_note, render_pairwise


# ------------------------------------------------------------------------------------------------ rendering
def _num(value: Any) -> float | None:
    if not present(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: Any, fmt: str, scale: float = 1.0) -> str:
    v = _num(value)
    return "–" if v is None else format(v / scale, fmt)


def _fmt_ms(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _fmt_pm(mean: Any, std: Any, fmt: str, pm: str) -> str:
    m, s = _num(mean), _num(std)
    if m is None:
        return "–"
    return format(m, fmt) if s is None else f"{format(m, fmt)}{pm}{format(s, fmt)}"


def quality_kind(df: pd.DataFrame) -> str:
    """ "rouge" when any row has a test ROUGE-L (summarization), "bleu" when any has a test BLEU, "ppl" when any
    has a perplexity (tried first for language models), else "nll"."""
    if "rougeL_test" in df.columns and df["rougeL_test"].map(present).any():
        return "rouge"
    kinds = [("bleu", "bleu_test"), ("ppl", "ppl")]
    for kind, col in kinds[::-1] if _is_lm(df) else kinds:
        if col in df.columns and df[col].map(present).any():
            return kind
    return "nll"


def _is_lm(df: pd.DataFrame) -> bool:
    return "task" in df.columns and (df["task"] == "lm").any()


def mac_tokens(df: pd.DataFrame) -> tuple[int, int]:
    """(source, target) tokens of the MAC convention the rows were counted with: summarization's own (its
    profiles' ``protocol``, e.g. 70 + 10), else the paper's 30 + 30."""
    for text in df["protocol"] if "protocol" in df.columns else []:
        m = re.search(r"(\d+) source \+ (\d+) target", str(text)) if present(text) else None
        if m:
            return int(m.group(1)), int(m.group(2))
    return 30, 30


def summary_table(df: pd.DataFrame, pm: str = " ± ") -> tuple[list[str], list[list[str]], list[str]]:
    """The compact table both leaderboard.md and leaderboard.tex show: (headers, rows, notes on conventions).
    Baseline rows (bench.report.baselines) are rows of the table; the notes describe the models."""
    everything, df = df, models_only(df)
    lm = _is_lm(df)
    kind = quality_kind(everything)
    src, tgt = mac_tokens(df)
    summ = "task" in df.columns and (df["task"] == "sum").any()
    tmax = df["threads_max"].map(_num).dropna().max() if "threads_max" in df else math.nan
    tmax = int(tmax) if present(tmax) and tmax > 1 else None
    with_compression = (df["compression"] != "none").any()
    has_translate = df["translate_p50_ms_t1"].map(present).any()
    has_cuda = "forward_p50_ms_cuda" in df.columns and df["forward_p50_ms_cuda"].map(present).any()

    heads = ["model"] + (["compression"] if with_compression else []) + ["d", "layers"]
    heads += ["params (M, no emb.)", "MACs (M, 30 tok)" if lm else f"MACs (M, {src}+{tgt} tok)", "fwd p50 ms (1 thr)"]
    if tmax:
        heads.append(f"fwd p50 ms ({tmax} thr)")
    decode = "gen." if lm else "summ." if summ else "transl."  # the second workload's name in every column
    if has_translate:
        heads.append(f"{decode}{' 30 tok' if lm else ''} p50 ms (1 thr)")
    if has_cuda:
        heads.append("fwd p50 ms (GPU)")
    ratios = [(k, h) for k, h in (("forward_t1", "fwd"), ("translate_t1", decode)) if trust.has_ratio(df, k)]
    heads += [f"{h} ratio (1 thr, 95% CI)" for _, h in ratios]
    heads.append("size (MB)")
    if kind == "rouge":
        heads += ["ROUGE-1 (test)", "ROUGE-2 (test)", "ROUGE-L (test)"]
    elif kind == "bleu":
        heads += ["BLEU (test)", "chrF (test)"]
    elif kind == "ppl":
        heads += ["ppl (test, per token)", "ppl (test, per word)"]
    heads += ["valid NLL (nats/tok)", "seeds"]
    with_status = "status" in everything and everything["status"].map(present).any()
    if with_status:
        heads.append("status")

    rows = []
    for _, r in everything.iterrows():
        cells = [display_name(str(r["model"]))]
        if with_compression:
            cells.append(str(r["compression"]))
        cells += [
            _fmt(r["d_model"], ".0f"),
            str(r["layers"] or "–"),
            _fmt(r["params"], ".2f", 1e6),
            _fmt(r["macs"], ".1f", 1e6),
            trust.mark(_fmt_ms(r["forward_p50_ms_t1"]), r, "forward_p50_ms_t1"),
        ]
        if tmax:
            cells.append(trust.mark(_fmt_ms(r.get(f"forward_p50_ms_t{tmax}")), r, f"forward_p50_ms_t{tmax}"))
        if has_translate:
            cells.append(trust.mark(_fmt_ms(r["translate_p50_ms_t1"]), r, "translate_p50_ms_t1"))
        if has_cuda:
            cells.append(trust.mark(_fmt_ms(r["forward_p50_ms_cuda"]), r, "forward_p50_ms_cuda"))
        cells += [trust.ratio_cell(r, k) for k, _ in ratios]
        cells.append(_fmt(r["model_size_mb"], ".2f"))
        if kind == "rouge":
            cells += [_fmt_pm(r.get(f"{t}_test"), r.get(f"{t}_test_std"), ".2f", pm) for t in ROUGE_TYPES]
        elif kind == "bleu":
            cells += [
                _fmt_pm(r["bleu_test"], r["bleu_test_std"], ".2f", pm),
                _fmt_pm(r["chrf_test"], r["chrf_test_std"], ".1f", pm),
            ]
        elif kind == "ppl":
            cells += [_fmt_pm(r["ppl"], r["ppl_std"], ".2f", pm),
                      _fmt_pm(r.get("ppl_word"), r.get("ppl_word_std"), ".1f", pm)]
        seeds = "–" if r.get("status") == STATUS else str(int(_num(r["n_eval"]) or 0))  # a baseline has no seeds
        cells += [_fmt_pm(r["valid_nll"], r["valid_nll_std"], ".3f", pm), seeds]
        if with_status:
            cells.append(str(r["status"]) if present(r["status"]) else "–")
        rows.append(cells)

    notes = []
    budget = unique_join(df["budget"]) or "?"
    macs = ("batch 1, 30 tokens" if lm else f"batch 1, {src} source + {tgt} target tokens") + (
        ", one teacher-forced pass, without embeddings and the output projection (paper convention)"
    )
    if "target_latency_ms" in df and df["target_latency_ms"].notna().any():
        notes.append(f"Budget {budget}: a latency budget, every family solved to the same measured p50 in the "
                     "budget's latency setting (each candidate timed beside the 100M Transformer; latency-solve/), so "
                     f"MACs differ. MACs: {macs}; params without embedding tables.")
        notes.append(_latency_target_check(df))
    else:
        notes.append(f"Budget {budget} MACs. MACs: {macs}; params without embedding tables.")
    device = unique_join(df["device_model"]) or "unknown CPU"
    torch = unique_join(df["torch"]) or "?"
    lat = f"Latency: batch 1, fp32, median (p50) of at least 30 timed calls on {device}, torch {torch}"
    lat += "; fwd = the MAC pass"
    if has_translate:
        lat += (", gen. = 30 greedy incremental steps" if lm else f", {decode} = encode "
                f"{src} + {tgt} greedy decoding steps")
    notes.append(lat + ". Size: fp32 serialized model (compressed rows: size on disk).")
    notes += trust.notes(df, display_name)  # paired latency ratios; noisy figures and why
    seeds = "mean ± sample std over the evaluated seeds (column seeds)"
    # the decoding as the evaluations recorded it: one value for all, or every value used (then they differ)
    def distinct(col: str) -> str | None:  # a row holds its seeds' values joined: every value once
        return unique_join(p for v in df.get(col, []) if present(v) for p in str(v).split(", "))

    beam, penalty = distinct("beam"), distinct("length_penalty")
    decoding = f"beam {beam or '?'}, length penalty {penalty or 'not recorded'}"
    if kind == "rouge":
        settings = unique_join(df["rouge_settings"], sep="; ") or "settings not recorded"
        notes.append(f"ROUGE-1/2/L F1 x100: rouge-score on the test split, {decoding} ({settings}); {seeds}.")
    elif kind == "bleu":
        sig = unique_join(df["bleu_signature"], sep="; ") or "signature not recorded"
        notes.append(f"BLEU/chrF: sacreBLEU on the test split, {decoding} ({sig}); {seeds}.")
    elif kind == "ppl":
        scored = unique_join(f"{int(v):,}" for v in df.get("test_tokens", []) if present(v)) or "?"
        words = "per word: the test text's whitespace words, one more per line for its end"
        notes.append(f"Perplexity per token on the test split ({scored} tokens scored; {words}); {seeds}.")
    sched = unique_join(df["schedule"])
    if sched:
        tokens = df["train_tokens"].map(_num).dropna()
        tok = f", {tokens.max() / 1e6:.1f}M target tokens" if len(tokens) else ""
        recipe = ""
        trained = df[df["status"].map(present)] if "status" in df else df.iloc[0:0]
        if len(trained):
            norms = {bool(v) for v in trained["normalize_before"] if present(v)}
            names = {frozenset({True}): "pre-norm", frozenset({False}): "post-norm"}
            norm = names.get(frozenset(norms), "pre-norm (post-norm rows named)")
            lrs = unique_join(trained["peak_lr"]) or "?"
            if "," in lrs and "family" in trained:  # tuned per family: say whose rate is whose
                lrs = "; ".join(f"{display_name(str(fam))} {unique_join(grp['peak_lr']) or '?'}"
                                for fam, grp in trained.groupby("family", sort=True))
            recipe = f"; {norm}, dropout {unique_join(trained['dropout']) or '?'}, peak lr {lrs}"
        notes.append(f"Training: {sched} schedule, {unique_join(df['precision']) or '?'}{tok}{recipe}.")
    notes += floor_notes(everything)  # the task's floor: lead-k, copy-source BLEU, the unigram plateau
    return heads, rows, notes


def render_markdown(df: pd.DataFrame) -> str:
    heads, rows, notes = summary_table(df)

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in heads) + " |"]
    lines.append("|" + "|".join(":---" if h in ("model", "compression") else "---:" for h in heads) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    lines.append("")
    lines += [f"{n}" + "  " for n in notes]  # trailing double space: a line break in markdown
    lines += _quality_sections(df)
    lines += ["", "Generated by `python -m bench report` from the run records in runs/ beside this file."]
    return "\n".join(lines) + "\n"


def _quality_sections(df: pd.DataFrame) -> list[str]:
    """What the quality columns may claim: failed runs (named, not ranked), the pairwise differences with their
    intervals, and the peak rates tuning chose."""
    out: list[str] = []
    models = models_only(df)
    base = models[models["compression"] == "none"] if "compression" in models else models
    if "status" in base and base["status"].map(present).any():
        failed = base[base["status"] == "failed"]
        out += ["", "### Failed runs", ""]
        out.append(f"A run failed when its final validation NLL is above, or less than {PLATEAU_NATS} nats below, the "
                   f"unigram entropy of its training targets (the plateau) or more than {DRIFT_NATS} nats above its "
                   "best in-training validation while its training loss did not keep falling (a rise with falling "
                   "training loss is overfitting: such a row trained, is ranked, and is listed below). Failed rows "
                   "are drawn hollow and left out of every Pareto front.")
        out.append("")
        out += [f"- {display_name(str(r['model']))}: {r['status_reason']}" for _, r in failed.iterrows()] or ["- none"]
        fitted = base[(base["status"] == "ok") & base["status_reason"].map(present)] \
            if "status_reason" in base else base.iloc[:0]
        if len(fitted):
            out += ["", "Overfit rows (trained; their final weights are evaluated, as every row's):", ""]
            out += [f"- {display_name(str(r['model']))}: {r['status_reason']}" for _, r in fitted.iterrows()]
    pairs = df.attrs.get("pairwise") or []
    if pairs:
        out += ["", "### Pairwise differences", ""]
        out += render_pairwise(pairs, name=lambda m: display_name(str(m)))
        out += ["", pairwise_note(pairs)] + pair_note(df)
    out += render_protocol(df.attrs.get("protocol"), name=lambda m: display_name(str(m)))
    out += _tuning_section(df)
    return out


def _latency_target_check(df: pd.DataFrame) -> str:
    """A latency budget's rows against its target: each family's forward p50 at 1 thread (the fwd p50 column;
    in the budget's own setting the sweep takes the median of fresh processes) and its departure from it."""
    cells = []
    for _, r in df.sort_values("model").iterrows():
        p50, target = r.get("forward_p50_ms_t1"), r.get("target_latency_ms")
        if present(p50) and present(target):
            cells.append(f"{display_name(str(r['model']))} {p50:.2f} ms ({(p50 / target - 1) * 100:+.1f}%)")
    target = df["target_latency_ms"].dropna().iloc[0]
    return f"Against the {target:g} ms target, forward p50 at 1 thread: {', '.join(cells) or 'not measured'}."


def _tuning_cost(tuned: dict) -> str:
    """What tuning one family cost, against one seed's training (chosen.json's ``cost_in_seeds``)."""
    cost, recipe = tuned.get("cost_in_seeds"), tuned.get("recipe_tokens")
    if cost is None or not recipe:
        return ""
    return f"; per family {cost:.2f}x the target tokens of one seed's training ({recipe:,})"


def _tuning_section(df: pd.DataFrame) -> list[str]:
    folder = df.attrs.get("results_dir")
    path = Path(folder) / "tuning" / "chosen.json" if folder else None
    if path is None or not path.exists():
        return []
    tuned = json.loads(path.read_text(encoding="utf-8"))
    grid = ", ".join(f"{v:g}" for v in tuned["grid"])
    out = ["", "### Tuning", "",
           f"Peak learning rate searched over {grid} for every family with an equal budget: "
           f"{len(tuned['grid'])} trials of {tuned['tokens_per_trial']:,} target tokens each ({_trial_kind(tuned)})"
           f"{_tuning_cost(tuned)}, selected on the final validation NLL (never test). Chosen (figures/tuning.png):",
           ""]
    edges = {max(tuned["grid"]): " (the grid's largest rate)", min(tuned["grid"]): " (the grid's smallest rate)"}
    for fam, c in sorted(tuned["chosen"].items()):
        edge = edges.get(c["lr"], "") if len(tuned["grid"]) > 1 else ""
        out.append(f"- {display_name(fam)}: {c['lr']:g}{edge}, validation NLL {c['valid_nll']:.3f} after its trial")
    return out


def _trial_kind(tuned: dict[str, Any]) -> str:
    if tuned.get("trial_kind", "compressed") == "truncated":
        return (f"the recipe itself, warm-up and decay over all {tuned['recipe_tokens']:,} tokens, stopped after "
                "the trial's tokens")
    return f"warm-up {tuned['warmup_steps_per_trial']} steps, the recipe in miniature"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "±": r"$\pm$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def render_latex(df: pd.DataFrame) -> str:
    heads, rows, notes = summary_table(df, pm="±")
    budget = unique_join(df["budget"]) or "budget"
    slug = re.sub(r"[^a-z0-9]+", "-", f"{budget}-{unique_join(df['task']) or ''}".lower()).strip("-")
    label = f"tab:litebench-{slug}"
    spec = "l" + ("l" if "compression" in heads else "") + "r" * (len(heads) - 1 - ("compression" in heads))
    out = [
        "% Generated by `python -m bench report` from the run records; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(tex_escape(h) for h in heads) + " \\\\",
        "\\midrule",
    ]
    out += [" & ".join(tex_escape(c) for c in row) + " \\\\" for row in rows]
    out += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{tex_escape(' '.join(notes))}}}",
        f"\\label{{{label}}}",
        "\\end{table}",
    ]
    return "\n".join(out) + "\n"


def render_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def _text_writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


# ------------------------------------------------------------------------------------------------ writing
def write_leaderboard(results_dir: Path | str) -> dict[str, Path]:
    """Build the leaderboard and write ``leaderboard.csv``, ``leaderboard.md`` and ``leaderboard.tex`` into
    ``results_dir`` (all rendered before anything is written, then moved into place atomically). Returns
    ``{"csv": path, "md": path, "tex": path}``."""
    results_dir = Path(results_dir)
    df = build_leaderboard(results_dir)
    texts = {"csv": render_csv(df), "md": render_markdown(df), "tex": render_latex(df)}
    paths = {kind: results_dir / f"leaderboard.{kind}" for kind in texts}
    write_files({paths[kind]: _text_writer(text) for kind, text in texts.items()})
    return paths
