"""Sizes of a compressed model: on disk, counted in the sparse int8 encoding, and against the Transformer base.

- ``size_mb_disk``: the size of the stage's model file (``model-<tag>.pt``), written in the encoding of
  bench.compress.packing (each weight in the cheapest of dense, bitmap and 16-bit relative indices; int8 for
  the quantized Linear weights and the embedding tables of an int8 model), plus the run's spec, with
  ``torch.save``. The stage is evaluated from this file, loaded back.
- ``size_mb_sparse_int8``: every ``nn.Linear`` weight counted as int8 (the values of a quantized model; the
  non-zeros of the fp32 weights otherwise) in the cheapest layout (``encoded_bytes`` with 1 byte per value:
  dense n bytes, bitmap ceil(n / 8) + 1 byte per non-zero, 16-bit relative indices 3 bytes per entry, fillers
  included), plus one fp32 scale per output channel (per tensor: one); every embedding table as int8 with one
  fp32 scale per row; every other tensor (norms, biases, convolution kernels) in its own dtype in the
  cheapest layout; tied tensors once. For an int8 model this is exactly the payload the file stores (the file
  adds its container's framing).
- ``compression_ratio``: the fp32 Transformer base shape (d=512, ffn 2048, 6+6 layers, 8 heads, the run's
  vocabulary and embedding sharing; params_total x 4 bytes, counted from ``create_model``) over a size;
  ``include_embeddings=False``: the paper's convention (base params without embeddings x 4 bytes).
MB = 10**6 bytes. A compressed file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.compress.packing import INDEX_BITS, encoded_bytes, from_blob, pack_model, to_blob, unpack_into
from bench.compress.quantization import embedding_tables, is_qlinear, quantize_int8, quiet_quantization, rows_int8
from bench.cost.params import count_params
from bench.errors import BenchError
from bench.infra.atomic import save_torch
from models import create_model

FORMAT = "litebench-compressed-2"  # 1: a dense state dict (before the packed encoding)
MB = 10**6
BASE_SHAPE = dict(d_model=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8)


def save_compressed(model: nn.Module, path: Path, spec: Mapping[str, Any], meta: Mapping[str, Any]) -> int:
    """Write the stage's model (state dict + run spec + how it was compressed) atomically; returns its size in
    bytes, measured from the file.

    Args:
        model: the stage's model.
        path: the file written.
        spec: the run's spec, stored with it.
        meta: how it was compressed (quantize, qscheme, prune, ...), stored with it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree, blob = to_blob(pack_model(model, int8_embeddings=meta.get("quantize") == "int8"))
    with quiet_quantization():
        save_torch({"format": FORMAT, "spec": dict(spec), "compression": dict(meta), "model": tree, "blob": blob},
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
    if isinstance(ck, dict) and str(ck.get("format", "")).startswith("litebench-compressed-") \
            and ck["format"] != FORMAT:
        raise BenchError(f"{path} was written by an older litebench ({ck['format']}); compress the run again")
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise BenchError(f"{path} is not a litebench compressed model (format {FORMAT})")
    spec, meta = ck["spec"], ck["compression"]
    model = create_model(spec["model"], **spec["config"]).eval()
    if meta.get("quantize") == "int8":
        model = quantize_int8(model, meta.get("qscheme", "per_channel"))
    with quiet_quantization():
        unpack_into(model, from_blob(ck["model"], ck["blob"]))
    return model.eval(), {k: v for k, v in ck.items() if k not in ("model", "blob")}


def sparse_int8_tensor_bytes(values: Tensor, scales: int = 1, bits: int = INDEX_BITS) -> tuple[int, str]:
    """(bytes, layout) of one 8-bit weight tensor in the cheapest of: "dense" (n bytes), "bitmap"
    (ceil(n / 8) + nnz bytes), "relative16" (3 bytes per entry: value + 16-bit gap, fillers included); plus
    ``scales`` fp32 scales (4 bytes each).

    Args:
        values: the tensor's 8-bit values (pruned weights are zeros).
        scales: how many fp32 scales are stored with it.
        bits: the relative layout's gap width (16).
    """
    b, layout = encoded_bytes(values, 1, bits)
    return b + 4 * scales, layout


def sparse_int8_size(model: nn.Module, qscheme: str = "per_channel") -> dict[str, Any]:
    """Bytes of the sparse int8 encoding of ``model`` (see the module docstring): the ``nn.Linear`` weights (int8
    values of a quantized model; non-zeros of the fp32 weights otherwise) per tensor in the cheapest layout,
    embedding tables int8 per row, every other tensor in its own dtype in the cheapest layout. Also without
    embedding tables (the paper's convention)."""
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
    embedding_ids = set(embedding_tables(model))
    other = emb = 0
    seen: set[int] = set()
    tensors = [p for p in model.parameters()]
    tensors += [b for m in model.modules() if is_qlinear(m) for b in [m.bias()] if b is not None]
    for t in tensors:
        if id(t) in seen or id(t) in linear_ids:
            continue
        seen.add(id(t))
        if id(t) in embedding_ids:  # int8 per row + one fp32 scale per row
            nbytes = encoded_bytes(rows_int8(t)[0])[0] + 4 * t.size(0)
            emb += nbytes
        else:  # in its own dtype, in the cheapest layout
            nbytes = encoded_bytes(t.detach())[0]
        other += nbytes
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
    ``include_embeddings=False``) over ``compressed_bytes``, for a model with ``config``'s vocabulary.

    Args:
        compressed_bytes: the compressed model's size in bytes (> 0).
        config: the model's config; its vocabulary sizes the Transformer base.
        include_embeddings: False: the base's size without its embeddings.
    """
    if compressed_bytes <= 0:
        raise BenchError(f"compressed size must be positive, got {compressed_bytes}")
    base = transformer_base_size(config)
    return base["bytes_fp32" if include_embeddings else "bytes_fp32_no_emb"] / compressed_bytes
