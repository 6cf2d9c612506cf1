"""Lite Transformer (Wu, Liu, Lin, Lin, Han, ICLR 2020): Long-Short Range Attention (LSRA).

LSRA replaces self-attention in every encoder and decoder layer. The d channels are split by slicing:
channels [0, d/2) go to an attention branch (global context), [d/2, d) to a convolution branch (local
context); the two outputs are concatenated in that order, with no projection after the concat.

    attention branch:  MHA of width d/2, 4 heads (own q/k/v/out projections)
    conv branch:       Linear(c, 2c) + GLU (or Linear(c, c)) -> zero padding -> lightweight|dynamic conv
                       -> Linear(c, c), c = d/2; centred in the encoder, causal in the decoder

The FFN is "flattened" (ffn = d, not 4d), which is how Lite fits d=496 into a vanilla d=320's budget.
Paper configs (WMT, dynamic conv + GLU, 8 encoder-decoder heads): d = 200 / 408 / 496 with dropout
0.04 / 0.08 / 0.1 and attention/weight dropout 0.03 / 0.07 / 0.08. IWSLT: lightweight conv without GLU,
4 encoder-decoder heads, separate vocabularies, d = 160 / 240 / 320, dropout 0.2, weight dropout 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigError, ModelConfig
from .layers.attention import MultiheadAttention
from .layers.common import FeedForward, Linear, Residual
from .layers.convolution import DynamicConv, LightweightConv
from .lm import DecoderOnly
from .registry import register_model
from .seq2seq import EncoderDecoder

CONV_KINDS = ("lightweight", "dynamic")
CONV_IMPLS = ("auto", "conv1d", "unfold", "band")


@dataclass
class LiteConfig(ModelConfig):
    d_model: int = 200
    heads: int = 4  # attention-branch heads (width d/2)
    encoder_attention_heads: int = 8
    conv: str = "dynamic"
    glu: bool = True
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 15, 31, 31, 31])
    conv_heads: int = 4
    conv_impl: str = "auto"
    dropout: float = 0.04
    attention_dropout: float = 0.03
    weight_dropout: float = 0.03
    family = "lite_transformer"

    @classmethod
    def task_defaults(cls, task: str) -> dict[str, Any]:
        if task == "lm":  # the paper's LM: 12 decoder layers, pre-norm, dynamic conv + GLU
            return {
                "encoder_layers": 0,
                "decoder_layers": 12,
                "kernel_sizes": [15, 15, 31, 31, 31, 31] + [63] * 6,
            }
        return {}

    def resolve(self) -> None:
        if self.ffn_dim is None:
            self.ffn_dim = self.d_model  # flattened FFN
        if self.normalize_before is None:
            self.normalize_before = self.task == "lm"

    def check(self) -> None:
        if self.conv not in CONV_KINDS:
            raise ConfigError(f"conv={self.conv!r} is not valid; valid: {', '.join(CONV_KINDS)}")
        if self.conv_impl not in CONV_IMPLS:
            raise ConfigError(f"conv_impl={self.conv_impl!r} is not valid; valid: {', '.join(CONV_IMPLS)}")
        if self.conv == "dynamic" and self.conv_impl == "conv1d":
            raise ConfigError("conv_impl=conv1d needs a static kernel; dynamic conv uses unfold or band")
        self.require_divisible("d_model", self.d_model, 2, "the LSRA split halves the channels")
        half = self.d_model // 2
        self.require_divisible("d_model/2", half, self.heads, "attention-branch heads")
        self.require_divisible("d_model/2", half, self.conv_heads, "convolution heads")
        self.require_divisible("d_model", self.d_model, self.encoder_attention_heads, "encoder-decoder heads")
        layers = max(self.encoder_layers, self.decoder_layers)
        if len(self.kernel_sizes) < layers:
            raise ConfigError(f"kernel_sizes has {len(self.kernel_sizes)} entries; the stacks need {layers}")
        if min(self.kernel_sizes) < 1:
            raise ConfigError(f"kernel_sizes must be positive, got {self.kernel_sizes}")
        if not 0.0 <= self.weight_dropout < 1.0:
            raise ConfigError(f"weight_dropout must be in [0, 1), got {self.weight_dropout}")


def conv_path(cfg: LiteConfig, kernel_size: int) -> str:
    """The convolution's implementation. "auto" takes the fastest path the counters count honestly
    (tests/bench/test_microbench.py, 1 thread, 30 tokens): lightweight kernels run as an unfold + matmul up to
    K=15 and as a grouped conv1d beyond; dynamic kernels as unfold. The band-matrix path is faster still at
    these lengths, but it multiplies by zeros the counters would count, so "auto" never picks it."""
    if cfg.conv_impl != "auto":
        return cfg.conv_impl
    if cfg.conv == "dynamic":
        return "unfold"
    return "unfold" if kernel_size <= 15 else "conv1d"


class ConvBranch(nn.Module):
    """Linear (+GLU) -> zero the padded steps -> depthwise lightweight/dynamic conv over time -> Linear."""

    def __init__(self, cfg: LiteConfig, channels: int, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.glu = cfg.glu
        self.linear1 = Linear(channels, 2 * channels if cfg.glu else channels)
        conv_cls = DynamicConv if cfg.conv == "dynamic" else LightweightConv
        self.conv = conv_cls(
            channels,
            kernel_size,
            heads=cfg.conv_heads,
            causal=causal,
            weight_dropout=cfg.weight_dropout,
            impl=conv_path(cfg, kernel_size),
        )
        self.linear2 = Linear(channels, channels)

    def forward(self, x: Tensor, padding_mask: Tensor | None, state: dict | None) -> Tensor:
        x = self.linear1(x)
        if self.glu:
            x = F.glu(x, dim=-1)
        # the conv masks padded steps itself: after the Linear, not before, or its bias would leak in
        x = self.conv(x, padding_mask, state)
        return self.linear2(x)


class LSRA(nn.Module):
    """Long-Short Range Attention: channels [0, d/2) -> attention, [d/2, d) -> convolution, concatenated."""

    def __init__(self, cfg: LiteConfig, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.half, self.causal = cfg.d_model // 2, causal
        self.attn = MultiheadAttention(self.half, cfg.heads, dropout=cfg.attention_dropout)
        self.conv = ConvBranch(cfg, self.half, kernel_size, causal)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, state: dict | None = None) -> Tensor:
        global_ctx = self.attn(x[..., : self.half], key_padding_mask=padding_mask, causal=self.causal, state=state)
        local_ctx = self.conv(x[..., self.half :], padding_mask, state)
        return torch.cat([global_ctx, local_ctx], dim=-1)


class LiteEncoderLayer(nn.Module):
    def __init__(self, cfg: LiteConfig, kernel_size: int) -> None:
        super().__init__()
        self.lsra = LSRA(cfg, kernel_size, causal=False)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, "relu", cfg.activation_dropout)
        self.res_lsra = Residual(cfg.d_model, cfg.normalize_before, cfg.dropout)
        self.res_ffn = Residual(cfg.d_model, cfg.normalize_before, cfg.dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        x = self.res_lsra(x, lambda h: self.lsra(h, padding_mask))
        return self.res_ffn(x, self.ffn)


class LiteDecoderLayer(nn.Module):
    def __init__(self, cfg: LiteConfig, kernel_size: int, cross_attention: bool = True) -> None:
        super().__init__()
        d = cfg.d_model
        self.lsra = LSRA(cfg, kernel_size, causal=True)
        self.res_lsra = Residual(d, cfg.normalize_before, cfg.dropout)
        self.cross_attn = None
        if cross_attention:
            self.cross_attn = MultiheadAttention(d, cfg.encoder_attention_heads, dropout=cfg.attention_dropout)
            self.res_cross = Residual(d, cfg.normalize_before, cfg.dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, "relu", cfg.activation_dropout)
        self.res_ffn = Residual(d, cfg.normalize_before, cfg.dropout)

    def forward(self, x: Tensor, enc: Tensor | None, enc_mask: Tensor | None, state: dict | None) -> Tensor:
        x = self.res_lsra(x, lambda h: self.lsra(h, state=state))
        if self.cross_attn is not None:
            x = self.res_cross(
                x, lambda h: self.cross_attn(h, enc, key_padding_mask=enc_mask, state=state, static_kv=True)
            )
        return self.res_ffn(x, self.ffn)


@register_model(LiteConfig, "Lite Transformer: LSRA (attention || lightweight/dynamic conv), flattened FFN")
def lite_transformer(cfg: LiteConfig) -> nn.Module:
    ks = cfg.kernel_sizes
    if cfg.task == "lm":
        return DecoderOnly(
            cfg,
            lambda i: LiteDecoderLayer(cfg, ks[i], cross_attention=False),
            final_norm=bool(cfg.normalize_before),
        )
    return EncoderDecoder(
        cfg,
        lambda i: LiteEncoderLayer(cfg, ks[i]),
        lambda i: LiteDecoderLayer(cfg, ks[i]),
        final_norm=bool(cfg.normalize_before),
    )
