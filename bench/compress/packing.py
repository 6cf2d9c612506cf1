"""The on-disk encoding of a compressed model: what ``size_mb_disk`` measures.

Every weight is written in the cheapest of three layouts for its zeros, per tensor (the costs of
:func:`encoded_bytes`, with e bytes per stored value: 1 for int8, 4 for fp32):

- "dense": every value (n x e bytes);
- "bitmap": one bit per position (ceil(n / 8) bytes, uint8) and the non-zero values (nnz x e);
- "relative16": the non-zero values and the gap to the previous one (uint16, stored as gap - 1); a gap over
  65536 positions inserts zero-valued filler entries, as in Deep Compression (entries x (e + 2) bytes).

What is stored per kind of tensor:

- a quantized ``nn.Linear`` (bench.compress.quantization): its int8 values in the cheapest layout, one fp32
  scale per output channel (per tensor: one), zero points only where they are not 0, its fp32 bias;
- an embedding table of an int8 model: int8 values per row and one fp32 scale per row (``rows_int8``), so
  the tied output projection is stored once, in 8 bits;
- everything else (fp32 weights of an unquantized model, norms, biases, convolution kernels) in its own
  dtype, zeros and all, in the cheapest layout (a pruned fp32 weight: a bitmap and its non-zeros);
- a tensor shared under several names (tied embeddings and output projection) once, the other names
  pointing to it.

In the file every tensor's bytes go, one after another, into one uint8 buffer (:func:`to_blob`), the structure
keeping (dtype, shape, offset) for each: a file is its payload plus a small index, not one container entry per
tensor (those add some 400 bytes each). It holds plain tensors, numbers, lists and strings only, so it loads
with ``torch.load(weights_only=True)``; :func:`unpack_into` rebuilds the weights into a model of the same spec
(quantized first when the file is).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bench.compress.quantization import embedding_tables, is_qlinear, rows_int8
from bench.errors import BenchError

INDEX_BITS = 16  # the relative layout's gap width
MAX_GAP = 2**INDEX_BITS
LAYOUTS = ("dense", "bitmap", f"relative{INDEX_BITS}")


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


def encoded_bytes(values: Tensor, elem_bytes: int | None = None, bits: int = INDEX_BITS) -> tuple[int, str]:
    """(bytes, layout) of the cheapest layout of one tensor (module docstring), ``elem_bytes`` per stored
    value (default: the tensor's own element size). Ties go to the simpler layout (dense, bitmap, relative).

    Args:
        values: the tensor (its zeros are what the sparse layouts leave out).
        elem_bytes: bytes per stored value; None: the tensor's element size.
        bits: the relative layout's gap width (16).
    """
    e = values.element_size() if elem_bytes is None else elem_bytes
    n = values.numel()
    nz = torch.nonzero(values.reshape(-1) != 0).flatten()
    costs = {
        "dense": n * e,
        "bitmap": math.ceil(n / 8) + nz.numel() * e,
        f"relative{bits}": relative_index_entries(nz, bits) * (e + bits // 8),
    }
    layout = min(costs, key=lambda k: (costs[k], list(costs).index(k)))
    return costs[layout], layout


def encode(t: Tensor) -> dict[str, Any]:
    """One tensor in the cheapest layout of :func:`encoded_bytes` (non-floating tensors other than int8:
    dense). Returns plain tensors: ``values`` and ``bitmap`` or ``gaps``, with ``shape`` and ``layout``."""
    t = t.detach()
    flat = t.reshape(-1).contiguous()
    entry: dict[str, Any] = {"shape": list(t.shape)}
    if not (t.is_floating_point() or t.dtype == torch.int8):
        return {**entry, "layout": "dense", "values": flat.clone()}
    _, layout = encoded_bytes(flat)
    entry["layout"] = layout
    if layout == "dense":
        entry["values"] = flat.clone()
        return entry
    nz = torch.nonzero(flat != 0).flatten()
    if layout == "bitmap":
        mask = flat != 0
        padded = torch.zeros(math.ceil(flat.numel() / 8) * 8, dtype=torch.uint8)
        padded[: flat.numel()] = mask.to(torch.uint8)
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)
        entry["bitmap"] = (padded.view(-1, 8).to(torch.int32) * weights).sum(dim=1).to(torch.uint8)
        entry["values"] = flat[nz].clone()
        return entry
    gaps = torch.diff(nz, prepend=nz.new_tensor([-1]))
    fillers = torch.div(gaps - 1, MAX_GAP, rounding_mode="floor")
    counts = fillers + 1
    owner = torch.repeat_interleave(torch.arange(nz.numel()), counts)
    starts = torch.cumsum(counts, 0) - counts
    within = torch.arange(owner.numel()) - starts[owner]
    last = within == fillers[owner]
    step = torch.where(last, gaps[owner] - MAX_GAP * fillers[owner], torch.full_like(owner, MAX_GAP))
    entry["gaps"] = (step - 1).to(torch.uint16)
    entry["values"] = torch.where(last, flat[nz][owner], torch.zeros((), dtype=flat.dtype))
    return entry


def decode(entry: dict[str, Any]) -> Tensor:
    """The tensor :func:`encode` wrote."""
    shape, values = entry["shape"], entry["values"]
    n = math.prod(shape)
    layout = entry["layout"]
    if layout == "dense":
        return values.reshape(shape).clone()
    out = torch.zeros(n, dtype=values.dtype)
    if layout == "bitmap":
        bits = entry["bitmap"].to(torch.int32)
        shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.int32)
        mask = ((bits[:, None] >> shifts) & 1).reshape(-1)[:n].bool()
        out[mask] = values
    elif layout == LAYOUTS[2]:
        positions = torch.cumsum(entry["gaps"].to(torch.int64) + 1, 0) - 1
        out[positions] = values
    else:
        raise BenchError(f"unknown tensor layout {layout!r} in a compressed model file")
    return out.reshape(shape)


def payload_bytes(entry: Any) -> int:
    """Bytes of the tensors in an encoded entry (nested dicts and lists), the file's payload."""
    if isinstance(entry, Tensor):
        return entry.numel() * entry.element_size()
    if isinstance(entry, dict):
        return sum(payload_bytes(v) for v in entry.values())
    if isinstance(entry, (list, tuple)):
        return sum(payload_bytes(v) for v in entry)
    return 0


def to_blob(obj: Any) -> tuple[Any, Tensor]:
    """(``obj`` with every tensor replaced by ``{"blob": [dtype, shape, offset]}``, one uint8 tensor holding
    every tensor's bytes in order)."""
    chunks: list[Tensor] = []
    size = 0

    def walk(x: Any) -> Any:
        nonlocal size
        if isinstance(x, Tensor):
            flat = x.detach().contiguous().reshape(-1)
            ref = {"blob": [str(flat.dtype).removeprefix("torch."), list(x.shape), size]}
            raw = flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)
            chunks.append(raw)
            size += raw.numel()
            return ref
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    tree = walk(obj)
    blob = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)
    return tree, blob


def from_blob(tree: Any, blob: Tensor) -> Any:
    """The structure :func:`to_blob` took apart."""
    if isinstance(tree, dict):
        if set(tree) == {"blob"}:
            name, shape, offset = tree["blob"]
            dtype = getattr(torch, name, None)
            if not isinstance(dtype, torch.dtype):
                raise BenchError(f"unknown dtype {name!r} in a compressed model file")
            n = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            if offset + n > blob.numel():
                raise BenchError("compressed model file is truncated")
            return blob[offset:offset + n].clone().view(dtype).reshape(shape)
        return {k: from_blob(v, blob) for k, v in tree.items()}
    if isinstance(tree, list):
        return [from_blob(v, blob) for v in tree]
    return tree


def _qlinear_entry(m: nn.Module) -> dict[str, Any]:
    w = m.weight()
    per_channel = w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    if per_channel:
        scales, zps, axis = w.q_per_channel_scales(), w.q_per_channel_zero_points(), w.q_per_channel_axis()
    else:
        scales, zps, axis = torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()]), -1
    entry: dict[str, Any] = {"weight": encode(w.int_repr()), "scales": scales.to(torch.float32), "axis": int(axis)}
    if zps.any():
        entry["zero_points"] = zps.to(torch.int32)
    if m.bias() is not None:
        entry["bias"] = encode(m.bias())
    return entry


def _qweight(entry: dict[str, Any]) -> Tensor:
    q = decode(entry["weight"])
    scales = entry["scales"].to(torch.float64)
    zps = entry.get("zero_points", torch.zeros(scales.numel(), dtype=torch.int32)).to(torch.int64)
    if entry["axis"] < 0:
        s, z = float(scales[0]), int(zps[0])
        return torch.quantize_per_tensor((q.float() - z) * s, s, z, torch.qint8)
    axis = entry["axis"]
    view = [1] * q.dim()
    view[axis] = -1
    real = (q.double() - zps.view(view)) * scales.view(view)
    return torch.quantize_per_channel(real.float(), scales, zps, axis, torch.qint8)


def _qlinear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if is_qlinear(m)]


def _plain_keys(model: nn.Module, qnames: list[str]) -> list[str]:
    return [k for k in model.state_dict() if not any(k.startswith(q + ".") for q in qnames)]


def pack_model(model: nn.Module, int8_embeddings: bool) -> dict[str, Any]:
    """The stored form of ``model`` (module docstring): ``tensors`` (key -> encoded entry), ``aliases`` (key
    -> the key it shares its tensor with), ``qlinear`` (module name -> int8 weight, scales, bias)."""
    qnames = _qlinear_names(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    tables = embedding_tables(model) if int8_embeddings else {}
    state = model.state_dict(keep_vars=True)
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    for key in _plain_keys(model, qnames):
        t = params.get(key, state[key])
        if not isinstance(t, Tensor):
            raise BenchError(f"cannot store {key!r} of type {type(t).__name__} in a compressed model file")
        if id(t) in first:
            aliases[key] = first[id(t)]
            continue
        first[id(t)] = key
        if id(t) in tables:
            values, scales = rows_int8(t)
            tensors[key] = {"kind": "int8_rows", "values": encode(values), "scales": scales}
        else:
            tensors[key] = {"kind": "plain", **encode(t)}
    qlinear = {name: _qlinear_entry(model.get_submodule(name)) for name in qnames}
    return {"tensors": tensors, "aliases": aliases, "qlinear": qlinear}


def unpack_into(model: nn.Module, packed: dict[str, Any]) -> nn.Module:
    """Load a :func:`pack_model` result into ``model`` (built from the same spec, quantized when the file is);
    every key of the model must be in the file and no other."""
    qnames = _qlinear_names(model)
    expected = set(_plain_keys(model, qnames))
    given = set(packed["tensors"]) | set(packed["aliases"])
    if expected != given or set(qnames) != set(packed["qlinear"]):
        missing = sorted((expected - given) | (set(qnames) - set(packed["qlinear"])))
        extra = sorted((given - expected) | (set(packed["qlinear"]) - set(qnames)))
        raise BenchError(f"compressed model file does not match its spec (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    state: dict[str, Tensor] = {}
    for key, entry in packed["tensors"].items():
        if entry["kind"] == "int8_rows":
            state[key] = decode(entry["values"]).float() * entry["scales"][:, None]
        else:
            state[key] = decode(entry)
    for key, target in packed["aliases"].items():
        state[key] = state[target]
    current = model.state_dict(keep_vars=True)
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, value in state.items():
            target = params.get(key, current[key])
            if tuple(target.shape) != tuple(value.shape):
                raise BenchError(f"compressed model file: {key} has shape {tuple(value.shape)}, the spec's model "
                                 f"{tuple(target.shape)}")
            target.copy_(value)
    for name, entry in packed["qlinear"].items():
        bias = decode(entry["bias"]) if "bias" in entry else None
        model.get_submodule(name).set_weight_bias(_qweight(entry), bias)
    return model
