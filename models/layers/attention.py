"""Multi-head attention with an incremental key/value cache, on two interchangeable paths (``impl``):

- "matmul": both attention products (Q K^T and A V) are plain ``torch.matmul`` calls, so
  every MAC counter sees them; no fused kernel hides work from the counters.
- "sdpa": ``F.scaled_dot_product_attention``, PyTorch's fused kernel. On CPU it dispatches to
  ``aten::_scaled_dot_product_flash_attention_for_cpu``, which ``torch.utils.flop_counter`` has no formula
  for (it counts 0 unless one is added). Equal to "matmul" up to float rounding (< 1e-5).
- "auto" (the default): "sdpa" for a single query (an incremental decoding step), "matmul" otherwise: the
  faster path for each shape at this project's sizes (1 thread, 30 tokens; tests/bench/test_microbench.py:
  a step is 10-15% faster fused, a 30-token pass 0-25% slower); the MAC-convention pass stays on matmuls.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Linear

_ids = itertools.count()
IMPLS = ("matmul", "sdpa", "auto")


class MultiheadAttention(nn.Module):
    """Scaled dot-product attention over ``heads`` heads of width ``embed_dim // heads``.

    Shapes: query (B, T, C), key/value (B, S, kdim). ``key_padding_mask`` (B, S) is True at padding.
    ``state`` is an incremental-decoding cache (a dict shared by the whole model): self-attention appends
    this step's keys/values; encoder-decoder attention (``static_kv=True``) projects the encoder output once.
    """

    def __init__(
        self, embed_dim: int, heads: int, kdim: int | None = None, dropout: float = 0.0, impl: str = "auto"
    ) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by heads={heads}")
        if impl not in IMPLS:
            raise ValueError(f"unknown attention impl {impl!r}; valid: {', '.join(IMPLS)}")
        self.impl = impl
        kdim = kdim or embed_dim
        self.embed_dim, self.heads, self.head_dim = embed_dim, heads, embed_dim // heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(kdim, embed_dim)
        self.v_proj = Linear(kdim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)
        self.cache_key = f"attn{next(_ids)}"

    def _split(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, H, T, hd)
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        state: dict | None = None,
        static_kv: bool = False,
    ) -> Tensor:
        key = query if key is None else key
        B, T, C = query.shape
        fused = self.impl == "sdpa" or (self.impl == "auto" and T == 1)
        q = self._split(self.q_proj(query) if fused else self.q_proj(query) * self.scaling)
        cache = None if state is None else state.setdefault(self.cache_key, {})
        if cache is not None and static_kv and "k" in cache:
            k, v = cache["k"], cache["v"]  # encoder output projected at the first step
        else:
            k, v = self._split(self.k_proj(key)), self._split(self.v_proj(key))
            if cache is not None and not static_kv and "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)  # (B, H, S_prev + T, hd)
                v = torch.cat([cache["v"], v], dim=2)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        S = k.size(2)
        if fused:
            out = self._sdpa(q, k, v, key_padding_mask, causal and T > 1)
            return self.out_proj(out.transpose(1, 2).reshape(B, T, C))
        scores = torch.matmul(q, k.transpose(-2, -1))  # (B, H, T, S)
        if causal and T > 1:
            # query i (absolute position S - T + i) sees keys j <= S - T + i
            future = torch.ones(T, S, dtype=torch.bool, device=query.device).triu(S - T + 1)
            scores = scores.masked_fill(future, float("-inf"))
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        attn = F.softmax(scores.float(), dim=-1).type_as(scores)
        attn = F.dropout(attn, self.dropout, self.training)
        out = torch.matmul(attn, v)  # (B, H, T, hd)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.out_proj(out)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, causal: bool) -> Tensor:
        """The fused path: (B, H, T, hd) attention output. Boolean masks are True where attention is allowed."""
        T, S = q.size(2), k.size(2)
        mask = None
        if causal and (S != T or key_padding_mask is not None):
            # query i (absolute position S - T + i) sees keys j <= S - T + i (is_causal aligns top-left)
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
            mask = keep if mask is None else mask & keep
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )


def set_attention_impl(module: nn.Module, impl: str) -> int:
    """Switch every MultiheadAttention inside ``module`` to ``impl``; returns how many were switched."""
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; valid: {', '.join(IMPLS)}")
    n = 0
    for m in module.modules():
        if isinstance(m, MultiheadAttention):
            m.impl, n = impl, n + 1
    return n
