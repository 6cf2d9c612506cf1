"""Sizes of a compressed model: on disk, in a sparse int8 encoding, and against the Transformer base.

- ``size_mb_disk``: the size of the stage's model file (``model-<tag>.pt``: the state dict, int8 for the
  quantized Linear weights, plus the run's spec, written with ``torch.save``).
- ``size_mb_sparse_int8``: every weight that is 8-bit in the quantized model (the ``nn.Linear`` weights) is
  stored, per tensor, in whichever of three schemes is smallest: dense (n bytes), bitmap (ceil(n / 8) bytes +
  1 byte per non-zero), or 16-bit relative indices (3 bytes per non-zero: its value and the gap to the
  previous non-zero; a gap above 65536 inserts a zero-valued filler entry, as in Deep Compression), plus one
  fp32 scale per output channel (per tensor: one). Every other tensor is counted dense at 4 bytes per value,
  tied tensors once. For stages that are not quantized, the non-zeros are those of the fp32 weights.
- ``compression_ratio``: the fp32 Transformer base shape (d=512, ffn 2048, 6+6 layers, 8 heads, the run's
  vocabulary and embedding sharing; params_total x 4 bytes, counted from ``create_model``) over a size;
  ``include_embeddings=False``: the paper's convention (base params without embeddings x 4 bytes).
MB = 10**6 bytes. A compressed file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.atomic import save_torch
from bench.errors import BenchError
from bench.params import count_params
from models import create_model

from .quantization import is_qlinear, quantize_int8, quiet_quantization

FORMAT = "litebench-compressed-1"
MB = 10**6
INDEX_BITS = 16  # relative index width of the sparse encoding
BASE_SHAPE = dict(d_model=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8)


def save_compressed(model: nn.Module, path: Path, spec: Mapping[str, Any], meta: Mapping[str, Any]) -> int:
    """Write the stage's model (state dict + run spec + how it was compressed) atomically; returns its size in
    bytes, measured from the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_quantization():
        save_torch({"format": FORMAT, "spec": dict(spec), "compression": dict(meta), "model": model.state_dict()},
                   path)
    return os.path.getsize(path)


def load_compressed(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, file contents without the weights) from a ``model-<tag>.pt`` file, loaded with
    ``weights_only=True``: the model is rebuilt from the spec, re-quantized when int8, and the state dict
    loaded into it."""
    path = Path(path)
    try:
        with quiet_quantization():
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"no compressed model at {path}") from None
    except Exception as exc:  # unpickling errors come in many types
        raise BenchError(f"{path} is corrupt or not a litebench compressed model ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise BenchError(f"{path} is not a litebench compressed model (format {FORMAT})")
    spec, meta = ck["spec"], ck["compression"]
    model = create_model(spec["model"], **spec["config"]).eval()
    if meta.get("quantize") == "int8":
        model = quantize_int8(model, meta.get("qscheme", "per_channel"))
    with quiet_quantization():
        model.load_state_dict(ck["model"])
    return model, {k: v for k, v in ck.items() if k != "model"}


def relative_index_entries(positions: Tensor, bits: int = INDEX_BITS) -> int:
    """Entries of a relative-index encoding of sorted flat non-zero ``positions``: one per non-zero, plus a
    zero-valued filler entry for every 2**bits positions a gap skips beyond what one index can say (the gap
    from the previous non-zero, or from position -1, is stored as gap - 1 in ``bits`` bits)."""
    if positions.numel() == 0:
        return 0
    pos = positions.to(torch.int64)
    gaps = torch.diff(pos, prepend=pos.new_tensor([-1]))
    fillers = torch.div(gaps - 1, 2**bits, rounding_mode="floor")
    return int(positions.numel() + fillers.sum())


def sparse_int8_tensor_bytes(values: Tensor, scales: int = 1, bits: int = INDEX_BITS) -> tuple[int, str]:
    """(bytes, scheme) of one 8-bit weight tensor in the cheapest of: "dense" (n bytes), "bitmap"
    (ceil(n / 8) + nnz bytes), "relative16" (3 bytes per entry: value + 16-bit gap, fillers included); plus
    ``scales`` fp32 scales (4 bytes each)."""
    n = values.numel()
    nz = torch.nonzero(values.flatten() != 0).flatten()
    nnz = nz.numel()
    costs = {
        "dense": n,
        "bitmap": math.ceil(n / 8) + nnz,
        f"relative{bits}": relative_index_entries(nz, bits) * (1 + bits // 8),
    }
    scheme = min(costs, key=lambda k: (costs[k], list(costs).index(k)))
    return costs[scheme] + 4 * scales, scheme


def sparse_int8_size(model: nn.Module, qscheme: str = "per_channel") -> dict[str, Any]:
    """Bytes of the sparse int8 encoding of ``model`` (see the module docstring): the ``nn.Linear`` weights (int8
    values of a quantized model; non-zeros of the fp32 weights otherwise) per tensor in the cheapest scheme,
    every other tensor dense at 4 bytes. Also without embedding tables (the paper's convention)."""
    linear_bytes, schemes, linear_ids = 0, {}, set()
    for m in model.modules():
        if is_qlinear(m):
            w = m.weight()
            values = w.int_repr()
            scales = w.q_per_channel_scales().numel() if w.qscheme() in (
                torch.per_channel_affine, torch.per_channel_symmetric) else 1
        elif isinstance(m, nn.Linear):
            values = m.weight.detach()
            scales = values.size(0) if qscheme == "per_channel" else 1
            linear_ids.add(id(m.weight))
        else:
            continue
        b, scheme = sparse_int8_tensor_bytes(values, scales)
        linear_bytes += b
        schemes[scheme] = schemes.get(scheme, 0) + 1
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    other = emb = 0
    seen: set[int] = set()
    tensors = [p for p in model.parameters()]
    tensors += [b for m in model.modules() if is_qlinear(m) for b in [m.bias()] if b is not None]
    for t in tensors:
        if id(t) in seen or id(t) in linear_ids:
            continue
        seen.add(id(t))
        nbytes = t.numel() * 4
        other += nbytes
        if id(t) in embedding_ids:
            emb += nbytes
    total = linear_bytes + other
    return {"bytes": total, "bytes_no_emb": total - emb, "linear_bytes": linear_bytes, "other_bytes": other,
            "embedding_bytes": emb, "schemes": schemes}


@functools.lru_cache(maxsize=16)
def _base_counts(vocab_size: int, tgt_vocab_size: int | None, share_embeddings: bool) -> tuple[int, int]:
    kw = dict(BASE_SHAPE, vocab_size=vocab_size, tgt_vocab_size=tgt_vocab_size, share_embeddings=share_embeddings,
              dropout=0.0)
    try:
        with torch.device("meta"):  # counted, not initialised: no 60M-parameter allocation
            base = create_model("transformer", **kw)
    except Exception:  # a layer that cannot be built on the meta device
        base = create_model("transformer", **kw)
    c = count_params(base)
    return c["params"], c["params_total"]


def transformer_base_size(config: Mapping[str, Any]) -> dict[str, int]:
    """The fp32 Transformer base shape (d=512, ffn 2048, 6+6 layers, 8 heads) with ``config``'s vocabulary and
    embedding sharing, counted from ``create_model``: params (no embeddings), params_total, and x 4 bytes."""
    params, total = _base_counts(int(config.get("vocab_size", 8000)), config.get("tgt_vocab_size"),
                                 bool(config.get("share_embeddings", True)))
    return {"params": params, "params_total": total, "bytes_fp32": 4 * total, "bytes_fp32_no_emb": 4 * params}


def compression_ratio(compressed_bytes: int, config: Mapping[str, Any], include_embeddings: bool = True) -> float:
    """fp32 Transformer base (d=512; params_total x 4 bytes, or params without embeddings x 4 bytes with
    ``include_embeddings=False``) over ``compressed_bytes``, for a model with ``config``'s vocabulary."""
    if compressed_bytes <= 0:
        raise BenchError(f"compressed size must be positive, got {compressed_bytes}")
    base = transformer_base_size(config)
    return base["bytes_fp32" if include_embeddings else "bytes_fp32_no_emb"] / compressed_bytes
