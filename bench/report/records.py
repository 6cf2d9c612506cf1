"""Run records -> one flat table: reading and validating what the pipeline's stages wrote.

Layout and schema: bench.records.schema (one JSON file per stage, ``<results_dir>/runs/<model>-<config_hash>/``),
read with its reader, so records of every version load alike.

``load_records`` returns one row per record file; nested dicts are flattened with dotted keys
(``macs_by_counter.fvcore``, ``test.bleu``, ``env.torch``), lists (raw latency samples, training curves) stay
Python lists in their cell. Missing stages are normal (a model whose training has not run yet still has its
profile and latency rows). A record that does not parse or lacks what its stage needs raises ``BenchError``
with one line naming the file. Hidden files and ``*.tmp`` files (atomic writes in flight) are not records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.records.schema import STAGES, is_record_file, read_record


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


def load_records(results_dir: Path | str, allow_empty: bool = False) -> pd.DataFrame:
    """Every run record of a model under ``results_dir/runs`` as one row (dotted keys), plus ``run`` (the run
    folder's name) and ``path`` (the file, relative to ``results_dir``). The paired-latency records of several
    models (``runs/_compare-*/``) are not rows of this table: bench.report.latency_trust reads them.

    Records without ``config_hash`` take it from their folder name ``<model>-<config_hash>``. Raises
    BenchError when the folder does not exist, when a record is bad, or (unless ``allow_empty``) when there
    are no records.
    """
    results_dir = Path(results_dir)
    runs = results_dir / "runs"
    if not results_dir.is_dir():
        raise BenchError(f"no results folder {results_dir} (run `make bench` for this budget first)")
    files = sorted(p for p in runs.glob("*/*.json") if is_record_file(p) and not p.parent.name.startswith("_"))
    files = files if runs.is_dir() else []
    if not files and not allow_empty:
        raise BenchError(f"no run records under {runs} (run `make bench` for this budget first)")
    rows = []
    for path in files:
        rec = read_record(path).to_dict()
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
