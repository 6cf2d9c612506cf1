"""8-bit weights: PyTorch's dynamic quantization of every ``nn.Linear``, and 8-bit embedding tables.

``torch.ao.quantization.quantize_dynamic``, qint8, symmetric, one scale per output channel by default;
activations are quantized on the fly per tensor, the matmul runs in int8 with fbgemm/x86 or qnnpack.
Embedding tables (and with them the tied output projection, ``F.linear`` with the table) are rounded to
symmetric int8 with one fp32 scale per row (per token: ``scale = max|row| / 127``); they are stored as int8
(bench.compress.packing) and computed in fp32 with the rounded values, so the quality measured is that of the
stored weights. Not quantized (stay fp32): LayerNorms, biases, convolution kernels. Symmetric int8 keeps a
zero a zero, so a pruned model's sparsity survives quantization (and grows a little: weights below half a
step round to 0).
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


def rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row of a 2-D table: (int8 values, fp32 scales), ``scale = max|row| / 127`` (1 for
    an all-zero row), ``q = round(w / scale)`` in [-127, 127]."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)
    scales = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
    return q, scales


def embedding_tables(model: nn.Module) -> dict[int, nn.Embedding]:
    """id(weight) -> module, for every ``nn.Embedding`` of ``model`` (a shared table once)."""
    return {id(m.weight): m for m in model.modules() if isinstance(m, nn.Embedding)}


def quantize_int8(model: nn.Module, qscheme: str = "per_channel") -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's dynamic int8 Linear (qint8 symmetric
    weights, ``per_channel`` = one scale per output row, or ``per_tensor``) and every embedding table rounded
    to int8 per row (:func:`rows_int8`; held in fp32 with the rounded values); the rest stays fp32."""
    if qscheme not in QSCHEMES:
        raise BenchError(f"unknown weight quantization scheme {qscheme!r}; valid: {', '.join(QSCHEMES)}")
    with quiet_quantization():
        try:
            # here, not at the top: its deprecation warnings silenced, its absence one clear error
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            raise BenchError(f"int8: torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; "
                             "install a torch that does (<= 2.13) or torchao") from None
        qconfig = per_channel_dynamic_qconfig if qscheme == "per_channel" else default_dynamic_qconfig
        was = model.training
        model.eval()
        q = quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=False)
        model.train(was)
    with torch.no_grad():
        for emb in embedding_tables(q).values():
            values, scales = rows_int8(emb.weight)
            emb.weight.copy_(values.float() * scales[:, None])
    return q.eval()

