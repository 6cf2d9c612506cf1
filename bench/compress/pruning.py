"""Magnitude pruning and fine-tuning with the mask held.

The pruning set: the weights of every ``nn.Linear``, ``nn.Conv1d`` and depthwise convolution kernel, except
the softmax-normalised lightweight convolution kernels (a zeroed logit is not a zeroed tap). Embeddings, norms
and biases are untouched. "global": one magnitude threshold over all those weights together (Han et al.);
"layer": every tensor pruned to the same fraction. Exactly round(sparsity x n) weights are zeroed (the
smallest |w|, ties broken by position). Fine-tuning reuses the run's own Trainer recipe (data, optimizer,
label smoothing, clipping, precision) at a tenth of its peak learning rate, a short warm-up and a cosine decay
over the fine-tuning tokens, with the mask re-applied after every optimizer step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.compress.quantization import is_qlinear
from bench.data import Tokenizer
from bench.errors import BenchError
from bench.train.schedules import Schedule
from bench.train.trainer import CHECKPOINT, Trainer, load_task_data
from models.layers.convolution import DepthwiseConv, LightweightConv

FINETUNE_LR_FACTOR = 0.1  # fine-tuning peak learning rate = this x the run's peak learning rate
PRUNE_SCOPES = ("global", "layer")


def check_sparsity(value: Any, what: str = "--prune") -> float:
    """A sparsity in [0, 1) as a float; anything else is one clear BenchError line."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = math.nan
    if isinstance(value, bool) or not (0.0 <= s < 1.0):
        raise BenchError(f"{what}: sparsity must be a number in [0, 1), got {value!r}")
    return s



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



def stored_weights(model: nn.Module) -> dict[str, tuple[Tensor, str]]:
    """The pruning set as the model stores it: name -> (values, kind). Kinds: "int8" (an int8 dynamic
    Linear: its int8 values), "linear" (an fp32 nn.Linear weight), "conv" (a convolution kernel, fp32)."""
    out: dict[str, tuple[Tensor, str]] = {}
    for name, m in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if is_qlinear(m):
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
    broken by position (stable sort), so the count is exact and the masks are deterministic.

    Args:
        weights: name -> the prunable weight tensors.
        sparsity: the fraction zeroed, in [0, 1).
        scope: "global" (one ranking over all weights) or "layer" (per tensor).
    """
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
    """Magnitude-prune ``model`` in place; returns the keep-masks (for fine-tuning with the mask held).

    Args:
        model: pruned in place (its prunable weights: :func:`prunable_weights`).
        sparsity: the fraction zeroed, in [0, 1).
        scope: "global" or "layer" (:func:`magnitude_masks`).
    """
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
    10% of the expected steps (at most the run's warm-up), cosine to min_lr, no intermediate validation.

    Args:
        spec: the run's spec (run.json), whose schedule is the recipe.
        tokens: target tokens to fine-tune on.
        lr: the peak learning rate; None: a tenth of the run's.
    """
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
    the log (train.jsonl, train.json) goes to ``out_dir``. Returns the Trainer's summary.

    Args:
        model: the pruned model, fine-tuned in place.
        spec: the run's spec (its corpus, task, config, schedule and seed).
        tok: the run's tokenizer; the corpus must still give the same one.
        masks: name -> keep-mask (:func:`prune_model`), held throughout.
        tokens: target tokens to fine-tune on.
        out_dir: where the training log goes.
        lr: the peak learning rate; None: a tenth of the run's.
        progress: show a progress bar.
    """
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
