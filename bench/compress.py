"""Compression of a trained run: magnitude pruning, fine-tuning with the mask held, 8-bit weights; each stage
measured for size, quality and latency with the suite's own protocols.

Pipeline (``compress_run``; ``python -m bench compress RUN_DIR ...``), every stage a row of the leaderboard:
- "fp32": the trained model as it is (the reference of the stages below; the leaderboard's own fp32 row is
  the pipeline's "none").
- "int8": 8-bit weights for every ``nn.Linear``: PyTorch's dynamic quantization
  (``torch.ao.quantization.quantize_dynamic``, qint8, symmetric, one scale per output channel by default;
  activations are quantized on the fly per tensor, the matmul runs in int8 with fbgemm/x86 or qnnpack).
  Not quantized (stay fp32): embeddings and the tied output projection (``F.linear`` with the embedding
  table, not an ``nn.Linear``), LayerNorms, biases, convolution kernels.
- "int8+prune0.30" (or "prune0.30" without ``quantize``): magnitude pruning of the weights of every
  ``nn.Linear``, ``nn.Conv1d`` and depthwise convolution kernel, except the softmax-normalised lightweight
  convolution kernels (a zeroed logit is not a zeroed tap). Embeddings, norms and biases are untouched.
  "global": one magnitude threshold over all those weights together (Han et al.); "layer": every tensor
  pruned to the same fraction ("-layer" in the tag). Exactly round(sparsity x n) weights are zeroed (the
  smallest |w|, ties broken by position). Optional fine-tuning (``finetune_tokens``, "+ft<tokens>" in the
  tag) reuses the run's own Trainer recipe (data, optimizer, label smoothing, clipping, precision) at a tenth
  of its peak learning rate, a short warm-up, cosine decay over the fine-tuning tokens, with the mask
  re-applied after every optimizer step; then the int8 quantization above. Symmetric int8 keeps a zero a
  zero, so the sparsity survives quantization (and grows a little: weights below half a step round to 0).

Measurements per stage (units: MB = 10**6 bytes, ms):
- ``size_mb_disk``: ``os.path.getsize`` of the stage's model file (``model-<tag>.pt``: the state dict, int8
  for the quantized Linear weights, plus the run's spec, written with ``torch.save``).
- ``size_mb_sparse_int8``: what a sparse int8 encoding of the same model would take. Every weight that is
  8-bit in the quantized model (the ``nn.Linear`` weights) is stored, per tensor, in whichever of three
  schemes is smallest: dense (n bytes), bitmap (ceil(n / 8) bytes + 1 byte per non-zero), or 16-bit relative
  indices (3 bytes per non-zero: its value and the gap to the previous non-zero; a gap above 65536 inserts
  a zero-valued filler entry, as in Deep Compression), plus one fp32 scale per output channel (per tensor:
  one). Every other tensor (embeddings, norms, biases, convolution kernels) is counted dense at 4 bytes per
  value, tied tensors once. For stages that are not quantized, the non-zeros are those of the fp32 weights.
- ``size_mb_fp32_params``: every parameter (embeddings included, tied ones once) x 4 bytes;
  ``size_mb_fp32_params_no_emb``: the paper's "params" (no embedding tables) x 4 bytes.
- ``compression_ratio``: the fp32 Transformer base shape (d=512, ffn 2048, 6+6 layers, 8 heads, the run's
  vocabulary and embedding sharing; params_total x 4 bytes, counted from ``create_model``) over the stage's
  size on disk. ``compression_ratio_sparse_int8``: the same over the sparse int8 size.
  ``compression_ratio_no_emb``: the paper's convention (its 176 MB base and 69.2 -> 9.7 MB Lite exclude the
  embeddings): base params without embeddings x 4 bytes over the sparse int8 size without the embeddings.
- ``sparsity``: zeros / weights over the pruning set, measured on the stage's stored weights (int8 values
  for quantized Linear weights); ``prune_target`` is what was asked for.
- Quality: ``bench.evaluate``'s protocol (sacreBLEU BLEU and chrF with their signatures on the test split and
  its test-clean subset, the run's beam and length penalty; validation NLL per target token, fp32 or int8
  as the stage runs).
- Latency: ``bench.latency.measure_latency`` on the stage's model, "forward" and "translate" workloads,
  batch 1, at 1 thread and at all cores (``<workload>_p50_ms_t<threads>``, ``threads_all`` says how many),
  measured in this process.

``choose_sparsity`` picks the largest sparsity whose int8+pruned model keeps BLEU within ``max_bleu_drop``
of the fp32 model on the validation split (never the test split), trying the candidates in increasing order
and stopping at the first that fails.

A compressed file loads with ``torch.load(weights_only=True)``; ``load_compressed`` rebuilds the model from
the spec, re-applies the dynamic quantization when the file is int8, and loads the state dict into it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models import create_model
from models.layers.convolution import DepthwiseConv, LightweightConv

from .batching import MTData, encode_parallel
from .data import Tokenizer, get_corpus
from .errors import BenchError
from .evaluate import bleu_chrf, eval_settings, load_run, score_test_splits, translate
from .params import count_params
from .schedules import Schedule
from .train import CHECKPOINT, Trainer, atomic_save, atomic_write_text, corpus_nll, load_task_data

HELP = "prune and/or quantize a trained run to int8; size on disk, BLEU/chrF and latency of each stage"
QUANTIZE = ("int8",)
PRUNE_SCOPES = ("global", "layer")
QSCHEMES = ("per_channel", "per_tensor")
DEFAULT_CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5)
FORMAT = "litebench-compressed-1"
MB = 10**6
INDEX_BITS = 16  # relative index width of the sparse encoding
FINETUNE_LR_FACTOR = 0.1  # fine-tuning peak learning rate = this x the run's peak learning rate
BASE_SHAPE = dict(d_model=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8)


# ============================================================================================ checks
def check_sparsity(value: Any, what: str = "--prune") -> float:
    """A sparsity in [0, 1) as a float; anything else is one clear BenchError line."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = math.nan
    if isinstance(value, bool) or not (0.0 <= s < 1.0):
        raise BenchError(f"{what}: sparsity must be a number in [0, 1), got {value!r}")
    return s


def check_quantize(value: str | None) -> str | None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "fp32", "")):
        return None
    if value not in QUANTIZE:
        raise BenchError(f"--quantize: unknown quantization {value!r}; valid: {', '.join(QUANTIZE)} (or none)")
    return value


def check_scope(value: str) -> str:
    if value not in PRUNE_SCOPES:
        raise BenchError(f"--prune-scope: unknown scope {value!r}; valid: {', '.join(PRUNE_SCOPES)}")
    return value


def check_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BenchError(f"--finetune-tokens must be a positive integer, got {value!r}")
    return int(value)


def _human(n: int) -> str:
    """50000 -> '50k', 2500000 -> '2.5M', 1234 -> '1234'."""
    for unit, div in (("M", 10**6), ("k", 10**3)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def stage_tag(quantize: str | None, prune: float | None, scope: str = "global",
              finetune_tokens: int | None = None) -> str:
    """"fp32", "int8", "int8+prune0.30", "prune0.30-layer", "int8+prune0.30+ft50k", ..."""
    parts = [quantize] if quantize else []
    if prune:
        parts.append(f"prune{prune:.2f}" + ("-layer" if scope == "layer" else ""))
        if finetune_tokens:
            parts.append(f"ft{_human(finetune_tokens)}")
    return "+".join(parts) or "fp32"


# ============================================================================================ pruning
def prunable_weights(model: nn.Module) -> dict[str, Tensor]:
    """Name -> weight of every ``nn.Linear``, ``nn.Conv1d`` and depthwise convolution kernel of an fp32 model
    (the pruning set); softmax-normalised lightweight kernels are left out. Embedding tables and the tied
    output projection are no ``nn.Linear`` and are not in the set."""
    out: dict[str, Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            pass
        elif isinstance(m, DepthwiseConv):
            if isinstance(m, LightweightConv) and m.weight_softmax:
                continue
        else:
            continue
        out[f"{name}.weight" if name else "weight"] = m.weight
    return out


def _is_qlinear(m: nn.Module) -> bool:
    return type(m).__name__ == "Linear" and type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")


def stored_weights(model: nn.Module) -> dict[str, tuple[Tensor, str]]:
    """The pruning set as the model stores it: name -> (values, kind). Kinds: "int8" (an int8 dynamic
    Linear: its int8 values), "linear" (an fp32 nn.Linear weight), "conv" (a convolution kernel, fp32)."""
    out: dict[str, tuple[Tensor, str]] = {}
    for name, m in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if _is_qlinear(m):
            out[key] = (m.weight().int_repr(), "int8")
        elif isinstance(m, nn.Linear):
            out[key] = (m.weight.detach(), "linear")
        elif isinstance(m, nn.Conv1d) or (
            isinstance(m, DepthwiseConv) and not (isinstance(m, LightweightConv) and m.weight_softmax)
        ):
            out[key] = (m.weight.detach(), "conv")
    return out


def measure_sparsity(model: nn.Module) -> dict[str, Any]:
    """Zeros over the pruning set as stored: ``sparsity`` (fraction), ``zeros``, ``weights``, per kind."""
    zeros = total = 0
    by_kind: dict[str, list[int]] = {}
    for values, kind in stored_weights(model).values():
        z, n = int((values == 0).sum()), values.numel()
        zeros, total = zeros + z, total + n
        k = by_kind.setdefault(kind, [0, 0])
        k[0], k[1] = k[0] + z, k[1] + n
    return {"sparsity": zeros / max(total, 1), "zeros": zeros, "weights": total,
            "by_kind": {k: {"zeros": z, "weights": n} for k, (z, n) in by_kind.items()}}


def magnitude_masks(weights: Mapping[str, Tensor], sparsity: float, scope: str = "global") -> dict[str, Tensor]:
    """Boolean keep-masks that zero exactly round(sparsity x n) weights of the smallest magnitude: over all
    tensors together ("global", n = all weights) or within each tensor ("layer", n = its size). Ties are
    broken by position (stable sort), so the count is exact and the masks are deterministic."""
    sparsity = check_sparsity(sparsity)
    check_scope(scope)
    if scope == "layer":
        return {name: _keep_mask(w.detach().abs().flatten(), sparsity).view_as(w) for name, w in weights.items()}
    flat = torch.cat([w.detach().abs().flatten().float() for w in weights.values()]) if weights else torch.zeros(0)
    keep = _keep_mask(flat, sparsity)
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = keep[start : start + w.numel()].view_as(w)
        start += w.numel()
    return out


def _keep_mask(magnitudes: Tensor, sparsity: float) -> Tensor:
    k = int(round(sparsity * magnitudes.numel()))
    keep = torch.ones(magnitudes.numel(), dtype=torch.bool)
    if k:
        keep[torch.argsort(magnitudes, stable=True)[:k]] = False
    return keep


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Zero the masked-out weights in place (names as in ``prunable_weights``)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, keep in masks.items():
        if name not in params:
            raise BenchError(f"internal: no parameter {name} to prune")
        params[name].masked_fill_(~keep.to(params[name].device), 0.0)


def prune_model(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, Tensor]:
    """Magnitude-prune ``model`` in place; returns the keep-masks (for fine-tuning with the mask held)."""
    masks = magnitude_masks(prunable_weights(model), sparsity, scope)
    apply_masks(model, masks)
    return masks


# ============================================================================================ fine-tuning
class MaskedTrainer(Trainer):
    """The run's Trainer, with the pruning mask re-applied after every optimizer step."""

    def __init__(self, *args: Any, masks: Mapping[str, Tensor], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.masks = dict(masks)
        apply_masks(self.model, self.masks)

    def train_step(self, idx: np.ndarray) -> tuple[float, int]:
        result = super().train_step(idx)
        apply_masks(self.model, self.masks)
        return result


def run_schedule(spec: Mapping[str, Any]) -> Schedule:
    """The Schedule a run was trained with, from its spec."""
    d = dict(spec.get("schedule") or {})
    known = {f.name for f in dataclasses.fields(Schedule)}
    kw = {k: v for k, v in d.items() if k in known}
    if "name" not in kw:
        raise BenchError("the run's spec has no schedule; it cannot be fine-tuned with its own recipe")
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return Schedule(**kw)


def finetune_schedule(spec: Mapping[str, Any], tokens: int, lr: float | None = None) -> Schedule:
    """The run's recipe over ``tokens`` target tokens: peak lr = ``lr`` or a tenth of the run's, warm-up
    10% of the expected steps (at most the run's warm-up), cosine to min_lr, no intermediate validation."""
    s = run_schedule(spec)
    steps = max(1, math.ceil(tokens / s.batch_tokens))
    ft = s.with_overrides(
        max_tokens=int(tokens), max_steps=None, max_time=None,
        lr=float(lr) if lr is not None else s.lr * FINETUNE_LR_FACTOR,
        min_lr=min(s.min_lr, (float(lr) if lr is not None else s.lr * FINETUNE_LR_FACTOR) / 10),
        warmup_steps=max(1, min(s.warmup_steps, steps // 10)),
        decay="cosine",  # as documented, whatever decay the run itself used (short is inverse-sqrt)
        valid_every=10**12, checkpoint_every=10**12, log_every=max(1, min(s.log_every, steps)),
    )
    ft.check()
    return ft


def finetune_masked(model: nn.Module, spec: Mapping[str, Any], tok: Tokenizer, masks: Mapping[str, Tensor],
                    tokens: int, out_dir: Path, lr: float | None = None, progress: bool = False) -> dict[str, Any]:
    """Fine-tune ``model`` (in place) for ``tokens`` target tokens with the run's Trainer recipe, the mask held;
    the log (train.jsonl, train.json) goes to ``out_dir``. Returns the Trainer's summary."""
    sched = finetune_schedule(spec, tokens, lr)
    data = load_task_data(spec["corpus"], spec["task"], sched, int(spec.get("vocab_size") or tok.vocab_size))
    if data.tokenizer.path and tok.path and Path(data.tokenizer.path).resolve() != Path(tok.path).resolve():
        raise BenchError(f"the corpus {spec['corpus']} now gives another tokenizer ({data.tokenizer.path}) than the "
                         f"run's ({tok.path}); cannot fine-tune on the same data")
    trainer = MaskedTrainer(spec["model"], dict(spec["config"]), data, sched, int(spec.get("seed") or 1),
                            Path(out_dir), progress=progress, masks=masks)
    trainer.model.load_state_dict(model.state_dict())
    apply_masks(trainer.model, masks)
    summary = trainer.run(resume=False)
    model.load_state_dict(trainer.model.state_dict())
    # the Trainer's checkpoint (weights + Adam state) duplicates the stage's model file: not kept
    (Path(out_dir) / CHECKPOINT).unlink(missing_ok=True)
    summary["lr"] = sched.lr
    summary["warmup_steps"] = sched.warmup_steps
    return summary


# ============================================================================================ quantization
@contextmanager
def _quiet_quantization() -> Iterator[None]:
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
    with _quiet_quantization():
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


# ============================================================================================ files, sizes
def save_compressed(model: nn.Module, path: Path, spec: Mapping[str, Any], meta: Mapping[str, Any]) -> int:
    """Write the stage's model (state dict + run spec + how it was compressed) atomically; returns its size in
    bytes, measured from the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_quantization():
        atomic_save({"format": FORMAT, "spec": dict(spec), "compression": dict(meta), "model": model.state_dict()},
                    path)
    return os.path.getsize(path)


def load_compressed(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, file contents without the weights) from a ``model-<tag>.pt`` file, loaded with
    ``weights_only=True``: the model is rebuilt from the spec, re-quantized when int8, and the state dict
    loaded into it."""
    path = Path(path)
    try:
        with _quiet_quantization():
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
    with _quiet_quantization():
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
        if _is_qlinear(m):
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
    tensors += [b for m in model.modules() if _is_qlinear(m) for b in [m.bias()] if b is not None]
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


# ============================================================================================ evaluation
@dataclass
class EvalContext:
    """What every stage is evaluated on (loaded once): the run's tokenizer, corpus splits and protocol."""

    spec: dict[str, Any]
    tok: Tokenizer
    splits: dict[str, Any]
    valid: MTData
    tgt_lang: str
    beam: int
    length_penalty: float
    limit: int | None
    batch: int

    @classmethod
    def for_run(cls, spec: dict[str, Any], tok: Tokenizer, beam: int | None = None,
                length_penalty: float | None = None, max_sentences: int | None = None,
                batch: int | None = None) -> EvalContext:
        beam, lp, limit, batch = eval_settings(spec, beam, length_penalty, max_sentences, batch)
        corpus = get_corpus(spec["corpus"], task=spec["task"])
        splits = corpus.load()
        valid = encode_parallel(tok, splits["valid"].src, splits["valid"].tgt)
        return cls(spec, tok, splits, valid, str(corpus.tgt), beam, lp, limit, batch)


def evaluate_model(model: nn.Module, ctx: EvalContext, tag: str | None = None,
                   out_dir: Path | None = None) -> dict[str, Any]:
    """bench.evaluate's protocol on an in-memory model: validation NLL, then BLEU/chrF (sacreBLEU) on the test
    split and its test-clean subset. Flat keys: valid_nll, bleu, chrf, bleu_signature, chrf_signature, test_n,
    bleu_test_clean, chrf_test_clean, test_clean_n (None without a test-clean split), beam, length_penalty.
    With ``out_dir`` the hypotheses are
    written as ``hyp.<split>.<tag>.beam<b>.<lang>`` (references as ``ref.<split>.<lang>``)."""
    tok = ctx.tok
    out: dict[str, Any] = {"valid_nll": corpus_nll(model, ctx.valid, tok.pad_id, tok.bos_id),
                           "beam": ctx.beam, "length_penalty": ctx.length_penalty,
                           "bleu_test_clean": None, "chrf_test_clean": None, "test_clean_n": None}
    scores = score_test_splits(model, tok, ctx.splits, ctx.beam, ctx.length_penalty, ctx.limit, ctx.batch,
                               out_dir if tag is not None else None, f"{tag}.beam{ctx.beam}.{ctx.tgt_lang}",
                               ctx.tgt_lang)
    if "test" in scores:
        t = scores["test"]
        out.update(bleu=t["bleu"], chrf=t["chrf"], bleu_signature=t["bleu_signature"],
                   chrf_signature=t["chrf_signature"], test_n=t["n"])
    if "test-clean" in scores:
        c = scores["test-clean"]
        out.update(bleu_test_clean=c["bleu"], chrf_test_clean=c["chrf"], test_clean_n=c["n"])
    return out


def valid_bleu(model: nn.Module, ctx: EvalContext, max_sentences: int | None = None) -> dict[str, Any]:
    """BLEU/chrF on the first ``max_sentences`` of the validation split (all by default), the run's beam."""
    src = ctx.splits["valid"].src[:max_sentences]
    refs = ctx.splits["valid"].tgt[:max_sentences]
    hyps = translate(model, ctx.tok, src, beam=ctx.beam, length_penalty=ctx.length_penalty, batch=ctx.batch)
    return bleu_chrf(hyps, refs)


# ============================================================================================ latency
def measure_stage_latency(model: nn.Module, threads: Sequence[int | str | None] = (1, "all"),
                          workloads: Sequence[str] = ("forward", "translate"), name: str | None = None,
                          **timing: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``bench.latency.measure_latency`` of each workload at each thread count (batch 1, CPU, fp32 activations
    outside the int8 matmuls). Returns the flat keys ``<workload>_<p50|p90>_ms_t<threads>`` (+ ``threads_all``)
    and the full records without their raw samples. ``timing``: warmup, min_runs, min_time_s."""
    from .latency import all_cores, check_threads, measure_latency

    flat: dict[str, Any] = {}
    records, warns = [], []
    for th in threads:
        n = check_threads(th)
        for workload in workloads:
            m = measure_latency(model, workload, threads=n, gemm=False, memory=False, name=name, **timing)
            suffix = f"t{m.threads}"
            flat[f"{workload}_p50_ms_{suffix}"] = m.p50_ms
            flat[f"{workload}_p90_ms_{suffix}"] = m.p90_ms
            if m.warning:
                warns.append(f"{workload} {suffix}: {m.warning}")
            rec = m.to_dict()
            rec.pop("samples_ms", None)
            records.append(rec)
    flat["threads_all"] = all_cores()
    flat["latency_warning"] = " | ".join(warns) or None
    return flat, records


# ============================================================================================ stages
def _load_mt_run(run_dir: Path) -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not (run_dir / CHECKPOINT).exists():
        raise BenchError(f"{run_dir} has no {CHECKPOINT}; train it first (python -m bench train ... --out {run_dir})")
    model, spec, tok = load_run(run_dir)
    if spec.get("task") != "mt":
        raise BenchError(f"{run_dir} is a {spec.get('task')} run; compress measures BLEU and supports translation "
                         "runs only")
    return model, spec, tok


def _stage(model: nn.Module, tag: str, *, spec: dict[str, Any], ctx: EvalContext, out_dir: Path,
           meta: dict[str, Any], fp32_counts: dict[str, int], threads: Sequence[int | str | None],
           latency: bool, timing: Mapping[str, Any], latency_records: dict[str, Any]) -> dict[str, Any]:
    path = out_dir / f"model-{tag}.pt"
    disk = save_compressed(model, path, spec, {**meta, "tag": tag})
    sparse = sparse_int8_size(model, meta.get("qscheme", "per_channel"))
    sp = measure_sparsity(model)
    cfg = spec["config"]
    rec: dict[str, Any] = {
        "stage": "compress",
        "model": spec["model"],
        "seed": spec.get("seed"),
        "compression": tag,
        "quantize": meta.get("quantize") or "none",
        "qscheme": meta.get("qscheme") if meta.get("quantize") else None,
        "prune_target": meta.get("prune") or 0.0,
        "prune_scope": meta.get("prune_scope") if meta.get("prune") else None,
        "finetune_tokens": meta.get("finetune_tokens"),
        "sparsity": sp["sparsity"],
        "pruned_set_weights": sp["weights"],
        "file": str(path),
        "size_bytes_disk": disk,
        "size_mb_disk": disk / MB,
        "size_bytes_sparse_int8": sparse["bytes"],
        "size_mb_sparse_int8": sparse["bytes"] / MB,
        "size_mb_sparse_int8_no_emb": sparse["bytes_no_emb"] / MB,
        "size_mb_fp32_params": 4 * fp32_counts["params_total"] / MB,
        "size_mb_fp32_params_no_emb": 4 * fp32_counts["params"] / MB,
        "sparse_int8_schemes": ", ".join(f"{k}: {v}" for k, v in sorted(sparse["schemes"].items())),
        "compression_ratio": compression_ratio(disk, cfg),
        "compression_ratio_sparse_int8": compression_ratio(sparse["bytes"], cfg),
        "compression_ratio_no_emb": compression_ratio(sparse["bytes_no_emb"], cfg, include_embeddings=False),
    }
    rec.update(evaluate_model(model, ctx, tag, out_dir))
    if latency:
        flat, records = measure_stage_latency(model, threads, name=f"{spec['model']} {tag}", **timing)
        rec.update(flat)
        latency_records[tag] = records
    return rec


def compress_run(
    run_dir: Path | str,
    quantize: str | None = "int8",
    prune: float | str | None = None,
    prune_scope: str = "global",
    finetune_tokens: int | None = None,
    out_dir: Path | str | None = None,
    threads: Sequence[int | str | None] = (1, "all"),
    *,
    qscheme: str = "per_channel",
    beam: int | None = None,
    length_penalty: float | None = None,
    max_sentences: int | None = None,
    latency: bool = True,
    timing: Mapping[str, Any] | None = None,
    finetune_lr: float | None = None,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    max_bleu_drop: float = 0.5,
    choose_sentences: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Compress a trained run folder and measure every stage (module docstring): "fp32", then "int8" (with
    ``quantize``), then the pruned model ("int8+prune0.30", or "prune0.30" without ``quantize``) when
    ``prune`` is given; ``prune="auto"`` picks the sparsity with :func:`choose_sparsity` on the validation
    split. Each stage's model goes to ``out_dir/model-<tag>.pt`` (default ``RUN_DIR/compress-<final tag>``),
    everything to ``out_dir/compress.json``. Returns that dict: ``stages`` (one flat record per stage, the
    leaderboard's compress rows), ``settings``, ``choice``, ``finetune``, ``transformer_base``, ``latency``."""
    quantize = check_quantize(quantize)
    scope = check_scope(prune_scope)
    auto = isinstance(prune, str) and prune.strip().lower() == "auto"
    sparsity = None if auto or prune is None else check_sparsity(prune)
    if sparsity == 0.0:
        sparsity = None
    ft_tokens = check_tokens(finetune_tokens)
    if ft_tokens and sparsity is None and not auto:
        raise BenchError("--finetune-tokens fine-tunes a pruned model with its mask held; give --prune too")
    if quantize is None and sparsity is None and not auto:
        raise BenchError("nothing to compress: give --quantize int8, --prune SPARSITY (or auto), or both")
    if not math.isfinite(max_bleu_drop) or max_bleu_drop < 0:
        raise BenchError(f"max_bleu_drop must be >= 0, got {max_bleu_drop}")
    timing = dict(timing or {})

    model, spec, tok = _load_mt_run(Path(run_dir))
    ctx = EvalContext.for_run(spec, tok, beam, length_penalty, max_sentences)
    choice = None
    if auto:
        choice = _choose(model, spec, ctx, candidates, max_bleu_drop, quantize, scope, ft_tokens, finetune_lr,
                         choose_sentences, Path(out_dir or Path(run_dir) / "compress-choose"), progress, qscheme)
        sparsity = choice["sparsity"]
        if sparsity is None and quantize is None:
            raise BenchError(f"prune auto: no candidate sparsity kept BLEU within {max_bleu_drop} of fp32 on the "
                             "validation split, and no quantization was asked for")
    final = stage_tag(quantize, sparsity, scope, ft_tokens if sparsity else None)
    out = Path(out_dir) if out_dir else Path(run_dir) / f"compress-{final}"
    out.mkdir(parents=True, exist_ok=True)

    counts = count_params(model)
    common = dict(spec=spec, ctx=ctx, out_dir=out, fp32_counts=counts, threads=threads, latency=latency,
                  timing=timing)
    latency_records: dict[str, Any] = {}
    stages = [_stage(model, "fp32", meta={"quantize": None}, latency_records=latency_records, **common)]
    if quantize:
        qmodel = quantize_int8(model, qscheme)
        stages.append(_stage(qmodel, stage_tag(quantize, None), meta={"quantize": quantize, "qscheme": qscheme},
                             latency_records=latency_records, **common))
        del qmodel
    ft_summary = None
    if sparsity:
        pruned = copy.deepcopy(model)
        masks = prune_model(pruned, sparsity, scope)
        if ft_tokens:
            ft_summary = finetune_masked(pruned, spec, tok, masks, ft_tokens, out / "finetune", finetune_lr, progress)
            pruned.eval()
        target = quantize_int8(pruned, qscheme) if quantize else pruned
        meta = {"quantize": quantize, "qscheme": qscheme, "prune": sparsity, "prune_scope": scope,
                "finetune_tokens": ft_summary["train_tokens"] if ft_summary else None}
        stages.append(_stage(target, final, meta=meta, latency_records=latency_records, **common))
    result = {
        "run_dir": str(run_dir),
        "out_dir": str(out),
        "model": spec["model"],
        "seed": spec.get("seed"),
        "settings": {"quantize": quantize, "qscheme": qscheme if quantize else None, "prune": sparsity,
                     "prune_auto": auto, "prune_scope": scope, "finetune_tokens": ft_tokens,
                     "finetune_lr": ft_summary["lr"] if ft_summary else None, "beam": ctx.beam,
                     "length_penalty": ctx.length_penalty, "test_sentences": ctx.limit,
                     "threads": [str(t) for t in threads] if latency else [], "torch": torch.__version__,
                     "quantized_engine": torch.backends.quantized.engine},
        "stages": stages,
        "choice": choice,
        "finetune": ft_summary,
        "transformer_base": {**transformer_base_size(spec["config"]), **BASE_SHAPE},
        "latency": latency_records,
    }
    atomic_write_text(out / "compress.json", json.dumps(result, indent=2, default=str))
    return result


# ============================================================================================ sparsity choice
def _choose(model: nn.Module, spec: dict[str, Any], ctx: EvalContext, candidates: Sequence[float],
            max_bleu_drop: float, quantize: str | None, scope: str, finetune_tokens: int | None,
            finetune_lr: float | None, max_sentences: int | None, out_dir: Path,
            progress: bool, qscheme: str = "per_channel") -> dict[str, Any]:
    cands = sorted({check_sparsity(c, "candidate") for c in candidates} - {0.0})
    if not cands:
        raise BenchError("choose_sparsity needs at least one candidate sparsity in (0, 1)")
    ref = valid_bleu(model, ctx, max_sentences)
    tried, chosen = [], None
    for s in cands:
        pruned = copy.deepcopy(model)
        masks = prune_model(pruned, s, scope)
        if finetune_tokens:
            finetune_masked(pruned, spec, ctx.tok, masks, finetune_tokens, out_dir / f"choose-{s:.2f}", finetune_lr,
                            progress)
            pruned.eval()
        target = quantize_int8(pruned, qscheme) if quantize else pruned
        score = valid_bleu(target, ctx, max_sentences)
        drop = ref["bleu"] - score["bleu"]
        ok = drop <= max_bleu_drop
        tried.append({"sparsity": s, "bleu": score["bleu"], "chrf": score["chrf"], "bleu_drop": drop, "ok": ok})
        if not ok:
            break
        chosen = s
    return {
        "sparsity": chosen,
        "split": "valid",
        "valid_sentences": ref["n"],
        "reference": "fp32",
        "reference_bleu": ref["bleu"],
        "bleu_signature": ref["bleu_signature"],
        "max_bleu_drop": max_bleu_drop,
        "pipeline": "+".join([*([quantize] if quantize else []), "prune<s>" + ("-layer" if scope == "layer" else ""),
                              *([f"ft{_human(finetune_tokens)}"] if finetune_tokens else [])]),
        "rule": "candidates in increasing order; the last one before the first whose BLEU drop exceeds "
                "max_bleu_drop (None when the smallest already does)",
        "candidates": tried,
    }


def choose_sparsity(
    run_dir: Path | str,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    max_bleu_drop: float = 0.5,
    *,
    quantize: str | None = "int8",
    qscheme: str = "per_channel",
    prune_scope: str = "global",
    finetune_tokens: int | None = None,
    finetune_lr: float | None = None,
    max_sentences: int | None = None,
    beam: int | None = None,
    out_dir: Path | str | None = None,
) -> dict[str, Any]:
    """The largest candidate sparsity whose pruned (+ int8, + fine-tuned when asked) model keeps BLEU within
    ``max_bleu_drop`` of the fp32 model, measured on the validation split (the first ``max_sentences``
    sentences; never the test split, so the choice is not tuned on test), with the run's beam. Candidates
    are tried in increasing order and the search stops at the first failure. Returns ``sparsity`` (None when
    even the smallest candidate fails) and every candidate's BLEU, chrF and drop."""
    quantize = check_quantize(quantize)
    scope = check_scope(prune_scope)
    ft = check_tokens(finetune_tokens)
    if not math.isfinite(max_bleu_drop) or max_bleu_drop < 0:
        raise BenchError(f"max_bleu_drop must be >= 0, got {max_bleu_drop}")
    model, spec, tok = _load_mt_run(Path(run_dir))
    ctx = EvalContext.for_run(spec, tok, beam)
    out = Path(out_dir) if out_dir else Path(run_dir) / "compress-choose"
    return _choose(model, spec, ctx, candidates, max_bleu_drop, quantize, scope, ft, finetune_lr, max_sentences,
                   out, False, qscheme)


# ============================================================================================ command line
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compress`` to ``python -m bench``'s subcommands (``subparsers`` from ``add_subparsers``)."""
    p = subparsers.add_parser("compress", help=HELP, description=HELP)
    p.add_argument("run_dir", help="a trained run folder (python -m bench train ... --out RUN_DIR)")
    p.add_argument("--quantize", default=None, metavar="{int8,none}",
                   help="8-bit weights for every nn.Linear (PyTorch dynamic quantization)")
    p.add_argument("--qscheme", default="per_channel", metavar="{per_channel,per_tensor}",
                   help="int8 weight scales: one per output channel (default) or one per tensor")
    p.add_argument("--prune", default=None, metavar="SPARSITY",
                   help="magnitude-prune this fraction of the Linear/conv weights, in [0, 1), or 'auto' (the "
                        "largest of 0.1..0.5 that keeps validation BLEU within --max-bleu-drop of fp32)")
    p.add_argument("--prune-scope", default="global", metavar="{global,layer}",
                   help="one threshold over all weights (global, default) or the same fraction in each tensor")
    p.add_argument("--finetune-tokens", default=None, metavar="N",
                   help="fine-tune the pruned model for N target tokens with the mask held (the run's recipe)")
    p.add_argument("--max-bleu-drop", default="0.5", help="--prune auto: allowed BLEU drop (default 0.5)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/compress-<tag>)")
    p.add_argument("--beam", default=None, help="beam size (default: the run's schedule, 4; 1 = greedy)")
    p.add_argument("--max-sentences", default=None, help="score only the first N test sentences")
    p.add_argument("--threads", default="1,all", help="latency thread counts, comma-separated (default 1,all)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    return p


def _int_arg(option: str, text: str | None, minimum: int = 1) -> int | None:
    if text is None:
        return None
    try:
        value = int(str(text))
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise BenchError(f"{option} must be an integer >= {minimum}, got {text!r}")
    return value


def _prune_arg(text: str | None) -> float | str | None:
    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        return "auto"
    return check_sparsity(text)


def run(args: argparse.Namespace) -> int:
    """``python -m bench compress``: compress, measure, print a table (or ``--json``, one object)."""
    from .latency import check_threads

    threads = [t.strip() for t in re.split(r"[,\s]+", args.threads or "") if t.strip()]
    for t in threads:
        check_threads(t)
    try:
        drop = float(args.max_bleu_drop)
    except ValueError:
        drop = math.nan
    if not (math.isfinite(drop) and drop >= 0):
        raise BenchError(f"--max-bleu-drop must be a number >= 0, got {args.max_bleu_drop!r}")
    qscheme = args.qscheme
    if qscheme not in QSCHEMES:
        raise BenchError(f"--qscheme: unknown scheme {qscheme!r}; valid: {', '.join(QSCHEMES)}")
    res = compress_run(
        Path(args.run_dir),
        quantize=check_quantize(args.quantize),
        prune=_prune_arg(args.prune),
        prune_scope=check_scope(args.prune_scope),
        finetune_tokens=_int_arg("--finetune-tokens", args.finetune_tokens),
        out_dir=Path(args.out) if args.out else None,
        threads=[int(t) if t.isdigit() else t for t in threads] or [1],
        qscheme=qscheme,
        beam=_int_arg("--beam", args.beam),
        max_sentences=_int_arg("--max-sentences", args.max_sentences),
        latency=not args.no_latency,
        max_bleu_drop=drop,
    )
    if args.json:
        json.dump(res, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    print(summary_table(res))
    return 0


def summary_table(res: Mapping[str, Any]) -> str:
    """A few lines a person reads: one per stage, with units and conventions."""
    base = res["transformer_base"]
    lines = [f"{res['model']} (seed {res['seed']}): compressed stages in {res['out_dir']}"]
    ch = res.get("choice")
    if ch:
        tried = ", ".join(f"{c['sparsity']:.2f}: {c['bleu']:.2f}" for c in ch["candidates"])
        lines.append(f"  sparsity chosen on the validation split ({ch['valid_sentences']} sentences): "
                     f"{ch['sparsity']} (fp32 BLEU {ch['reference_bleu']:.2f}, allowed drop {ch['max_bleu_drop']}; "
                     f"tried {tried})")
    head = f"  {'stage':<28} {'sparsity':>8} {'disk MB':>9} {'sp-int8 MB':>10} {'ratio':>6} {'BLEU':>6} " \
           f"{'chrF':>6} {'vNLL':>6} {'fwd ms t1':>9} {'tr ms t1':>9}"
    lines.append(head)
    for s in res["stages"]:
        def fmt(key: str, spec: str = ".2f", s: Mapping[str, Any] = s) -> str:
            v = s.get(key)
            return format(v, spec) if isinstance(v, (int, float)) else "-"

        lines.append(
            f"  {s['compression']:<28} {fmt('sparsity', '.3f'):>8} {fmt('size_mb_disk', '.3f'):>9} "
            f"{fmt('size_mb_sparse_int8', '.3f'):>10} {fmt('compression_ratio', '.1f'):>6} {fmt('bleu'):>6} "
            f"{fmt('chrf'):>6} {fmt('valid_nll', '.3f'):>6} {fmt('forward_p50_ms_t1', '.2f'):>9} "
            f"{fmt('translate_p50_ms_t1', '.2f'):>9}"
        )
    lines.append(f"  ratio: fp32 Transformer base (d=512, ffn 2048, 6+6, same vocabulary; {base['params_total']:,} "
                 f"params x 4 B = {base['bytes_fp32'] / MB:.1f} MB) / size on disk; MB = 10^6 bytes; latency: "
                 "batch 1, p50, forward = 30+30 tokens, translate = 30 greedy steps")
    return "\n".join(lines)
