"""The leaderboard: one row per model (and per compression of it), built from the run records alone.

Conventions (docs/protocol.md):
- MACs: batch 1, 30 source + 30 target tokens (language models: 30 tokens), one teacher-forced pass, without
  embeddings and the output projection ("macs"); "macs_with_output" adds the output projection;
  ``macs_<counter>`` is each counter's count of "macs". ``macs_rel_budget`` = macs / target_macs - 1.
- params: without embedding tables (paper convention); params_total: everything.
- Latency: batch 1, eval mode, milliseconds. Columns ``<workload>_<p50|p90>_ms_t<threads>`` for CPU
  measurements (fp32), ``..._cuda`` for GPU ones, with ``_<dtype>`` appended for other dtypes (e.g.
  ``forward_p50_ms_t1_bf16``). Every thread count measured gets its columns; ``threads_max`` says which is
  the largest. "forward" is the MAC pass, "translate" encodes 30 tokens then runs 30 greedy decoding steps.
- peak_rss_mb / peak_gpu_mb: the largest over that device's latency records (MB = 10**6 bytes).
  model_size_mb: the latency record's serialized size, else params x 4 bytes / 10**6; for compressed rows, the
  compressed model's size on disk. efficiency: achieved MAC rate of the forward pass at 1 thread (CPU, fp32) as
  a fraction of the machine's sustained fp32 GEMM rate.
- Seeds: train/eval metrics are the mean over seeds; ``<metric>_std`` is the sample standard deviation
  (ddof=1; empty with a single seed). ``seeds`` lists the seeds trained or evaluated, ``n_seeds`` counts them,
  ``n_eval`` counts the evaluated ones. valid_nll (nats per target token) is the evaluation's, else the final
  value of training. BLEU/chrF: sacreBLEU on the test split (``_test``) and its cleaned variant
  (``_test_clean``), the signature beside them. Language models: test_nll, ppl (per token), ppl_word.
  Summarization: ``rouge1|rouge2|rougeL_test[_clean]`` (F1 x100), ``rouge_settings``, ``protocol`` (MAC shapes).
- compression: "none" for the trained fp32 model; compressed variants (bench.compress) get their own row with
  the base model's shape and counts but their own size, quality and latency (never the fp32 ones).
- One configuration per model: when a model has runs under several config hashes, the most recent one is
  reported and the others are listed in ``df.attrs["notes"]``.
- latency_status, latency_noisy, latency_note, latency_ratio_*: bench.report.latency_trust.

``build_leaderboard(results_dir)`` returns the DataFrame; bench.report.render writes it as ``leaderboard.csv``,
``leaderboard.md`` (a compact table for READMEs) and ``leaderboard.tex`` (booktabs, for papers).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.evaluation.rouge import ROUGE_TYPES
from bench.report.baselines import with_baselines
from bench.report.columns import latency_suffix, present, unique_join
from bench.report.latency_trust import add_ratio_columns, status_columns
from bench.report.protocol import protocol_check
from bench.report.quality import default_pairs, pairwise_table, row_status
from bench.report.records import load_records

COUNTER_ORDER = ("flop_counter", "fvcore", "thop", "analytic")
DISPLAY_NAMES = {
    "transformer": "Transformer",
    "evolved_transformer": "Evolved Transformer",
    "lite_transformer": "Lite Transformer",
}

# per-seed metrics: record key -> leaderboard column (eval overrides train where both have it)
_TRAIN_KEYS = {
    "train_tokens": "train_tokens",
    "train_steps": "train_steps",
    "train_wall_s": "train_wall_s",
    "tokens_per_s": "tokens_per_s",
    "valid_nll": "valid_nll",
}
_EVAL_KEYS = {
    "valid_nll": "valid_nll",
    "test.bleu": "bleu_test",
    "test.chrf": "chrf_test",
    "test_clean.bleu": "bleu_test_clean",
    "test_clean.chrf": "chrf_test_clean",
    "test.n": "test_n",
    "test_nll": "test_nll",
    "ppl": "ppl",
    "ppl_word": "ppl_word",
    "test_tokens": "test_tokens",
    **{f"{split}.{t}": f"{t}_{split}" for split in ("test", "test_clean") for t in ROUGE_TYPES},
}
_ROUGE_COLUMNS = [f"{t}_{split}" for split in ("test", "test_clean") for t in ROUGE_TYPES]
_COMPRESS_KEYS = {**_EVAL_KEYS, "test_clean.n": "test_clean_n"}  # compress stages carry the evaluator's keys
WITH_STD = ("valid_nll", "bleu_test", "chrf_test", "bleu_test_clean", "chrf_test_clean", "test_nll", "ppl", "ppl_word",
            *_ROUGE_COLUMNS)
_STRING_KEYS = {
    "test.bleu_signature": "bleu_signature",
    "test.chrf_signature": "chrf_signature",
    "bleu_signature": "bleu_signature",
    "chrf_signature": "chrf_signature",
    "test.rouge_settings": "rouge_settings",
}
# keys of a record that describe the run, not a measurement
_META_PREFIXES = ("config.", "env.")
_META_KEYS = {
    "version",
    "stage",
    "model",
    "family",
    "budget",
    "target_macs",
    "task",
    "config_hash",
    "command",
    "created",
    "wall_s",
    "seed",
    "compression",
    "run",
    "path",
    "mtime",
    "device_model",
    "hostname",
    "workload",
}

ID_COLUMNS = [
    "model",
    "family",
    "compression",
    "task",
    "budget",
    "target_macs",
    "target_latency_ms",
    "config_hash",
    "d_model",
    "ffn_dim",
    "encoder_layers",
    "decoder_layers",
    "layers",
    "heads",
]
COUNT_COLUMNS = ["params", "params_total", "macs", "macs_rel_budget", "macs_with_output"]
MEMORY_COLUMNS = [
    "threads_max",
    "peak_rss_mb",
    "peak_gpu_mb",
    "model_size_mb",
    "size_mb_disk",
    "efficiency",
    "achieved_gmacs",
    "gemm_gmacs",
]
TRAIN_COLUMNS = ["schedule", "precision", "normalize_before", "dropout", "peak_lr", "train_tokens", "train_steps",
                 "train_wall_s", "tokens_per_s"]
STATUS_COLUMNS = ["status", "status_reason"]
QUALITY_COLUMNS = [
    "valid_nll", "valid_nll_std", "bleu_test", "bleu_test_std", "chrf_test", "chrf_test_std", "bleu_test_clean",
    "bleu_test_clean_std", "chrf_test_clean", "chrf_test_clean_std", "test_n", "beam", "length_penalty",
    "bleu_signature", "chrf_signature", "test_nll", "test_nll_std", "ppl", "ppl_std", "ppl_word", "ppl_word_std",
    "test_tokens",
]
ROUGE_COLUMNS = [*(c for col in _ROUGE_COLUMNS for c in (col, f"{col}_std")), "rouge_settings"]  # only if present
META_COLUMNS = [
    "seeds",
    "n_seeds",
    "n_eval",
    "torch",
    "python",
    "device_model",
    "cuda_device_model",
    "git_commit",
    "hostname",
    "created",
]
_LATENCY_RE = re.compile(r"^(forward|translate)_(p50|p90)_ms_(t(\d+)|cuda)(_\w+)?$")
ALWAYS_LATENCY = ["forward_p50_ms_t1", "forward_p90_ms_t1", "translate_p50_ms_t1", "translate_p90_ms_t1"]


# ------------------------------------------------------------------------------------------------ helpers
def _first(recs: pd.DataFrame, key: str) -> Any:
    if key not in recs.columns:
        return None
    for value in recs[key]:
        if present(value):
            return value
    return None


def _column_values(recs: pd.DataFrame, key: str) -> list[Any]:
    return list(recs[key]) if key in recs.columns else []


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    arr = np.asarray([v for v in values if present(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(np.std(arr, ddof=1)) if arr.size >= 2 else math.nan
    return float(np.mean(arr)), std


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def display_name(model: str) -> str:
    """The name a figure or table shows: "Lite Transformer" for "lite_transformer"; unknown names as they are."""
    return DISPLAY_NAMES.get(model, model)


# ------------------------------------------------------------------------------------------------ one row
def _static_row(recs: pd.DataFrame) -> dict[str, Any]:
    """Identity, shape and counts of one model configuration (from whichever records have them)."""
    profile = recs[recs["stage"] == "profile"]
    src = pd.concat([profile, recs[recs["stage"] != "profile"]])
    row: dict[str, Any] = {"model": _first(src, "model"), "compression": "none"}
    for key in ("family", "task", "budget", "target_macs", "target_latency_ms", "config_hash"):
        row[key] = _first(src, key)
    for key in ("d_model", "ffn_dim", "encoder_layers", "decoder_layers", "heads"):
        row[key] = _first(src, f"config.{key}")
    enc, dec = row["encoder_layers"], row["decoder_layers"]
    if present(dec):
        is_lm = row["task"] == "lm" or not present(enc) or int(enc) == 0
        row["layers"] = f"{int(dec)}" if is_lm else f"{int(enc)}+{int(dec)}"
    else:
        row["layers"] = None
    for key in ("params", "params_total", "macs", "macs_with_output") + (("protocol",) if row["task"] == "sum" else ()):
        row[key] = _first(profile, key)
    if present(row["macs"]) and present(row["target_macs"]) and row["target_macs"]:
        row["macs_rel_budget"] = row["macs"] / row["target_macs"] - 1
    for col in profile.columns:
        if col.startswith("macs_by_counter."):
            row[f"macs_{col.split('.', 1)[1]}"] = _first(profile, col)
    return row


def _latency_columns(recs: pd.DataFrame, row: dict[str, Any]) -> None:
    lat = recs[recs["stage"] == "latency"]
    threads_max = None
    for _, rec in lat.iterrows():
        suffix = latency_suffix(rec)
        for stat in ("p50", "p90"):
            row[f"{rec['workload']}_{stat}_ms_{suffix}"] = rec.get(f"{stat}_ms")
        if rec["device"] == "cpu":
            threads_max = max(threads_max or 0, int(rec["threads"]))
    row["threads_max"] = threads_max
    cpu = lat[lat["device"] == "cpu"] if len(lat) else lat
    cuda = lat[lat["device"] == "cuda"] if len(lat) else lat
    for name, part in (("peak_rss_mb", cpu), ("peak_gpu_mb", cuda)):
        values = [v for v in _column_values(part, name) if present(v)]
        row[name] = max(values) if values else None
    size = _first(lat, "model_size_mb")
    if not present(size) and present(row.get("params")):
        size = row["params"] * 4 / 1e6
    row["model_size_mb"] = size
    ref = cpu
    if len(ref):
        ref = ref[(ref["workload"] == "forward") & (ref["threads"] == 1) & (ref["dtype"] == "fp32")]
    for key in ("efficiency", "achieved_gmacs", "gemm_gmacs"):
        row[key] = _first(ref, key)
    row["device_model"] = _first(cpu, "device_model") or _first(recs, "env.device_model")
    row["cuda_device_model"] = _first(cuda, "device_model")
    status_columns(lat, row)  # latency_status, latency_noisy, latency_note


def _seed_metrics(recs: pd.DataFrame, row: dict[str, Any]) -> None:
    train = recs[recs["stage"] == "train"]
    evals = recs[recs["stage"] == "eval"]
    per_seed: dict[int, dict[str, Any]] = {}
    for part, keys in ((train, _TRAIN_KEYS), (evals, _EVAL_KEYS)):
        for _, rec in part.iterrows():
            d = per_seed.setdefault(int(rec["seed"]), {})
            for key, col in keys.items():
                if key in rec and present(rec[key]):
                    d[col] = rec[key]
    for col in dict.fromkeys([*_TRAIN_KEYS.values(), *_EVAL_KEYS.values()]):
        if col in _ROUGE_COLUMNS and not any(col in d for d in per_seed.values()):
            continue  # summarization's columns only where there are summaries
        mean, std = _mean_std([d.get(col) for d in per_seed.values()])
        row[col] = mean
        if col in WITH_STD:
            row[f"{col}_std"] = std
    seeds = sorted(per_seed)
    row["seeds"] = " ".join(str(s) for s in seeds) if seeds else None
    row["n_seeds"] = len(seeds)
    row["n_eval"] = len({int(s) for s in _column_values(evals, "seed")})
    row["schedule"] = unique_join(_column_values(train, "schedule"))
    row["precision"] = unique_join(_column_values(train, "precision"))
    # the recipe keys that may differ between rows (the tuned peak rate; the post-norm variants' norms)
    row["peak_lr"] = unique_join(_column_values(train, "schedule_config.lr"))
    row["normalize_before"] = _first(recs, "config.normalize_before")
    row["dropout"] = _first(recs, "config.dropout")
    if len(train):
        row["status"], row["status_reason"] = row_status(train, evals)
    else:
        row["status"], row["status_reason"] = None, None
    for key in ("beam", "length_penalty"):  # the decoding every evaluation used (distinct values joined)
        row[key] = unique_join(_column_values(evals, key))
    for key, col in _STRING_KEYS.items():
        if key in evals.columns and not present(row.get(col)):
            row[col] = unique_join(evals[key], sep="; ")


def _env_columns(recs: pd.DataFrame, row: dict[str, Any]) -> None:
    for key in ("torch", "python", "git_commit", "hostname"):
        row[key] = unique_join(_column_values(recs, f"env.{key}"))
    created = [c for c in _column_values(recs, "created") if present(c)]
    row["created"] = max(created) if created else None


def _compress_rows(recs: pd.DataFrame, base: dict[str, Any]) -> list[dict[str, Any]]:
    comp = recs[recs["stage"] == "compress"]
    if comp.empty:
        return []
    static = {k: base.get(k) for k in [*ID_COLUMNS, *COUNT_COLUMNS] if k in base}
    static.update({k: v for k, v in base.items() if k.startswith("macs_")})
    static.update(
        {
            k: base.get(k)
            for k in (
                "status",
                "status_reason",
                "schedule",
                "precision",
                "train_tokens",
                "beam",
                "torch",
                "python",
                "device_model",
                "git_commit",
                "hostname",
            )
        }
    )
    rows = []
    for tag, part in comp.groupby("compression", sort=True):
        row = dict(static, compression=str(tag))
        per_seed: dict[int, dict[str, Any]] = {}
        strings: dict[str, list[Any]] = {}
        for _, rec in part.iterrows():
            d = per_seed.setdefault(int(rec["seed"]), {})
            workload = rec.get("workload") if present(rec.get("workload")) else "forward"
            for key, value in rec.items():
                if key in _META_KEYS or key.startswith(_META_PREFIXES) or not present(value):
                    continue
                if key in _STRING_KEYS:
                    strings.setdefault(_STRING_KEYS[key], []).append(value)
                    continue
                if not _is_number(value):
                    continue
                if key in _COMPRESS_KEYS:
                    d[_COMPRESS_KEYS[key]] = value
                    continue
                m = re.match(r"^(p50|p90)_ms_(t\d+|cuda)$", key)
                if m:  # latency measured with the harness; its workload is the record's (forward unless said)
                    d[f"{workload}_{m.group(1)}_ms_{m.group(2)}"] = value
                    continue
                d[key] = value
                if key == "size_mb_disk":
                    d["model_size_mb"] = value
        cols = dict.fromkeys(c for d in per_seed.values() for c in d)
        for col in cols:
            mean, std = _mean_std([d.get(col) for d in per_seed.values()])
            row[col] = mean
            if col in WITH_STD:
                row[f"{col}_std"] = std
        for col, values in strings.items():
            row[col] = unique_join(values, sep="; ")
        seeds = sorted(per_seed)
        row["seeds"] = " ".join(str(s) for s in seeds)
        row["n_seeds"] = row["n_eval"] = len(seeds)
        created = [c for c in _column_values(part, "created") if present(c)]
        row["created"] = max(created) if created else None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ the table
def _pick_configs(records: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Keep, for each model, the records of its most recent configuration."""
    records = records.copy()
    records["config_hash"] = records["config_hash"].fillna("") if "config_hash" in records else ""
    stamp = pd.to_datetime(records["mtime"], unit="s", utc=True)
    if "created" in records.columns:
        created = pd.to_datetime(records["created"], utc=True, errors="coerce", format="ISO8601")
        records["_when"] = created.fillna(stamp)
    else:
        records["_when"] = stamp
    keep = []
    for model, part in records.groupby("model", sort=True):
        latest = part.groupby("config_hash")["_when"].max().sort_values()
        current = latest.index[-1]
        stale = [h for h in latest.index if h != current]
        if stale:
            notes.append(f"{model}: reporting config {current}; older runs under config(s) {', '.join(stale)} ignored")
        keep.append(part[part["config_hash"] == current])
    return pd.concat(keep).drop(columns="_when")


def _latency_sort_key(col: str) -> tuple:
    m = _LATENCY_RE.match(col)
    assert m is not None
    workload, stat, where, threads, extra = m.groups()
    return (where == "cuda", extra or "", workload, int(threads or 0), stat)


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Known columns in a fixed order (identity, counts, latency, memory, training, quality, provenance),
    then anything else in alphabetical order."""
    counters = sorted(
        (c for c in df.columns if c.startswith("macs_") and c not in COUNT_COLUMNS),
        key=lambda c: (COUNTER_ORDER.index(c[5:]) if c[5:] in COUNTER_ORDER else len(COUNTER_ORDER), c),
    )
    latency = sorted((c for c in df.columns if _LATENCY_RE.match(c)), key=_latency_sort_key)
    known = [
        *ID_COLUMNS,
        *STATUS_COLUMNS,
        *COUNT_COLUMNS,
        *counters,
        *latency,
        *MEMORY_COLUMNS,
        *TRAIN_COLUMNS,
        *QUALITY_COLUMNS,
        *ROUGE_COLUMNS,
        *META_COLUMNS,
    ]
    cols = [c for c in known if c in df.columns]
    cols += sorted(c for c in df.columns if c not in cols)
    return df[cols]


def current_records(results_dir: Path | str, notes: list[str] | None = None) -> pd.DataFrame:
    """The records the leaderboard reads: each model's current configuration only (older configurations are
    named in ``notes``). Raises BenchError when there are none."""
    records = load_records(results_dir)
    records = records[records["stage"].isin(("profile", "latency", "train", "eval", "compress"))]
    if records.empty:
        raise BenchError(f"no profile/latency/train/eval records under {Path(results_dir) / 'runs'}")
    return _pick_configs(records, notes if notes is not None else [])


def build_leaderboard(results_dir: Path | str) -> pd.DataFrame:
    """One row per model (its current configuration) plus one per compressed variant; see the module docstring
    for every column's convention; then the rows of the task's baselines (bench.report.baselines: status
    ``baseline``, never ranked) when ``<results_dir>/baselines/`` holds them. Raises BenchError when there are no
    records or one is bad."""
    notes: list[str] = []
    records = current_records(results_dir, notes)
    rows: list[dict[str, Any]] = []
    for _, recs in records.groupby("model", sort=True):
        row = _static_row(recs)
        _latency_columns(recs, row)
        _seed_metrics(recs, row)
        _env_columns(recs, row)
        rows.append(row)
        rows.extend(_compress_rows(recs, row))
    df = pd.DataFrame(rows)
    counters = [f"macs_{c}" for c in COUNTER_ORDER]  # a counter that failed keeps its (empty) column
    for col in ["macs_rel_budget", *counters, *ALWAYS_LATENCY, *MEMORY_COLUMNS, *TRAIN_COLUMNS, *QUALITY_COLUMNS,
                *META_COLUMNS, *STATUS_COLUMNS]:
        if col not in df.columns:
            df[col] = None
    df = order_columns(df).reset_index(drop=True)
    df = add_ratio_columns(df, results_dir, notes)
    df.attrs["notes"] = notes
    df.attrs["results_dir"] = str(results_dir)
    df.attrs["pairwise"] = pairwise_table(records, default_pairs(df, records))
    df.attrs["protocol"] = protocol_check(records, results_dir)
    return with_baselines(df, records, results_dir)

