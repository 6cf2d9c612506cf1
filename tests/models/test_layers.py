"""Layers against naive references: convolutions as explicit loops, the LSRA channel split, attention."""

from __future__ import annotations

import math

import pytest
import torch

from models.config import ConfigError
from models.layers.attention import MultiheadAttention
from models.layers.convolution import DepthwiseConv, DynamicConv, LightweightConv
from models.lite import LSRA, LiteConfig


def naive_conv(x: torch.Tensor, kernel: torch.Tensor, pad_l: int) -> torch.Tensor:
    """y[b,t,c] = sum_k kernel[b,t,c,k] * x[b, t + k - pad_l, c], zero outside the sequence."""
    B, T, C = x.shape
    K = kernel.shape[-1]
    y = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            for k in range(K):
                s = t + k - pad_l
                if 0 <= s < T:
                    y[b, t] += kernel[b, t, :, k] * x[b, s]
    return y


def per_channel(head_kernel: torch.Tensor, C: int) -> torch.Tensor:
    """(..., H, K) -> (..., C, K): channel c uses head c // (C / H)."""
    H = head_kernel.shape[-2]
    return head_kernel.repeat_interleave(C // H, dim=-2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["conv1d", "unfold", "band"])
@pytest.mark.parametrize("K", [1, 4, 7])
def test_lightweight_conv_equals_loop(causal, impl, K):
    torch.manual_seed(0)
    B, T, C, H = 2, 9, 8, 4
    conv = LightweightConv(C, K, heads=H, causal=causal, impl=impl).eval()
    x = torch.randn(B, T, C)
    w = torch.softmax(conv.weight.detach(), dim=-1)  # (H, K), normalised over taps
    kernel = per_channel(w, C)[None, None].expand(B, T, C, K)
    ref = naive_conv(x, kernel, K - 1 if causal else K // 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", ["unfold", "band"])
@pytest.mark.parametrize("K", [1, 3, 6])
def test_dynamic_conv_equals_loop(causal, impl, K):
    torch.manual_seed(1)
    B, T, C, H = 2, 8, 8, 4
    conv = DynamicConv(C, K, heads=H, causal=causal, impl=impl).eval()
    x = torch.randn(B, T, C)
    logits = (x @ conv.weight_linear.weight.detach().T).view(B, T, H, K)  # predicted from x_t alone
    kernel = per_channel(torch.softmax(logits, dim=-1), C)
    ref = naive_conv(x, kernel, K - 1 if causal else K // 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["conv1d", "unfold", "band"])
def test_depthwise_conv_equals_loop(impl):
    torch.manual_seed(2)
    conv = DepthwiseConv(6, 5, causal=False, impl=impl)
    x = torch.randn(2, 7, 6)
    kernel = conv.weight.detach()[None, None].expand(2, 7, 6, 5)
    torch.testing.assert_close(conv(x), naive_conv(x, kernel, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [LightweightConv, DynamicConv, DepthwiseConv])
def test_incremental_conv_steps_equal_full_pass(cls):
    torch.manual_seed(3)
    conv = (cls(8, 5, causal=True) if cls is DepthwiseConv else cls(8, 5, heads=4, causal=True)).eval()
    x = torch.randn(2, 10, 8)
    state: dict = {}
    steps = torch.cat([conv(x[:, t : t + 1], state=state) for t in range(10)], dim=1)
    torch.testing.assert_close(steps, conv(x), atol=1e-5, rtol=1e-5)


def test_dropconnect_acts_on_the_normalised_kernel_in_training_only():
    torch.manual_seed(4)
    conv = LightweightConv(8, 5, heads=4, weight_dropout=0.5)
    conv.train()
    k = conv.head_kernel()
    assert (k == 0).any()  # some taps dropped
    kept = k[k != 0]
    soft = torch.softmax(conv.weight, dim=-1)
    torch.testing.assert_close(kept, (soft * 2)[k != 0])  # inverted dropout scaling of the softmax
    conv.eval()
    torch.testing.assert_close(conv.head_kernel(), soft)


def test_padding_is_zeroed_before_the_convolution():
    torch.manual_seed(5)
    conv = LightweightConv(4, 3, heads=4).eval()
    x = torch.randn(1, 5, 4)
    mask = torch.tensor([[False, False, False, True, True]])
    y = conv(x, padding_mask=mask)
    torch.testing.assert_close(y[:, :3], conv(x[:, :3]))


def test_lsra_splits_channels_attention_first():
    torch.manual_seed(6)
    cfg = LiteConfig.create(d_model=16, kernel_sizes=[3] * 6)
    lsra = LSRA(cfg, kernel_size=3, causal=False).eval()
    x = torch.randn(2, 7, 16)
    out = lsra(x)
    torch.testing.assert_close(out[..., :8], lsra.attn(x[..., :8]))
    torch.testing.assert_close(out[..., 8:], lsra.conv(x[..., 8:], None, None))
    # the attention half never sees the convolution channels, and the reverse
    y = x.clone()
    y[..., 8:] += torch.randn(2, 7, 8)
    torch.testing.assert_close(lsra(y)[..., :8], out[..., :8])
    assert (lsra(y)[..., 8:] - out[..., 8:]).abs().max() > 1e-3
    z = x.clone()
    z[..., :8] += torch.randn(2, 7, 8)
    torch.testing.assert_close(lsra(z)[..., 8:], out[..., 8:])


def test_attention_equals_naive_softmax_formula():
    torch.manual_seed(7)
    attn = MultiheadAttention(12, 3).eval()
    q, kv = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    out = attn(q, kv, key_padding_mask=mask)
    Q = attn.q_proj(q).view(2, 4, 3, 4)
    K = attn.k_proj(kv).view(2, 6, 3, 4)
    V = attn.v_proj(kv).view(2, 6, 3, 4)
    ref = torch.zeros(2, 4, 3, 4)
    for b in range(2):
        for h in range(3):
            for i in range(4):
                s = torch.stack([Q[b, i, h] @ K[b, j, h] / math.sqrt(4) for j in range(6)])
                s = s.masked_fill(mask[b], -math.inf)
                ref[b, i, h] = torch.softmax(s, 0) @ V[b, :, h]
    torch.testing.assert_close(out, attn.out_proj(ref.reshape(2, 4, 12)), atol=1e-5, rtol=1e-5)


def test_unknown_impl_and_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match="valid: conv1d, unfold, band"):
        LightweightConv(8, 3, impl="fft")
    with pytest.raises(ValueError, match="unfold. or .band"):
        DynamicConv(8, 3, impl="conv1d")
    with pytest.raises(ConfigError, match="dynamic conv uses unfold or band"):
        LiteConfig.create(conv="dynamic", conv_impl="conv1d")
