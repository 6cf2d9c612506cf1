"""Every implementation path at the sizes the benchmarked models really use, in the default run: the Lite
convolutions at kernels 15 and 31 on the convolution branch's 100 (d=200) and 104 (d=208) channels, with
sequences both longer and shorter than the kernel (an incremental decoder meets a kernel longer than what it
has seen at each of its first K-1 steps); attention at the Evolved Transformer's 16 heads (d=112) and the
Lite attention branch's 4 heads (100 channels). The references are written here from the definitions:
a sum of shifted inputs for the convolutions, an einsum softmax for attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.layers.attention import IMPLS as ATTENTION_IMPLS
from models.layers.attention import MultiheadAttention
from models.layers.convolution import DynamicConv, LightweightConv

CONV_IMPLS = {"lightweight": ("conv1d", "unfold", "band"), "dynamic": ("unfold", "band")}
HEADS = 4  # convolution heads of every Lite configuration
TOL = dict(atol=1e-5, rtol=1e-5)


def shifted_sum(x: torch.Tensor, kernel: torch.Tensor, pad_l: int) -> torch.Tensor:
    """y[b, t, c] = sum_k kernel[b, t, c, k] * x[b, t + k - pad_l, c], zero outside the sequence."""
    B, T, C = x.shape
    y = torch.zeros_like(x)
    for k in range(kernel.shape[-1]):
        s = k - pad_l  # this tap reads x[t + s]
        lo, hi = max(0, -s), min(T, T - s)
        if lo < hi:
            y[:, lo:hi] += kernel[:, lo:hi, :, k] * x[:, lo + s : hi + s]
    return y


def reference_kernel(conv, x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, K) taps of ``conv`` at every position: softmax over the taps, channel c in head c // (C/H)."""
    B, T, C = x.shape
    K = conv.kernel_size
    if isinstance(conv, DynamicConv):  # predicted from x_t alone
        logits = (x @ conv.weight_linear.weight.detach().T).view(B, T, HEADS, K)
    else:
        logits = conv.weight.detach()[None, None].expand(B, T, HEADS, K)
    return torch.softmax(logits, -1).repeat_interleave(C // HEADS, dim=2)


def make_conv(kind: str, C: int, K: int, causal: bool, impl: str):
    torch.manual_seed(K + C)
    cls = LightweightConv if kind == "lightweight" else DynamicConv
    conv = cls(C, K, heads=HEADS, causal=causal, impl=impl).eval()
    if kind == "lightweight":  # a kernel far from uniform, so that a misplaced tap shows
        with torch.no_grad():
            conv.weight.normal_(0, 2)
    return conv


@pytest.mark.parametrize("kind", list(CONV_IMPLS))
@pytest.mark.parametrize("C", [100, 104])
@pytest.mark.parametrize("K", [15, 31])
@pytest.mark.parametrize("T", [6, 20, 40])  # shorter than both kernels, between them, longer than both
@pytest.mark.parametrize("causal", [False, True])
def test_convolution_paths_at_lite_sizes(kind, C, K, T, causal):
    x = torch.randn(2, T, C, generator=torch.Generator().manual_seed(T))
    with torch.inference_mode():
        for impl in CONV_IMPLS[kind]:
            conv = make_conv(kind, C, K, causal, impl)
            ref = shifted_sum(x, reference_kernel(conv, x), K - 1 if causal else K // 2)
            torch.testing.assert_close(conv(x), ref, **TOL, msg=lambda m, i=impl: f"{kind} {impl}: {m}")


@pytest.mark.parametrize("kind", list(CONV_IMPLS))
@pytest.mark.parametrize("C", [100, 104])
@pytest.mark.parametrize("K", [15, 31])
def test_incremental_convolution_steps_with_a_kernel_longer_than_the_prefix(kind, C, K):
    """Decoding step by step from the first token: the early steps see fewer than K inputs."""
    T = 40
    x = torch.randn(2, T, C, generator=torch.Generator().manual_seed(K))
    with torch.inference_mode():
        for impl in CONV_IMPLS[kind]:
            conv = make_conv(kind, C, K, True, impl)
            ref = shifted_sum(x, reference_kernel(conv, x), K - 1)
            state: dict = {}
            steps = torch.cat([conv(x[:, t : t + 1], state=state) for t in range(T)], dim=1)
            torch.testing.assert_close(steps, ref, **TOL)
            torch.testing.assert_close(conv(x[:, :5]), ref[:, :5], **TOL)  # a 5-token prefix, causal: same


# ------------------------------------------------------------------------------------------- attention
ATTN_SHAPES = {"evolved_d112_h16": (112, 16), "lite_branch_d100_h4": (100, 4)}


def einsum_attention(attn: MultiheadAttention, q_in, kv_in, mask=None, causal=False, offset=0):
    """softmax(Q K^T / sqrt(hd)) V per head; ``offset``: absolute position of the first query."""
    B, T, C = q_in.shape
    S, H = kv_in.size(1), attn.heads
    hd = C // H
    q = attn.q_proj(q_in).view(B, T, H, hd)
    k = attn.k_proj(kv_in).view(B, S, H, hd)
    v = attn.v_proj(kv_in).view(B, S, H, hd)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
    if causal:
        pos = torch.arange(T)[:, None] + offset
        scores = scores.masked_fill(torch.arange(S)[None, :] > pos, -math.inf)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], -math.inf)
    out = torch.einsum("bhts,bshd->bthd", F.softmax(scores, -1), v).reshape(B, T, C)
    return attn.out_proj(out)


@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
@pytest.mark.parametrize("shape", list(ATTN_SHAPES))
def test_attention_paths_at_evolved_and_lite_shapes(shape, impl):
    d, heads = ATTN_SHAPES[shape]
    torch.manual_seed(heads)
    attn = MultiheadAttention(d, heads, impl=impl).eval()
    g = torch.Generator().manual_seed(d)
    x, enc = torch.randn(2, 30, d, generator=g), torch.randn(2, 23, d, generator=g)
    pad = torch.zeros(2, 23, dtype=torch.bool)
    pad[1, 17:] = True
    with torch.inference_mode():
        torch.testing.assert_close(attn(x), einsum_attention(attn, x, x), **TOL)
        torch.testing.assert_close(attn(x, causal=True), einsum_attention(attn, x, x, causal=True), **TOL)
        torch.testing.assert_close(attn(x, enc, key_padding_mask=pad), einsum_attention(attn, x, enc, pad), **TOL)
        self_state, cross_state = {}, {}
        for t in range(30):  # incremental decoding: self-attention over the prefix, cross over the source
            q = x[:, t : t + 1]
            got = attn(q, causal=True, state=self_state)
            torch.testing.assert_close(got, einsum_attention(attn, q, x[:, : t + 1], causal=True, offset=t), **TOL)
            got = attn(q, enc, key_padding_mask=pad, state=cross_state, static_kv=True)
            torch.testing.assert_close(got, einsum_attention(attn, q, enc, pad), **TOL)
