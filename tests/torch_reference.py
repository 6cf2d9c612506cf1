"""Our ``transformer`` against ``torch.nn.Transformer`` of the same shape: a reference for the tests (and the
README's ratio), not part of the suite's measurements."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.latency import MIN_RUNS, MIN_TIME_S, MIN_WARMUP, SRC_LEN, TGT_LEN, Measurement, make_workload
from bench.latency.machine import check_threads, device_name, num_threads


# ============================================================================================ nn.Transformer
class TorchTransformerReference(nn.Module):
    """``torch.nn.Transformer`` (post-norm, ReLU, batch-first) with the same token embedding (scaled, plus a
    sinusoid-sized position table) and the same tied output projection as our ``transformer``: the same
    work, done by PyTorch's own modules (including their fused eval-mode fast paths)."""

    def __init__(self, d_model: int, heads: int, layers: int, ffn_dim: int, vocab: int, pad_id: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.register_buffer("positions", torch.randn(1024, d_model) * 0.1, persistent=False)
        self.transformer = nn.Transformer(d_model, heads, layers, layers, ffn_dim, dropout=0.0, batch_first=True)
        self.scale = d_model**0.5

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        xs = self.embed(src) * self.scale + self.positions[1 : src.size(1) + 1]
        xt = self.embed(tgt) * self.scale + self.positions[1 : tgt.size(1) + 1]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        y = self.transformer(xs, xt, tgt_mask=mask, tgt_is_causal=True)
        return F.linear(y, self.embed.weight)


def compare_with_torch_transformer(
    d_model: int = 512,
    threads: int | str | None = 1,
    *,
    ffn_dim: int | None = None,
    layers: int = 6,
    heads: int = 8,
    vocab: int = 8000,
    warmup: int = MIN_WARMUP,
    min_runs: int = MIN_RUNS,
    min_time_s: float = MIN_TIME_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Our ``transformer`` against ``torch.nn.Transformer`` of the same shape, forward workload (30 + 30
    tokens, batch 1, eval, inference mode), timed in one run with the calls interleaved (ours, theirs,
    theirs, ours, ...) so drift hits both equally. ``ratio`` = our p50 / their p50 (< 1: ours is faster);
    ``paired_ratio`` = the median of the per-round ratios, robust to drift."""
    from models import create_model

    n_threads = check_threads(threads)
    ffn = ffn_dim or 4 * d_model
    torch.manual_seed(seed)
    ours = create_model(
        "transformer",
        d_model=d_model,
        ffn_dim=ffn,
        heads=heads,
        encoder_layers=layers,
        decoder_layers=layers,
        vocab_size=vocab,
        dropout=0.0,
    ).eval()
    ref = TorchTransformerReference(d_model, heads, layers, ffn, vocab).eval()
    ours_fn = make_workload(ours, "forward", seed=seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (1, SRC_LEN), generator=g)
    tgt = torch.randint(4, vocab, (1, TGT_LEN), generator=g)

    def ref_fn() -> Tensor:
        with torch.inference_mode():
            return ref(src, tgt)

    a: list[float] = []
    b: list[float] = []
    with num_threads(n_threads) as applied:
        for _ in range(warmup):
            ours_fn()
            ref_fn()
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            i = 0
            while len(a) < min_runs or sum(a) + sum(b) < 2e3 * min_time_s:
                order = ((ours_fn, a), (ref_fn, b)) if i % 2 == 0 else ((ref_fn, b), (ours_fn, a))
                for fn, out in order:
                    t0 = time.perf_counter_ns()
                    fn()
                    out.append((time.perf_counter_ns() - t0) / 1e6)
                i += 1
        finally:
            if gc_was_enabled:
                gc.enable()
    mo = Measurement(a, label=f"ours d={d_model}", min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)
    mt = Measurement(b, label=f"nn.Transformer d={d_model}", min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)
    return {
        "d_model": d_model,
        "ffn_dim": ffn,
        "layers": layers,
        "heads": heads,
        "threads": applied,
        "device_name": device_name("cpu"),
        "torch_version": torch.__version__,
        "ours": mo.stats(),
        "torch": mt.stats(),
        "ratio": mo.p50_ms / mt.p50_ms,
        "paired_ratio": float(np.median(np.asarray(a) / np.asarray(b))),
    }

