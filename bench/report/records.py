"""Run records -> one flat table: reading and validating what the pipeline's stages wrote.

Layout (one JSON file per stage, written atomically by the pipeline):
``<results_dir>/runs/<model>-<config_hash>/<stage>[-<detail>].json``, with stages ``profile``, ``latency``
(``latency-<device>-t<threads>-<workload>[-<dtype>].json``), ``train`` (``train-s<seed>.json``), ``eval``
(``eval-s<seed>.json``) and ``compress`` (``compress-s<seed>-<tag>.json``). Every record carries the common
keys ``stage``, ``model``, ``family``, ``budget``, ``config_hash``, ``config``, ``env``, ``command``, ``created``.

``load_records`` returns one row per record file; nested dicts are flattened with dotted keys
(``macs_by_counter.fvcore``, ``test.bleu``, ``env.torch``), lists (raw latency samples, training curves) stay
Python lists in their cell. Missing stages are normal (a model whose training has not run yet still has its
profile and latency rows). A record that does not parse or lacks what its stage needs raises ``BenchError``
with one line naming the file. Hidden files and ``*.tmp`` files (atomic writes in flight) are not records.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError

STAGES = ("profile", "latency", "train", "eval", "compress")

# keys a record of each stage must have (besides "stage" and "model"), and whether they must be numbers
_REQUIRED: dict[str, dict[str, bool]] = {
    "profile": {"params": True, "macs": True},
    "latency": {"workload": False, "device": False, "threads": True, "p50_ms": True},
    "train": {"seed": True},
    "eval": {"seed": True},
    "compress": {"seed": True, "compression": False},
}

# other names the same quantity goes by (bench.latency's Measurement.to_dict -> the pipeline's record)
_ALIASES = {"device_name": "device_model", "peak_cuda_allocated_mb": "peak_gpu_mb"}


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (dicts flattened, lists kept)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_record_file(path: Path) -> bool:
    """A ``*.json`` file that is not hidden and not a temporary file of an atomic write."""
    name = path.name
    return path.is_file() and name.endswith(".json") and not name.startswith(".") and ".tmp" not in name


def read_record(path: Path) -> dict[str, Any]:
    """One record file -> its dict, validated for its stage. Raises BenchError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: cannot read run record ({exc})") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(
            f"{path}: not a valid JSON run record ({exc.msg} at line {exc.lineno}); delete it and re-run its stage"
        ) from None
    if not isinstance(rec, dict):
        raise BenchError(f"{path}: run record must be a JSON object, got {type(rec).__name__}")
    for key in ("stage", "model"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise BenchError(f"{path}: run record has no {key!r} (a non-empty string)")
    stage = rec["stage"]
    if stage in STAGES and not path.name.startswith(stage):
        raise BenchError(f"{path}: record says stage {stage!r} but the file name says otherwise")
    for old, new in _ALIASES.items():
        if old in rec and new not in rec:
            rec[new] = rec[old]
    for key, numeric in _REQUIRED.get(stage, {}).items():
        value = rec.get(key)
        if value is None:
            raise BenchError(f"{path}: {stage} record has no {key!r}")
        if numeric and (not _is_number(value) or (isinstance(value, float) and math.isnan(value))):
            raise BenchError(f"{path}: {stage} record's {key!r} is {value!r}, expected a number")
    if stage == "latency":
        rec["device"] = str(rec["device"]).split(":")[0]  # "cuda:0" -> "cuda"
        rec.setdefault("dtype", "fp32")
    return rec


def load_records(results_dir: Path | str, allow_empty: bool = False) -> pd.DataFrame:
    """Every run record under ``results_dir/runs`` as one row (dotted keys), plus ``run`` (the run folder's
    name) and ``path`` (the file, relative to ``results_dir``).

    Records without ``config_hash`` take it from their folder name ``<model>-<config_hash>``. Raises
    BenchError when the folder does not exist, when a record is bad, or (unless ``allow_empty``) when there
    are no records.
    """
    results_dir = Path(results_dir)
    runs = results_dir / "runs"
    if not results_dir.is_dir():
        raise BenchError(f"no results folder {results_dir} (run `make bench` for this budget first)")
    files = sorted(p for p in runs.glob("*/*.json") if is_record_file(p)) if runs.is_dir() else []
    if not files and not allow_empty:
        raise BenchError(f"no run records under {runs} (run `make bench` for this budget first)")
    rows = []
    for path in files:
        rec = read_record(path)
        folder = path.parent.name
        if not rec.get("config_hash") and folder.startswith(rec["model"] + "-"):
            rec["config_hash"] = folder[len(rec["model"]) + 1 :]
        row = flatten(rec)
        row["run"] = folder
        row["path"] = os.path.relpath(path, results_dir)
        row["mtime"] = path.stat().st_mtime
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["stage", "model", "config_hash", "run", "path", "mtime"])
    order = {s: i for i, s in enumerate(STAGES)}
    df["_order"] = df["stage"].map(order).fillna(len(STAGES))
    df = df.sort_values(["run", "_order", "path"], kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)
