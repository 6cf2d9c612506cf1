"""Multi-head attention with explicit matmuls and an incremental key/value cache.

Both attention products (Q K^T and A V) are plain ``torch.matmul`` calls so that every MAC counter sees
them; there is no fused kernel that would hide work from the counters.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Linear

_ids = itertools.count()


class MultiheadAttention(nn.Module):
    """Scaled dot-product attention over ``heads`` heads of width ``embed_dim // heads``.

    Shapes: query (B, T, C), key/value (B, S, kdim). ``key_padding_mask`` (B, S) is True at padding.
    ``state`` is an incremental-decoding cache (a dict shared by the whole model): self-attention appends
    this step's keys/values; encoder-decoder attention (``static_kv=True``) projects the encoder output once.
    """

    def __init__(self, embed_dim: int, heads: int, kdim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by heads={heads}")
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
        q = self._split(self.q_proj(query) * self.scaling)
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
