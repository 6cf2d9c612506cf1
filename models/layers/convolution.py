"""Depthwise, lightweight and dynamic convolutions over time (Wu et al., ICLR 2019), in plain PyTorch.

Layout: x (B, T, C). ``causal=True`` pads K-1 steps on the left (decoders); otherwise K//2 on the left and
the rest on the right (centred, encoders). Output position t sees inputs t - pad_l .. t - pad_l + K - 1.

Implementation paths (``impl``), all equal up to float rounding and all visible to the MAC counters:
- "conv1d": one grouped ``F.conv1d`` with the kernel expanded to (C, 1, K). Static kernels only.
- "unfold": a strided (B, T, C, K) view of the padded input, then a batched matmul with the kernel.
- "band":  the kernel expanded into a (T, T) band matrix per head, then a matmul. Counters see T*T*C MACs
           here (they count the zeros), so the models never use it; it exists for the micro-benchmarks.
Incremental decoding keeps the last K-1 inputs in ``state`` and computes one output per step in O(K).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Linear

_ids = itertools.count()
IMPLS = ("conv1d", "unfold", "band")


class _TimeConv(nn.Module):
    """Shared padding, masking and incremental state for depthwise convolutions over time."""

    def __init__(self, channels: int, kernel_size: int, causal: bool, impl: str) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"unknown convolution impl {impl!r}; valid: {', '.join(IMPLS)}")
        self.channels, self.kernel_size, self.causal, self.impl = channels, kernel_size, causal, impl
        self.pad_l = kernel_size - 1 if causal else kernel_size // 2
        self.cache_key = f"conv{next(_ids)}"

    def _pad(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T + K - 1, C)
        return F.pad(x, (0, 0, self.pad_l, self.kernel_size - 1 - self.pad_l))

    def _window(self, x: Tensor, state: dict) -> Tensor:
        """Incremental step: x (B, 1, C) -> the last K inputs (B, K, C), updating the buffer."""
        if not self.causal:
            raise RuntimeError("incremental decoding needs a causal convolution")
        buf = state.get(self.cache_key)
        if buf is None:
            buf = x.new_zeros(x.size(0), self.kernel_size - 1, x.size(2))
        window = torch.cat([buf, x], dim=1)
        state[self.cache_key] = window[:, 1:]
        return window


def _band(kernel: Tensor, T: int, pad_l: int) -> Tensor:
    """kernel (..., T, K) per output step -> band matrix (..., T, T) with M[t, t + k - pad_l] = kernel[t, k]."""
    K = kernel.size(-1)
    lead = kernel.shape[:-2]
    full = kernel.new_zeros(*lead, T, T + K - 1)
    n = full[..., 0, 0].numel()
    flat = full.view(n, T, T + K - 1)
    flat.as_strided((n, T, K), (T * (T + K - 1), T + K, 1)).copy_(kernel.reshape(n, T, K))
    return full[..., pad_l : pad_l + T]


class DepthwiseConv(_TimeConv):
    """Depthwise convolution with one kernel per channel (the first half of a separable convolution)."""

    def __init__(self, channels: int, kernel_size: int, causal: bool = False, impl: str = "conv1d") -> None:
        super().__init__(channels, kernel_size, causal, impl)
        self.weight = nn.Parameter(torch.empty(channels, kernel_size))
        nn.init.kaiming_uniform_(self.weight.view(channels, 1, kernel_size), a=5**0.5)

    def channel_kernel(self) -> Tensor:
        """(C, K) kernel applied to each channel."""
        return self.weight

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, state: dict | None = None) -> Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        w = self.channel_kernel()  # (C, K)
        if state is not None:
            window = self._window(x, state)  # (B, K, C)
            # (B, C, 1, K) @ (C, K, 1) -> (B, C, 1, 1): one output step, K MACs per channel
            y = torch.matmul(window.transpose(1, 2).unsqueeze(2), w.unsqueeze(-1))
            return y.view(x.size(0), 1, self.channels)
        return self._full(x, w)

    def _full(self, x: Tensor, w: Tensor) -> Tensor:
        B, T, C = x.shape
        if self.impl == "conv1d":
            y = F.conv1d(self._pad(x).transpose(1, 2), w.unsqueeze(1), groups=C)  # (B, C, T)
            return y.transpose(1, 2)
        if self.impl == "unfold":
            xu = self._pad(x).unfold(1, self.kernel_size, 1)  # (B, T, C, K) view
            return torch.matmul(xu.unsqueeze(-2), w.unsqueeze(-1)).view(B, T, C)
        band = _band(w.unsqueeze(1).expand(C, T, self.kernel_size), T, self.pad_l)  # (C, T, T)
        return torch.matmul(band, x.transpose(1, 2).unsqueeze(-1)).view(B, C, T).transpose(1, 2)


class LightweightConv(DepthwiseConv):
    """Lightweight convolution: an (H, K) kernel shared by the C/H channels of each head (channel i uses
    head i // (C/H)), softmax-normalised over the K taps, with DropConnect on the normalised kernel.
    H*K parameters."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        heads: int = 4,
        causal: bool = False,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        impl: str = "conv1d",
    ) -> None:
        _TimeConv.__init__(self, channels, kernel_size, causal, impl)
        if channels % heads:
            raise ValueError(f"channels={channels} is not divisible by conv heads={heads}")
        self.heads, self.weight_softmax, self.weight_dropout = heads, weight_softmax, weight_dropout
        self.weight = nn.Parameter(torch.empty(heads, kernel_size))
        nn.init.xavier_uniform_(self.weight)

    def head_kernel(self) -> Tensor:
        w = F.softmax(self.weight, dim=-1) if self.weight_softmax else self.weight
        return F.dropout(w, self.weight_dropout, self.training)  # DropConnect

    def channel_kernel(self) -> Tensor:
        return self.head_kernel().repeat_interleave(self.channels // self.heads, dim=0)

    def _full(self, x: Tensor, w: Tensor) -> Tensor:
        if self.impl == "conv1d":
            return super()._full(x, w)
        # head-shared forms: (B, T, H, C/H, K) @ (H, K, 1), or a (H, T, T) band
        B, T, C = x.shape
        H, K = self.heads, self.kernel_size
        wh = w[:: C // H]  # (H, K): the per-head kernel (DropConnect already applied)
        if self.impl == "unfold":
            xu = self._pad(x).unfold(1, K, 1).reshape(B, T, H, C // H, K)
            return torch.matmul(xu, wh.unsqueeze(-1)).view(B, T, C)
        band = _band(wh.unsqueeze(1).expand(H, T, K), T, self.pad_l)  # (H, T, T)
        xh = x.view(B, T, H, C // H).permute(0, 2, 1, 3)  # (B, H, T, C/H)
        return torch.matmul(band, xh).permute(0, 2, 1, 3).reshape(B, T, C)


class DynamicConv(_TimeConv):
    """Dynamic convolution: the (H, K) kernel is predicted at every time step from the current input,
    W_t = softmax_K(Linear_nobias(C, H*K)(x_t)), then applied like a lightweight kernel."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        heads: int = 4,
        causal: bool = False,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        impl: str = "unfold",
    ) -> None:
        super().__init__(channels, kernel_size, causal, impl)
        if impl == "conv1d":
            raise ValueError("a dynamic kernel changes per time step: use impl 'unfold' or 'band'")
        if channels % heads:
            raise ValueError(f"channels={channels} is not divisible by conv heads={heads}")
        self.heads, self.weight_softmax, self.weight_dropout = heads, weight_softmax, weight_dropout
        self.weight_linear = Linear(channels, heads * kernel_size, bias=False)

    def _kernel(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, H, K)
        B, T, _ = x.shape
        w = self.weight_linear(x).view(B, T, self.heads, self.kernel_size)
        w = F.softmax(w.float(), dim=-1).type_as(w) if self.weight_softmax else w
        return F.dropout(w, self.weight_dropout, self.training)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, state: dict | None = None) -> Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        B, T, C = x.shape
        H, K = self.heads, self.kernel_size
        w = self._kernel(x)
        if state is not None:
            window = self._window(x, state)  # (B, K, C)
            xw = window.transpose(1, 2).reshape(B, H, C // H, K)
            return torch.matmul(xw, w.view(B, H, K, 1)).view(B, 1, C)
        if self.impl == "unfold":
            xu = self._pad(x).unfold(1, K, 1).reshape(B, T, H, C // H, K)
            return torch.matmul(xu, w.unsqueeze(-1)).view(B, T, C)
        band = _band(w.permute(0, 2, 1, 3), T, self.pad_l)  # (B, H, T, T)
        xh = x.view(B, T, H, C // H).permute(0, 2, 1, 3)
        return torch.matmul(band, xh).permute(0, 2, 1, 3).reshape(B, T, C)


class SeparableConv(nn.Module):
    """Depthwise convolution over the input channels (kernel K, no bias) then a pointwise Linear."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, causal: bool = False) -> None:
        super().__init__()
        self.depthwise = DepthwiseConv(in_channels, kernel_size, causal=causal)
        self.pointwise = Linear(in_channels, out_channels)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, state: dict | None = None) -> Tensor:
        return self.pointwise(self.depthwise(x, padding_mask, state))
