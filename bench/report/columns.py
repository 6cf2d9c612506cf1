"""Small column helpers the report's tables and figures share: whether a cell holds a value, the distinct
values of a column joined, and the suffix that names a latency setting in a column."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def present(value: Any) -> bool:
    """Whether a cell holds a value: not None, NaN or the empty string."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value)


def unique_join(values: Iterable[Any], sep: str = ", ") -> str | None:
    """The distinct present values in order of first appearance, joined (4.0 shown as 4); None if none."""
    seen: list[str] = []
    for v in values:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)  # 4.0 -> "4" (a column with gaps holds floats)
        if present(v) and str(v) not in seen:
            seen.append(str(v))
    return sep.join(seen) if seen else None


def latency_suffix(rec: Mapping[str, Any]) -> str:
    """The column suffix of a latency record's setting: t1, t2, cuda, t1_int8, ..."""
    device = str(rec.get("device", "cpu"))
    suffix = f"t{int(rec['threads'])}" if device == "cpu" else device
    dtype = rec.get("dtype") or "fp32"
    return suffix if dtype == "fp32" else f"{suffix}_{dtype}"
