"""Micro-benchmarks (pytest-benchmark) at the 100M models' shapes: 30 tokens, batch 1, 1 thread, eval.

Run with ``make benchmark`` (the default test run excludes the ``benchmark`` marker). Each group compares
every implementation path of one operation; each test first checks its path against the reference path, so
only correct paths are timed. Shapes: Transformer d=128 (8 heads), Lite d=200 (LSRA branches of 100
channels, 4 attention heads, 4 conv heads, kernels 3..31), Evolved Transformer d=112.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models import create_model
from models.layers.attention import IMPLS as ATTENTION_IMPLS
from models.layers.attention import MultiheadAttention, set_attention_impl
from models.layers.convolution import DepthwiseConv, DynamicConv, LightweightConv

T = 30  # tokens
CONV_C, CONV_H = 100, 4  # Lite d=200: the convolution branch's channels and heads

pytestmark = pytest.mark.benchmark


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.inference_mode():
        yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- attention
ATTN_SHAPES = {  # name: (d, heads)
    "transformer_d128_h8": (128, 8),
    "lite_branch_d100_h4": (100, 4),
    "evolved_d112_h16": (112, 16),
}


def _attention(d: int, heads: int, impl: str) -> MultiheadAttention:
    torch.manual_seed(0)
    return MultiheadAttention(d, heads, impl=impl).eval()


@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
@pytest.mark.parametrize("shape", list(ATTN_SHAPES))
def test_attention_self(benchmark, shape, impl):
    d, h = ATTN_SHAPES[shape]
    benchmark.group = f"attention self {shape}"
    x = torch.randn(1, T, d)
    attn = _attention(d, h, impl)
    torch.testing.assert_close(attn(x), _attention(d, h, "matmul")(x), atol=1e-5, rtol=1e-5)
    benchmark(attn, x)


@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
@pytest.mark.parametrize("shape", list(ATTN_SHAPES))
def test_attention_causal(benchmark, shape, impl):
    d, h = ATTN_SHAPES[shape]
    benchmark.group = f"attention causal {shape}"
    x = torch.randn(1, T, d)
    attn = _attention(d, h, impl)
    ref = _attention(d, h, "matmul")
    torch.testing.assert_close(attn(x, causal=True), ref(x, causal=True), atol=1e-5, rtol=1e-5)
    benchmark(lambda: attn(x, causal=True))


@pytest.mark.parametrize("shape", list(ATTN_SHAPES))
def test_attention_torch_mha(benchmark, shape):
    """PyTorch's own nn.MultiheadAttention (its eval fast path) at the same shape, for reference."""
    d, h = ATTN_SHAPES[shape]
    benchmark.group = f"attention self {shape}"
    mha = nn.MultiheadAttention(d, h, batch_first=True).eval()
    x = torch.randn(1, T, d)
    ours = _attention(d, h, "matmul")  # the same weights, on our reference path
    projections = (ours.q_proj, ours.k_proj, ours.v_proj)
    for proj, w, b in zip(projections, mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)):
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.out_proj.weight.copy_(mha.out_proj.weight)
    ours.out_proj.bias.copy_(mha.out_proj.bias)
    torch.testing.assert_close(mha(x, x, x, need_weights=False)[0], ours(x), atol=1e-5, rtol=1e-5)
    benchmark(lambda: mha(x, x, x, need_weights=False))


@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
@pytest.mark.parametrize("shape", list(ATTN_SHAPES))
def test_attention_incremental_step(benchmark, shape, impl):
    """One decoder step: 1 query against 29 cached keys/values plus its own."""
    d, h = ATTN_SHAPES[shape]
    benchmark.group = f"attention step {shape}"
    attn = _attention(d, h, impl)
    prefix, x = torch.randn(1, T - 1, d), torch.randn(1, 1, d)
    state: dict = {}
    attn(prefix, causal=True, state=state)
    cached = {k: dict(v) for k, v in state.items()}

    def step():
        s = {k: dict(v) for k, v in cached.items()}  # the same 29-key cache every call
        return attn(x, causal=True, state=s)

    torch.testing.assert_close(step(), attn(torch.cat([prefix, x], 1), causal=True)[:, -1:], atol=1e-5, rtol=1e-5)
    benchmark(step)


# ------------------------------------------------------------------------------------------- convolutions
CONV_IMPLS = {"lightweight": ("conv1d", "unfold", "band"), "dynamic": ("unfold", "band")}
KERNELS = (3, 7, 15, 31)


def _conv(kind: str, k: int, impl: str, causal: bool = False) -> nn.Module:
    torch.manual_seed(0)
    cls = LightweightConv if kind == "lightweight" else DynamicConv
    return cls(CONV_C, k, heads=CONV_H, causal=causal, impl=impl).eval()


@pytest.mark.parametrize("impl", CONV_IMPLS["lightweight"])
@pytest.mark.parametrize("k", KERNELS)
def test_lightweight_conv(benchmark, k, impl):
    benchmark.group = f"lightweight conv K={k}"
    x = torch.randn(1, T, CONV_C)
    conv = _conv("lightweight", k, impl)
    torch.testing.assert_close(conv(x), _conv("lightweight", k, "unfold")(x), atol=1e-5, rtol=1e-5)
    benchmark(conv, x)


@pytest.mark.parametrize("impl", CONV_IMPLS["dynamic"])
@pytest.mark.parametrize("k", KERNELS)
def test_dynamic_conv(benchmark, k, impl):
    benchmark.group = f"dynamic conv K={k}"
    x = torch.randn(1, T, CONV_C)
    conv = _conv("dynamic", k, impl)
    torch.testing.assert_close(conv(x), _conv("dynamic", k, "unfold")(x), atol=1e-5, rtol=1e-5)
    benchmark(conv, x)


@pytest.mark.parametrize("kind", list(CONV_IMPLS))
@pytest.mark.parametrize("k", (7, 31))
def test_conv_incremental_step(benchmark, kind, k):
    """One decoder step of a causal convolution (the O(K) window path every impl shares)."""
    benchmark.group = f"conv step K={k}"
    conv = _conv(kind, k, CONV_IMPLS[kind][-1], causal=True)
    x = torch.randn(1, T, CONV_C)
    state: dict = {}
    for t in range(T - 1):
        conv(x[:, t : t + 1], state=state)
    cached = dict(state)
    torch.testing.assert_close(conv(x[:, -1:], state=dict(cached)), conv(x)[:, -1:], atol=1e-5, rtol=1e-5)
    benchmark(lambda: conv(x[:, -1:], state=dict(cached)))


@pytest.mark.parametrize("kind", list(CONV_IMPLS))
@pytest.mark.parametrize("k", (7, 31))
def test_conv_causal_full(benchmark, kind, k):
    """The teacher-forced decoder's causal convolution with the model's default impl."""
    benchmark.group = f"conv causal K={k}"
    impl, ref = ("conv1d", "unfold") if kind == "lightweight" else ("unfold", "band")
    conv = _conv(kind, k, impl, causal=True)
    x = torch.randn(1, T, CONV_C)
    torch.testing.assert_close(conv(x), _conv(kind, k, ref, causal=True)(x), atol=1e-5, rtol=1e-5)
    benchmark(conv, x)


# ------------------------------------------------------------------------------------------- layers
FAMILIES = {  # name: (registered model, overrides at the 100M-like size)
    "transformer_d128": ("transformer", {"d_model": 128}),
    "lite_d200_dynamic": ("lite_transformer", {"d_model": 200}),
    "lite_d200_lightweight": ("lite_transformer", {"d_model": 200, "conv": "lightweight"}),
    "evolved_d112": ("evolved_transformer", {"d_model": 112}),
}


def _model(family: str) -> nn.Module:
    name, overrides = FAMILIES[family]
    torch.manual_seed(0)
    return create_model(name, **overrides).eval()


def _other_paths(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` on the other implementation paths: fused attention, band-matrix convolutions."""
    other = copy.deepcopy(layer)
    set_attention_impl(other, "sdpa")
    for m in other.modules():
        if isinstance(m, (DepthwiseConv, DynamicConv)):  # LightweightConv is a DepthwiseConv
            m.impl = "band"
    return other


@pytest.mark.parametrize("family", list(FAMILIES))
def test_encoder_layer(benchmark, family):
    benchmark.group = "encoder layer"
    model = _model(family)
    layer = model.encoder.layers[-1]  # Lite: the K=31 layer
    x = torch.randn(1, T, model.config.d_model)
    torch.testing.assert_close(layer(x, None), _other_paths(layer)(x, None), atol=1e-5, rtol=1e-5)
    benchmark(layer, x, None)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decoder_layer(benchmark, family):
    benchmark.group = "decoder layer (teacher forced)"
    model = _model(family)
    layer = model.decoder.layers[-1]
    d = model.config.d_model
    x, enc = torch.randn(1, T, d), torch.randn(1, T, d)
    full = layer(x, enc, None, None)
    torch.testing.assert_close(full, _other_paths(layer)(x, enc, None, None), atol=1e-5, rtol=1e-5)
    state: dict = {}  # teacher forcing equals decoding step by step
    steps = torch.cat([layer(x[:, t : t + 1], enc, None, state) for t in range(T)], dim=1)
    torch.testing.assert_close(full, steps, atol=1e-5, rtol=1e-5)
    benchmark(layer, x, enc, None, None)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decoder_layer_step(benchmark, family):
    benchmark.group = "decoder layer step"
    model = _model(family)
    layer = model.decoder.layers[-1]
    d = model.config.d_model
    x, enc = torch.randn(1, T, d), torch.randn(1, T, d)
    state: dict = {}
    for t in range(T - 1):
        layer(x[:, t : t + 1], enc, None, state)

    def fresh(s):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in s.items()}

    step = layer(x[:, -1:], enc, None, fresh(state))
    torch.testing.assert_close(step, layer(x, enc, None, None)[:, -1:], atol=1e-5, rtol=1e-5)
    benchmark(lambda: layer(x[:, -1:], enc, None, fresh(state)))
