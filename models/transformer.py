"""Vanilla Transformer (Vaswani et al., 2017), the paper's baseline.

Layer: x = LN(x + MHA(x)); x = LN(x + FFN(x)) (post-norm, translation); pre-norm x = x + f(LN(x)) with a
final LayerNorm for the language model. FFN = Linear(d, ffn) -> ReLU -> Linear(ffn, d), ffn = 4d unless set.
The paper's WMT baselines: d=128 (~87M MACs), 256 (~339M), 320 (~527M); base d=512, ffn=2048.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .config import ModelConfig
from .layers.attention import MultiheadAttention
from .layers.common import FeedForward, Residual
from .lm import DecoderOnly
from .registry import register_model
from .seq2seq import EncoderDecoder


@dataclass
class TransformerConfig(ModelConfig):
    d_model: int = 128
    heads: int = 8
    family = "transformer"

    @classmethod
    def task_defaults(cls, task: str) -> dict[str, Any]:
        return {"encoder_layers": 0, "decoder_layers": 12} if task == "lm" else {}

    def resolve(self) -> None:
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.d_model
        if self.normalize_before is None:
            self.normalize_before = self.task == "lm"

    def check(self) -> None:
        self.require_divisible("d_model", self.d_model, self.heads, "self-attention heads")
        self.require_divisible("d_model", self.d_model, self.encoder_attention_heads, "encoder-decoder heads")


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiheadAttention(d, cfg.heads, dropout=cfg.attention_dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, "relu", cfg.activation_dropout)
        self.res_attn = Residual(d, cfg.normalize_before, cfg.dropout)
        self.res_ffn = Residual(d, cfg.normalize_before, cfg.dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        x = self.res_attn(x, lambda h: self.self_attn(h, key_padding_mask=padding_mask))
        return self.res_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig, cross_attention: bool = True) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiheadAttention(d, cfg.heads, dropout=cfg.attention_dropout)
        self.res_self = Residual(d, cfg.normalize_before, cfg.dropout)
        self.cross_attn = None
        if cross_attention:
            self.cross_attn = MultiheadAttention(d, cfg.encoder_attention_heads, dropout=cfg.attention_dropout)
            self.res_cross = Residual(d, cfg.normalize_before, cfg.dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, "relu", cfg.activation_dropout)
        self.res_ffn = Residual(d, cfg.normalize_before, cfg.dropout)

    def forward(self, x: Tensor, enc: Tensor | None, enc_mask: Tensor | None, state: dict | None) -> Tensor:
        x = self.res_self(x, lambda h: self.self_attn(h, causal=True, state=state))
        if self.cross_attn is not None:
            x = self.res_cross(
                x, lambda h: self.cross_attn(h, enc, key_padding_mask=enc_mask, state=state, static_kv=True)
            )
        return self.res_ffn(x, self.ffn)


@register_model(TransformerConfig, "Vanilla Transformer (post-norm MT, pre-norm LM), ffn = 4d")
def transformer(cfg: TransformerConfig) -> nn.Module:
    if cfg.task == "lm":
        return DecoderOnly(
            cfg, lambda i: DecoderLayer(cfg, cross_attention=False), final_norm=bool(cfg.normalize_before)
        )
    return EncoderDecoder(
        cfg,
        lambda i: EncoderLayer(cfg),
        lambda i: DecoderLayer(cfg),
        final_norm=bool(cfg.normalize_before),
    )
