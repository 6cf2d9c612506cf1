"""The encoder-decoder scaffold every family plugs its layers into, with greedy and beam-search decoding.

Conventions (fairseq's): ``prev_output_tokens`` starts with BOS; logits are (B, T, V); padding is
``cfg.pad_id``. A family provides layer factories:
    encoder layer:  layer(x (B,S,d), padding_mask (B,S) | None) -> (B,S,d)
    decoder layer:  layer(x (B,T,d), enc (B,S,d) | None, enc_padding_mask, state: dict | None) -> (B,T,d)
With ``state`` the decoder layer sees only the newest position and reads/writes its caches in ``state``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .layers.common import OutputProjection, TokenEmbedding

LayerFactory = Callable[[int], nn.Module]


class EncoderOut(NamedTuple):
    out: Tensor  # (B, S, d)
    padding_mask: Tensor | None  # (B, S), True at padding; None when there is none


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor | None:
    mask = tokens.eq(pad_id)
    return mask if bool(mask.any()) else None


def next_token(logits: Tensor, cfg: ModelConfig) -> Tensor:
    """Greedy choice: the argmax over every id but BOS and padding, which are never generated."""
    banned = torch.zeros(logits.size(-1), dtype=torch.bool, device=logits.device)
    banned[[cfg.bos_id, cfg.pad_id]] = True
    return logits.masked_fill(banned, float("-inf")).argmax(-1)


def reorder_state(state: dict, order: Tensor) -> None:
    """Reorder every cached tensor along the batch dimension (beam search)."""
    for key, value in state.items():
        if isinstance(value, dict):
            reorder_state(value, order)
        elif isinstance(value, Tensor):
            state[key] = value.index_select(0, order)


class _Stack(nn.Module):
    """Embedding -> layers -> optional final LayerNorm (pre-norm stacks end with one)."""

    def __init__(self, embed: TokenEmbedding, layers: list[nn.Module], d: int, final_norm: bool) -> None:
        super().__init__()
        self.embed = embed
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d) if final_norm else None


class EncoderDecoder(nn.Module):
    """Encoder-decoder translation model: ``model(src_tokens, prev_output_tokens) -> logits``."""

    def __init__(
        self,
        cfg: ModelConfig,
        encoder_layer: LayerFactory,
        decoder_layer: LayerFactory,
        final_norm: bool,
    ) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        src_embed = TokenEmbedding(cfg.vocab_size, d, cfg.pad_id, cfg.max_positions, cfg.dropout)
        if cfg.share_embeddings:  # WMT-style: one joint vocabulary, source = target = output embedding
            tgt_embed = TokenEmbedding(cfg.vocab_size, d, cfg.pad_id, cfg.max_positions, cfg.dropout)
            tgt_embed.embed = src_embed.embed
            self.output = OutputProjection(d, cfg.vocab_size, tied_to=src_embed.embed)
        else:  # IWSLT-style: separate vocabularies, untied output projection
            tgt_embed = TokenEmbedding(cfg.target_vocab, d, cfg.pad_id, cfg.max_positions, cfg.dropout)
            self.output = OutputProjection(d, cfg.target_vocab)
        self.encoder = _Stack(src_embed, [encoder_layer(i) for i in range(cfg.encoder_layers)], d, final_norm)
        self.decoder = _Stack(tgt_embed, [decoder_layer(i) for i in range(cfg.decoder_layers)], d, final_norm)

    # ------------------------------------------------------------------ passes
    def encode(self, src_tokens: Tensor, find_padding: bool = True) -> EncoderOut:
        """``find_padding=False``: the caller vouches that ``src_tokens`` hold no padding (the latency
        workloads draw no special ids), so no mask is looked for. That skips :func:`padding_mask`'s
        data-dependent branch, which whole-graph capture (torch.compile fullgraph, ONNX export) cannot trace;
        on input without padding the result is the same."""
        mask = padding_mask(src_tokens, self.config.pad_id) if find_padding else None
        x = self.encoder.embed(src_tokens)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        if self.encoder.norm is not None:
            x = self.encoder.norm(x)
        if mask is not None:
            x = x.masked_fill(mask[..., None], 0.0)
        return EncoderOut(x, mask)

    def decode_features(self, prev_output_tokens: Tensor, enc: EncoderOut, state: dict | None = None) -> Tensor:
        """Decoder hidden states (B, T, d); with ``state``, only the newest position (B, 1, d)."""
        x = self.decoder.embed(prev_output_tokens, last_only=state is not None)
        for layer in self.decoder.layers:
            x = layer(x, enc.out, enc.padding_mask, state)
        if self.decoder.norm is not None:
            x = self.decoder.norm(x)
        return x

    def decode(self, prev_output_tokens: Tensor, enc: EncoderOut, state: dict | None = None) -> Tensor:
        return self.output(self.decode_features(prev_output_tokens, enc, state))

    def forward(self, src_tokens: Tensor, prev_output_tokens: Tensor) -> Tensor:
        return self.decode(prev_output_tokens, self.encode(src_tokens))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        src_tokens: Tensor,
        max_len: int,
        beam: int = 1,
        length_penalty: float = 1.0,
        early_stop: bool = True,
    ) -> Tensor:
        """Output ids (B, <= max_len) without BOS; a finished hypothesis ends with EOS, then padding.

        ``beam=1`` decodes greedily; ``early_stop=False`` (greedy only) always runs ``max_len`` steps, the
        "translate" latency workload. Beam scores are summed log-probabilities divided by length**penalty.
        """
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        enc = self.encode(src_tokens)
        if beam == 1:
            return self._greedy(enc, src_tokens.size(0), max_len, early_stop)
        return self._beam_search(enc, src_tokens.size(0), max_len, beam, length_penalty)

    def _greedy(self, enc: EncoderOut, batch: int, max_len: int, early_stop: bool = True) -> Tensor:
        cfg = self.config
        tokens = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=enc.out.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
        state: dict = {}
        for _ in range(max_len):
            nxt = next_token(self.decode(tokens, enc, state)[:, -1], cfg).masked_fill(finished, cfg.pad_id)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            finished |= nxt.eq(cfg.eos_id)
            if early_stop and bool(finished.all()):
                break
        return tokens[:, 1:]

    def _beam_search(self, enc: EncoderOut, batch: int, max_len: int, beam: int, length_penalty: float) -> Tensor:
        cfg = self.config
        k, device = beam, enc.out.device
        expand = torch.arange(batch, device=device).repeat_interleave(k)
        enc = EncoderOut(
            enc.out.index_select(0, expand),
            None if enc.padding_mask is None else enc.padding_mask.index_select(0, expand),
        )
        tokens = torch.full((batch * k, 1), cfg.bos_id, dtype=torch.long, device=device)
        scores = torch.zeros(batch, k, device=device)
        scores[:, 1:] = float("-inf")  # start from one live beam per sentence
        finalized: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        done = [False] * batch
        state: dict = {}

        def finalize(b: int, row: int, score: float, eos: bool) -> None:
            hyp = tokens[row, 1:].tolist() + ([cfg.eos_id] if eos else [])
            finalized[b].append((score / (len(hyp) ** length_penalty), hyp))

        for _step in range(max_len):
            lprobs = F.log_softmax(self.decode(tokens, enc, state)[:, -1].float(), dim=-1)  # (B*k, V)
            lprobs[:, cfg.pad_id] = float("-inf")
            lprobs[:, cfg.bos_id] = float("-inf")
            V = lprobs.size(-1)
            cand = (scores.unsqueeze(-1) + lprobs.view(batch, k, V)).view(batch, k * V)
            top_s, top_i = cand.topk(min(2 * k, k * V), dim=1)
            new_scores = torch.full((batch, k), float("-inf"), device=device)
            src_beam = torch.zeros(batch, k, dtype=torch.long, device=device)
            new_tok = torch.full((batch, k), cfg.pad_id, dtype=torch.long, device=device)
            for b in range(batch):
                if done[b]:
                    continue
                j = 0
                for s, i in zip(top_s[b].tolist(), top_i[b].tolist()):
                    if s == float("-inf"):
                        break
                    bi, tok = divmod(i, V)
                    if tok == cfg.eos_id:
                        finalize(b, b * k + bi, s, eos=True)
                        if len(finalized[b]) >= k:
                            done[b] = True
                            break
                    else:
                        new_scores[b, j], src_beam[b, j], new_tok[b, j] = s, bi, tok
                        j += 1
                        if j == k:
                            break
            if all(done):
                break
            order = (torch.arange(batch, device=device)[:, None] * k + src_beam).view(-1)
            tokens = torch.cat([tokens.index_select(0, order), new_tok.view(-1, 1)], dim=1)
            reorder_state(state, order)
            scores = new_scores
        else:  # max_len reached: live beams become hypotheses without EOS
            for b in range(batch):
                if not done[b]:
                    for j in range(k):
                        if scores[b, j] > float("-inf"):
                            finalize(b, b * k + j, float(scores[b, j]), eos=False)

        best = [max(f, key=lambda h: h[0])[1] if f else [] for f in finalized]
        out = torch.full((batch, max(1, max(len(h) for h in best))), cfg.pad_id, dtype=torch.long, device=device)
        for b, hyp in enumerate(best):
            out[b, : len(hyp)] = torch.tensor(hyp, dtype=torch.long, device=device)
        return out
