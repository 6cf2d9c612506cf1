"""The tag that names a compression stage (its folder and its records): "fp32", "int8", "int8+prune0.30", ..."""

from __future__ import annotations


def human_tokens(n: int) -> str:
    """50000 -> '50k', 2500000 -> '2.5M', 1234 -> '1234'."""
    for unit, div in (("M", 10**6), ("k", 10**3)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def stage_tag(quantize: str | None, prune: float | None, scope: str = "global",
              finetune_tokens: int | None = None) -> str:
    """"fp32", "int8", "int8+prune0.30", "prune0.30-layer", "int8+prune0.30+ft50k", ...

    Args:
        quantize: "int8" or None.
        prune: the sparsity; None or 0: no pruning.
        scope: "global" or "layer" (tagged "-layer").
        finetune_tokens: tokens of fine-tuning after pruning (tagged "+ft50k"); None: none.
    """
    parts = [quantize] if quantize else []
    if prune:
        parts.append(f"prune{prune:.2f}" + ("-layer" if scope == "layer" else ""))
        if finetune_tokens:
            parts.append(f"ft{human_tokens(finetune_tokens)}")
    return "+".join(parts) or "fp32"
