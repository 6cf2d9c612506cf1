"""Validation measures shared by training, evaluation and the report: the NLL of a corpus (and per sentence,
for paired tests), the fixed validation sample a run validates on during training, and the unigram entropy of
the target side (the plateau of a run that learns nothing but token frequencies)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.train.batching import MTData, collate_mt, token_batches


def label_smoothed_nll(logits: Tensor, target: Tensor, eps: float, pad: int) -> tuple[Tensor, Tensor]:
    """(smoothed loss sum, NLL sum) over non-pad targets, fairseq's formula: (1 - eps - eps_i) * nll +
    eps_i * sum_v(-log p_v), eps_i = eps / (V - 1).

    Args:
        logits: the scores, vocabulary last.
        target: the target ids.
        eps: the label smoothing (0: the plain NLL).
        pad: the padding id, not counted.
    """
    lprobs = F.log_softmax(logits.float(), dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(-1)
    mask = target.ne(pad)
    nll, smooth = nll[mask], smooth[mask]
    eps_i = eps / (lprobs.size(-1) - 1)
    loss = (1.0 - eps - eps_i) * nll + eps_i * smooth
    return loss.sum(), nll.sum()


def subset(data: Any, n: int | None, seed: int | None = None) -> Any:
    """The first ``n`` items of ``data`` (MTData or LM blocks), or, with a ``seed``, ``n`` items drawn at random
    without replacement (the same draw for every run: a fixed sample of the split, in its original order).

    Args:
        data: MTData, or a language model's (inputs, targets) blocks.
        n: items kept; None: all.
        seed: None: the first ``n``; else the seed of the draw.
    """
    size = len(data) if isinstance(data, MTData) else len(data[0])
    if n is None or n >= size:
        return data
    if seed is None:
        idx = list(range(n))
    else:
        idx = sorted(np.random.default_rng(seed).choice(size, size=n, replace=False).tolist())
    if isinstance(data, MTData):
        return MTData([data.src[i] for i in idx], [data.tgt[i] for i in idx])
    index = torch.as_tensor(idx, dtype=torch.long)
    return data[0][index], data[1][index]


def unigram_entropy(data: Any, pad: int) -> float:
    """Entropy (nats per token) of the target-side unigram distribution of ``data``, EOS included: the
    validation NLL of a model that has learnt token frequencies and nothing else (the plateau a run that
    fails to train sits on)."""
    if isinstance(data, MTData):
        tokens = np.concatenate([np.asarray(t, dtype=np.int64) for t in data.tgt])
    else:
        tokens = data[1].reshape(-1).numpy()
        tokens = tokens[tokens != pad]
    counts = np.bincount(tokens).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@torch.no_grad()
def corpus_nll(
    model: nn.Module, data: Any, pad: int, bos: int, batch_tokens: int = 4096, device: torch.device | str = "cpu"
) -> float:
    """Mean NLL per target token (nats) of ``data`` (MTData, or LM (inputs, targets) blocks), fp32.

    Args:
        model: the model, evaluated in eval mode (its mode restored).
        data: MTData, or a language model's (inputs, targets) blocks.
        pad: the padding id.
        bos: the BOS id, which prev_output_tokens starts with.
        batch_tokens: tokens per batch.
        device: where the batches go.
    """
    was = model.training
    model.eval()
    total, count = 0.0, 0
    if isinstance(data, MTData):
        for idx in token_batches(data, batch_tokens, seed=0):
            b = collate_mt(data, idx, pad, bos)
            logits = model(b["src"].to(device), b["prev"].to(device))
            _, nll = label_smoothed_nll(logits, b["target"].to(device), 0.0, pad)
            total, count = total + float(nll), count + b["ntokens"]
    else:
        inputs, targets = data
        per = max(1, batch_tokens // max(inputs.size(1), 1))
        for i in range(0, len(inputs), per):
            y = targets[i : i + per].to(device)
            _, nll = label_smoothed_nll(model(inputs[i : i + per].to(device)), y, 0.0, pad)
            total, count = total + float(nll), count + int(y.ne(pad).sum())
    model.train(was)
    return total / max(count, 1)


def _row_nll(logits: Tensor, target: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Per row of a batch: the summed NLL of its non-pad targets (nats, fp32) and how many there are."""
    lprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    mask = target.ne(pad)
    return -(lprobs * mask).sum(-1), mask.sum(-1)


@torch.no_grad()
def sentence_nll(
    model: nn.Module, data: Any, pad: int, bos: int, batch_tokens: int = 4096, device: torch.device | str = "cpu"
) -> tuple[list[float], list[int]]:
    """Per sentence of ``data`` (MTData), or per block of a language model's (inputs, targets) blocks, in its
    order: the summed NLL of its target tokens (nats, fp32) and their count; sum(nll) / sum(count) is
    :func:`corpus_nll`. What a paired bootstrap over sentences (or blocks) resamples.

    Args:
        model: the model, evaluated in eval mode (its mode restored).
        data: MTData, or a language model's (inputs, targets) blocks.
        pad: the padding id.
        bos: the BOS id, which prev_output_tokens starts with.
        batch_tokens: tokens per batch.
        device: where the batches go.
    """
    was = model.training
    model.eval()
    if not isinstance(data, MTData):
        inputs, targets = data
        sums, counts = [], []
        per = max(1, batch_tokens // max(inputs.size(1), 1))
        for i in range(0, len(inputs), per):
            target = targets[i : i + per].to(device)
            nll, n = _row_nll(model(inputs[i : i + per].to(device)), target, pad)
            sums += nll.tolist()
            counts += n.tolist()
        model.train(was)
        return sums, counts
    sums, counts = [0.0] * len(data), [0] * len(data)
    for idx in token_batches(data, batch_tokens, seed=0):
        b = collate_mt(data, idx, pad, bos)
        per_row, n = _row_nll(model(b["src"].to(device), b["prev"].to(device)), b["target"].to(device), pad)
        for row, j in enumerate(idx):
            sums[int(j)], counts[int(j)] = float(per_row[row]), int(n[row])
    model.train(was)
    return sums, counts
