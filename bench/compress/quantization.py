"""8-bit weights: PyTorch's dynamic quantization of every ``nn.Linear``.

``torch.ao.quantization.quantize_dynamic``, qint8, symmetric, one scale per output channel by default;
activations are quantized on the fly per tensor, the matmul runs in int8 with fbgemm/x86 or qnnpack. Not
quantized (stay fp32): embeddings and the tied output projection (``F.linear`` with the embedding table, not an
``nn.Linear``), LayerNorms, biases, convolution kernels. Symmetric int8 keeps a zero a zero, so a pruned
model's sparsity survives quantization (and grows a little: weights below half a step round to 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from bench.errors import BenchError

QUANTIZE = ("int8",)
QSCHEMES = ("per_channel", "per_tensor")


def check_quantize(value: str | None) -> str | None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "fp32", "")):
        return None
    if value not in QUANTIZE:
        raise BenchError(f"--quantize: unknown quantization {value!r}; valid: {', '.join(QUANTIZE)} (or none)")
    return value


def is_qlinear(m: nn.Module) -> bool:
    return type(m).__name__ == "Linear" and type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")


@contextmanager
def quiet_quantization() -> Iterator[None]:
    """torch 2.13 still ships eager-mode quantization but warns on every call that it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
        yield


def quantize_int8(model: nn.Module, qscheme: str = "per_channel") -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's dynamic int8 Linear (qint8 symmetric
    weights, ``per_channel`` = one scale per output row, or ``per_tensor``); the rest stays fp32."""
    if qscheme not in QSCHEMES:
        raise BenchError(f"unknown weight quantization scheme {qscheme!r}; valid: {', '.join(QSCHEMES)}")
    with quiet_quantization():
        try:
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            raise BenchError(f"int8: torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; "
                             "install a torch that does (<= 2.13) or torchao") from None
        qconfig = per_channel_dynamic_qconfig if qscheme == "per_channel" else default_dynamic_qconfig
        was = model.training
        model.eval()
        q = quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=False)
        model.train(was)
    return q.eval()

