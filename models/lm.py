"""Decoder-only language models: every family's decoder stack without encoder-decoder attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .layers.common import OutputProjection, TokenEmbedding
from .seq2seq import LayerFactory, _Stack, next_token


class DecoderOnly(nn.Module):
    """Decoder-only language model: ``model(tokens) -> logits`` (B, T, V), tied input/output embedding
    unless ``share_embeddings=False``."""

    def __init__(self, cfg: ModelConfig, decoder_layer: LayerFactory, final_norm: bool) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        embed = TokenEmbedding(cfg.vocab_size, d, cfg.pad_id, cfg.max_positions, cfg.dropout)
        self.decoder = _Stack(embed, [decoder_layer(i) for i in range(cfg.decoder_layers)], d, final_norm)
        tied = embed.embed if cfg.share_embeddings else None
        self.output = OutputProjection(d, cfg.vocab_size, tied_to=tied)

    def decode_features(self, tokens: Tensor, state: dict | None = None) -> Tensor:
        x = self.decoder.embed(tokens, last_only=state is not None)
        for layer in self.decoder.layers:
            x = layer(x, None, None, state)
        return self.decoder.norm(x) if self.decoder.norm is not None else x

    def decode(self, tokens: Tensor, state: dict | None = None) -> Tensor:
        return self.output(self.decode_features(tokens, state))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decode(tokens)

    @torch.no_grad()
    def generate(self, tokens: Tensor, max_len: int, early_stop: bool = True) -> Tensor:
        """Greedy continuation of ``tokens`` (B, T): the (B, <= max_len) new ids, EOS then padding."""
        cfg = self.config
        finished = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
        state: dict = {}
        for t in range(1, tokens.size(1)):  # prefill the caches one position at a time
            self.decode(tokens[:, :t], state)
        new = []
        for _ in range(max_len):
            nxt = next_token(self.decode(tokens, state)[:, -1], cfg).masked_fill(finished, cfg.pad_id)
            new.append(nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            finished |= nxt.eq(cfg.eos_id)
            if early_stop and bool(finished.all()):
                break
        return torch.stack(new, dim=1)
