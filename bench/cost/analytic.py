"""Hand-written MAC formulas for each family: the independent reference the counters are checked against,
and the fast model the budget solver searches with.

Paper convention (docs/protocol.md): batch 1, N_src = N_tgt = 30, one teacher-forced pass. Counted: every Linear
(weights only, no bias), Q K^T and A V, convolutions (depthwise: N*C*K), the dynamic-kernel predictor, the
encoder-decoder K/V projections of the source. Not counted: embeddings, positions, LayerNorm, softmax, GLU,
other element-wise work, and (for ``macs``) the output projection; ``macs_with_output`` adds N_tgt*d*V.

These formulas are written from the papers' descriptions (docs/models.md), not from the model
code, so that a wiring mistake in either shows up as a disagreement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import ModelConfig

SRC_TOKENS = 30
TGT_TOKENS = 30


@dataclass(frozen=True)
class Protocol:
    """How MACs are counted: the paper's convention unless stated otherwise."""

    batch: int = 1
    src_tokens: int = SRC_TOKENS
    tgt_tokens: int = TGT_TOKENS

    def describe(self) -> str:
        return (
            f"MACs at batch {self.batch}, {self.src_tokens} source + {self.tgt_tokens} target tokens, one teacher-"
            "forced pass; embeddings, output projection, norms, softmax and element-wise ops not counted"
        )


def attention(t: int, s: int, d: int, kdim: int | None = None) -> int:
    """q and out projections on t queries, k and v on s keys, then Q K^T and A V (t*s*d each).

    Args:
        t: query positions.
        s: key positions.
        d: the attention's width (the q and out projections are d x d).
        kdim: the width the keys and values are projected from; None: ``d``.
    """
    kdim = kdim or d
    return 2 * t * d * d + 2 * s * kdim * d + 2 * t * s * d


def ffn(t: int, d: int, f: int) -> int:
    """A feed-forward block: d -> f -> d on t positions.

    Args:
        t: positions.
        d: the model width.
        f: the hidden width.
    """
    return 2 * t * d * f


def transformer(cfg: Any, n_src: int, n_tgt: int) -> int:
    """The Transformer's encoder (translation only) and decoder, output projection not counted.

    Args:
        cfg: the model's config (task, d_model, ffn_dim, layer counts).
        n_src: source tokens.
        n_tgt: target tokens.
    """
    d, f = cfg.d_model, cfg.ffn_dim
    enc = cfg.encoder_layers * (attention(n_src, n_src, d) + ffn(n_src, d, f)) if cfg.task == "mt" else 0
    cross = attention(n_tgt, n_src, d) if cfg.task == "mt" else 0
    dec = cfg.decoder_layers * (attention(n_tgt, n_tgt, d) + cross + ffn(n_tgt, d, f))
    return enc + dec


def lsra(t: int, cfg: Any, k: int) -> int:
    """Attention of width c = d/2 on half the channels, the convolution branch on the other half.

    Args:
        t: positions.
        cfg: the Lite Transformer's config (d_model, glu, conv, conv_heads).
        k: the convolution's kernel size.
    """
    c = cfg.d_model // 2
    branch_in = t * c * (2 * c if cfg.glu else c)
    predictor = t * c * cfg.conv_heads * k if cfg.conv == "dynamic" else 0
    return attention(t, t, c) + branch_in + predictor + t * c * k + t * c * c


def lite_transformer(cfg: Any, n_src: int, n_tgt: int) -> int:
    """The Lite Transformer's encoder (translation only) and decoder of LSRA blocks, output projection not counted.

    Args:
        cfg: the model's config (task, d_model, ffn_dim, kernel_sizes, layer counts).
        n_src: source tokens.
        n_tgt: target tokens.
    """
    d, f, ks = cfg.d_model, cfg.ffn_dim, cfg.kernel_sizes
    enc = 0
    if cfg.task == "mt":
        enc = sum(lsra(n_src, cfg, ks[i]) + ffn(n_src, d, f) for i in range(cfg.encoder_layers))
    cross = attention(n_tgt, n_src, d) if cfg.task == "mt" else 0
    dec = sum(lsra(n_tgt, cfg, ks[i]) + cross + ffn(n_tgt, d, f) for i in range(cfg.decoder_layers))
    return enc + dec


def separable(t: int, c_in: int, c_out: int, k: int) -> int:
    """A depthwise-separable convolution: depthwise (k taps per channel), then pointwise.

    Args:
        t: positions.
        c_in: input channels.
        c_out: output channels.
        k: the kernel size.
    """
    return t * c_in * k + t * c_in * c_out


def evolved_transformer(cfg: Any, n_src: int, n_tgt: int) -> int:
    """The Evolved Transformer's encoder (translation only) and decoder cells, output projection not counted.

    Args:
        cfg: the model's config (task, d_model, ffn_dim, layer counts).
        n_src: source tokens.
        n_tgt: target tokens.
    """
    d, f = cfg.d_model, cfg.ffn_dim
    enc = 0
    if cfg.task == "mt":
        t = n_src
        cell = (
            2 * t * d * d  # GLU: value and gate
            + t * d * 4 * d  # left branch Linear(d, 4d)
            + t * d * (d // 2) * 3  # right branch Conv1d(d -> d/2, k=3)
            + separable(t, 4 * d, d // 2, 9)
            + attention(t, t, d)
            + ffn(t, d, f)
        )
        enc = cfg.encoder_layers * cell
    t = n_tgt
    cross = attention(t, n_src, d) if cfg.task == "mt" else 0
    cell = (
        attention(t, t, d)  # 16-head self-attention ...
        + cross  # ... beside 8-head encoder-decoder attention
        + separable(t, d, 2 * d, 11)
        + separable(t, d, d // 2, 7)
        + separable(t, 2 * d, d, 7)
        + attention(t, t, d)
        + cross
        + ffn(t, d, f)
    )
    return enc + cfg.decoder_layers * cell


FORMULAS: dict[str, Callable[[Any, int, int], int]] = {
    "transformer": transformer,
    "lite_transformer": lite_transformer,
    "evolved_transformer": evolved_transformer,
}


def has_formula(cfg: ModelConfig) -> bool:
    return type(cfg).family in FORMULAS


def analytic_macs(cfg: ModelConfig, protocol: Protocol = Protocol()) -> dict[str, int]:
    """``macs`` and ``macs_with_output`` of ``cfg`` by the hand formula (LMs: ``tgt_tokens`` tokens)."""
    family = type(cfg).family
    if family not in FORMULAS:
        raise KeyError(f"no analytic MAC formula for family {family!r}")
    macs = protocol.batch * FORMULAS[family](cfg, protocol.src_tokens, protocol.tgt_tokens)
    output = protocol.batch * protocol.tgt_tokens * cfg.d_model * cfg.target_vocab
    return {"macs": macs, "macs_with_output": macs + output}
