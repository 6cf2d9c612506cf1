"""A family defined outside ``models/`` for the test of the one-file promise (tests/bench/test_new_family.py):
FNet-style translation (Lee-Thorp et al., 2022): the encoder mixes tokens with a parameter-free 2-D Fourier
transform (the real part of an FFT over the hidden and the sequence dimensions) instead of self-attention; the
decoder is the Transformer's. Registered for translation only, with no hand MAC formula. It joins a process's
registry by ``LITEBENCH_MODELS=tests.bench.probe_family`` (every child process of the suite inherits it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models import register_model
from models.layers.common import FeedForward, Residual
from models.seq2seq import EncoderDecoder
from models.transformer import DecoderLayer, TransformerConfig

NAME = "fourier_probe"


@dataclass
class FourierConfig(TransformerConfig):
    family = NAME


class FourierMixing(nn.Module):
    """Re(FFT_seq(FFT_hidden(x))), padding set to 0 first so that it mixes no pad into a real position."""

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return torch.fft.fft2(x.float(), dim=(-2, -1)).real.to(x.dtype)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: FourierConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.mix = FourierMixing()
        self.ffn = FeedForward(d, cfg.ffn_dim, "relu", cfg.activation_dropout)
        self.res_mix = Residual(d, cfg.normalize_before, cfg.dropout)
        self.res_ffn = Residual(d, cfg.normalize_before, cfg.dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        x = self.res_mix(x, lambda h: self.mix(h, padding_mask))
        return self.res_ffn(x, self.ffn)


@register_model(FourierConfig, "FNet-style probe: Fourier token mixing in the encoder (tests only)", tasks=("mt",))
def fourier_probe(cfg: FourierConfig) -> nn.Module:
    return EncoderDecoder(cfg, lambda i: EncoderLayer(cfg), lambda i: DecoderLayer(cfg),
                          final_norm=bool(cfg.normalize_before))
