"""Small building blocks shared by every family: initialised Linear, FFN, sinusoidal positions, embeddings."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def Linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """nn.Linear with Xavier-uniform weights and zero bias (fairseq's initialisation)."""
    m = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(m.weight)
    if bias:
        nn.init.zeros_(m.bias)
    return m


ACTIVATIONS = {"relu": F.relu, "swish": F.silu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Linear(d, ffn) -> activation -> dropout -> Linear(ffn, d). ET's variant adds a LayerNorm(ffn)."""

    def __init__(
        self, d: int, ffn: int, activation: str = "relu", dropout: float = 0.0, inner_norm: bool = False
    ) -> None:
        super().__init__()
        self.fc1, self.fc2 = Linear(d, ffn), Linear(ffn, d)
        self.act = ACTIVATIONS[activation]
        self.norm = nn.LayerNorm(ffn) if inner_norm else None
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(x))
        if self.norm is not None:
            x = self.norm(x)
        x = F.dropout(x, self.dropout, self.training)
        return self.fc2(x)


def sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """(num_positions + 1, dim) table; row 0 (padding) is zero. Sines then cosines, as in fairseq/tensor2tensor."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / max(half - 1, 1)))
    pos = torch.arange(1, num_positions + 1, dtype=torch.float)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(pos), torch.cos(pos)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return torch.cat([torch.zeros(1, dim), table], dim=0)


def make_positions(tokens: Tensor, pad_id: int) -> Tensor:
    """1-based positions counting only real tokens, 0 at padding, so left or right padding moves nothing."""
    mask = tokens.ne(pad_id)
    return torch.cumsum(mask, dim=1) * mask


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(d) + sinusoidal positions + dropout. Init N(0, d^-0.5), pad row 0."""

    def __init__(self, vocab: int, d: int, pad_id: int, max_positions: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, mean=0.0, std=d**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.register_buffer("positions", sinusoidal_table(max_positions, d), persistent=False)
        self.scale, self.pad_id, self.max_positions, self.dropout = (
            math.sqrt(d),
            pad_id,
            max_positions,
            dropout,
        )

    def forward(self, tokens: Tensor, last_only: bool = False) -> Tensor:
        """tokens (B, T) -> (B, T, d); with ``last_only`` only the last position (incremental decoding)."""
        pos = make_positions(tokens, self.pad_id)
        if tokens.size(1) > self.max_positions:
            raise ValueError(f"sequence of {tokens.size(1)} tokens exceeds max_positions={self.max_positions}")
        if last_only:
            tokens, pos = tokens[:, -1:], pos[:, -1:]
        x = self.scale * self.embed(tokens) + self.positions[pos]
        return F.dropout(x, self.dropout, self.training)


class Residual(nn.Module):
    """x + dropout(f(x)) with the LayerNorm before f (pre-norm) or after the add (post-norm)."""

    def __init__(self, d: int, normalize_before: bool, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.normalize_before, self.dropout = normalize_before, dropout

    def forward(self, x: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
        h = f(self.norm(x)) if self.normalize_before else f(x)
        x = x + F.dropout(h, self.dropout, self.training)
        return x if self.normalize_before else self.norm(x)


class OutputProjection(nn.Module):
    """Features (B, T, d) -> vocabulary logits (B, T, V), no bias. ``tied_to`` shares an embedding's weight
    (WMT-style); otherwise the projection owns its weight, initialised N(0, d^-0.5)."""

    def __init__(self, d: int, vocab: int, tied_to: nn.Embedding | None = None) -> None:
        super().__init__()
        if tied_to is not None:
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab, d).normal_(0.0, d**-0.5))
        self.tied = tied_to is not None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)
