"""Evolved Transformer (So, Liang, Le, ICML 2019), ET-style cells as tensor2tensor builds them.

Pre-norm everywhere: each sub-block is x = x + dropout(f(LN(x))), and each stack ends with a LayerNorm.
Depth: 3 encoder cells and 4 decoder cells (a cell is about twice as deep as a Transformer layer).

Encoder cell:
  1. GLU            Linear(d, d)(h) * sigmoid(Linear(d, d)(h))
  2. branches       left Linear(d, 4d) + ReLU; right Conv1d(d -> d/2, k=3) + ReLU, zero-padded to 4d; sum;
                    LayerNorm(4d); separable conv (depthwise k=9 over 4d, pointwise 4d -> d/2); pad to d
  3. self-attention (8 heads)
  4. FFN            Linear(d, 4d) + ReLU -> Linear(4d, d)
Decoder cell:
  1. h = LN(x); x = x + SelfAttn_16heads(h) + EncDecAttn_8heads(h)   (in parallel on the same input)
  2. causal branches: left sepconv k=11 d -> 2d + ReLU; right sepconv k=7 d -> d/2 + ReLU, padded to 2d;
                    sum; LayerNorm(2d); causal sepconv k=7, 2d -> d
  3. causal self-attention (8 heads)
  4. encoder-decoder attention (8 heads)
  5. FFN            Linear(d, 4d) + Swish -> LayerNorm(4d) -> Linear(4d, d)
The language model uses the decoder cell without its two encoder-decoder attentions (6 cells by default,
the depth of a 12-layer Transformer LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigError, ModelConfig
from .layers.attention import MultiheadAttention
from .layers.common import FeedForward, Linear
from .layers.convolution import SeparableConv
from .lm import DecoderOnly
from .registry import register_model
from .seq2seq import EncoderDecoder


@dataclass
class EvolvedConfig(ModelConfig):
    d_model: int = 112
    encoder_layers: int = 3  # cells
    decoder_layers: int = 4  # cells
    heads: int = 8
    parallel_heads: int = 16  # the decoder's first self-attention, beside encoder-decoder attention
    family = "evolved_transformer"

    @classmethod
    def task_defaults(cls, task: str) -> dict[str, Any]:
        return {"encoder_layers": 0, "decoder_layers": 6} if task == "lm" else {}

    def resolve(self) -> None:
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.d_model
        if self.normalize_before is None:
            self.normalize_before = True

    def check(self) -> None:
        if not self.normalize_before:
            raise ConfigError("the Evolved Transformer is pre-norm by construction: normalize_before must be true")
        self.require_divisible("d_model", self.d_model, 2, "the branches use d/2 channels")
        self.require_divisible("d_model", self.d_model, self.heads, "self-attention heads")
        self.require_divisible("d_model", self.d_model, self.parallel_heads, "the 16-head decoder attention")
        self.require_divisible("d_model", self.d_model, self.encoder_attention_heads, "encoder-decoder heads")


def _pad_channels(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.size(-1)))


class ETEncoderCell(nn.Module):
    def __init__(self, cfg: EvolvedConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.dropout = cfg.dropout
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))
        self.glu_value, self.glu_gate = Linear(d, d), Linear(d, d)
        self.left = Linear(d, 4 * d)
        self.right = nn.Conv1d(d, d // 2, kernel_size=3, padding=1)
        self.branch_norm = nn.LayerNorm(4 * d)
        self.sep = SeparableConv(4 * d, d // 2, kernel_size=9)
        self.attn = MultiheadAttention(d, cfg.heads, dropout=cfg.attention_dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, "relu", cfg.activation_dropout)

    def _add(self, x: Tensor, h: Tensor) -> Tensor:
        return x + F.dropout(h, self.dropout, self.training)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        d = x.size(-1)
        h = self.norms[0](x)
        x = self._add(x, self.glu_value(h) * torch.sigmoid(self.glu_gate(h)))
        h = self.norms[1](x)
        if padding_mask is not None:  # padded steps must not reach real ones through the convolutions
            h = h.masked_fill(padding_mask[..., None], 0.0)
        left = F.relu(self.left(h))
        right = F.relu(self.right(h.transpose(1, 2)).transpose(1, 2))  # (B, S, d/2)
        s = self.branch_norm(left + _pad_channels(right, 4 * d))
        x = self._add(x, _pad_channels(self.sep(s, padding_mask), d))
        x = self._add(x, self.attn(self.norms[2](x), key_padding_mask=padding_mask))
        return self._add(x, self.ffn(self.norms[3](x)))


class ETDecoderCell(nn.Module):
    def __init__(self, cfg: EvolvedConfig, cross_attention: bool = True) -> None:
        super().__init__()
        d = cfg.d_model
        self.dropout = cfg.dropout
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(5 if cross_attention else 4))
        self.parallel_attn = MultiheadAttention(d, cfg.parallel_heads, dropout=cfg.attention_dropout)
        self.left = SeparableConv(d, 2 * d, kernel_size=11, causal=True)
        self.right = SeparableConv(d, d // 2, kernel_size=7, causal=True)
        self.branch_norm = nn.LayerNorm(2 * d)
        self.sep = SeparableConv(2 * d, d, kernel_size=7, causal=True)
        self.self_attn = MultiheadAttention(d, cfg.heads, dropout=cfg.attention_dropout)
        self.parallel_cross = self.cross_attn = None
        if cross_attention:
            self.parallel_cross = MultiheadAttention(d, cfg.encoder_attention_heads, dropout=cfg.attention_dropout)
            self.cross_attn = MultiheadAttention(d, cfg.encoder_attention_heads, dropout=cfg.attention_dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, "swish", cfg.activation_dropout, inner_norm=True)

    def _add(self, x: Tensor, h: Tensor) -> Tensor:
        return x + F.dropout(h, self.dropout, self.training)

    def forward(self, x: Tensor, enc: Tensor | None, enc_mask: Tensor | None, state: dict | None) -> Tensor:
        d = x.size(-1)
        norms = iter(self.norms)
        h = next(norms)(x)
        x = self._add(x, self.parallel_attn(h, causal=True, state=state))
        if self.parallel_cross is not None:
            x = self._add(x, self.parallel_cross(h, enc, key_padding_mask=enc_mask, state=state, static_kv=True))
        h = next(norms)(x)
        left = F.relu(self.left(h, state=state))
        right = F.relu(self.right(h, state=state))
        s = self.branch_norm(left + _pad_channels(right, 2 * d))
        x = self._add(x, self.sep(s, state=state))
        x = self._add(x, self.self_attn(next(norms)(x), causal=True, state=state))
        if self.cross_attn is not None:
            x = self._add(
                x,
                self.cross_attn(next(norms)(x), enc, key_padding_mask=enc_mask, state=state, static_kv=True),
            )
        return self._add(x, self.ffn(next(norms)(x)))


@register_model(EvolvedConfig, "Evolved-Transformer-style cells (GLU, conv branches, 16-head parallel attention)")
def evolved_transformer(cfg: EvolvedConfig) -> nn.Module:
    if cfg.task == "lm":
        return DecoderOnly(cfg, lambda i: ETDecoderCell(cfg, cross_attention=False), final_norm=True)
    return EncoderDecoder(cfg, lambda i: ETEncoderCell(cfg), lambda i: ETDecoderCell(cfg), final_norm=True)


__all__ = ["EvolvedConfig", "evolved_transformer"]
