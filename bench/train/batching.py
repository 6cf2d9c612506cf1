"""Tokenized datasets and token-count batches bucketed by length.

Translation examples carry EOS at the end of both sides (fairseq's convention); the decoder input is
``[BOS] + target`` without its EOS, and the prediction target is ``target`` with it. Language models read a
stream of sentences, each ending with EOS, cut into blocks of ``block`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bench.data import Tokenizer


@dataclass
class MTData:
    src: list[np.ndarray]
    tgt: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.src)


def encode_parallel(tok: Tokenizer, src: list[str], tgt: list[str], max_len: int | None = None) -> MTData:
    """Sentences -> id arrays with EOS appended; pairs longer than ``max_len`` on either side are skipped.

    Args:
        tok: the tokenizer.
        src: the source sentences.
        tgt: the target sentences, aligned.
        max_len: the longest side kept, in subwords with EOS; None: every pair.
    """
    eos = tok.eos_id
    out_s, out_t = [], []
    for s, t in zip(src, tgt):
        si = np.asarray(tok.encode(s) + [eos], dtype=np.int32)
        ti = np.asarray(tok.encode(t) + [eos], dtype=np.int32)
        if max_len is not None and (len(si) > max_len or len(ti) > max_len):
            continue
        out_s.append(si)
        out_t.append(ti)
    return MTData(out_s, out_t)


def encode_stream(tok: Tokenizer, lines: list[str]) -> np.ndarray:
    ids: list[int] = []
    for line in lines:
        ids.extend(tok.encode(line))
        ids.append(tok.eos_id)
    return np.asarray(ids, dtype=np.int32)


def token_batches(data: MTData, batch_tokens: int, seed: int) -> list[np.ndarray]:
    """Index batches: examples sorted by (target, source) length (ties broken by a seeded shuffle), then cut
    so that batch size x longest side <= batch_tokens. Every example lands in exactly one batch.

    Args:
        data: the encoded pairs.
        batch_tokens: the cap on batch size x longest side.
        seed: the tie-breaking shuffle's seed.
    """
    n = len(data)
    order = np.random.RandomState(seed).permutation(n)
    src_len = np.array([len(s) for s in data.src])[order]
    tgt_len = np.array([len(t) for t in data.tgt])[order]
    order = order[np.lexsort((src_len, tgt_len))]
    batches, current, longest = [], [], 0
    for i in order:
        size = max(len(data.src[i]), len(data.tgt[i]))
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(np.asarray(current))
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(np.asarray(current))
    return batches


def epoch_order(n_batches: int, seed: int, epoch: int) -> np.ndarray:
    """The order the batches are visited in an epoch: a permutation fixed by (seed, epoch).

    Args:
        n_batches: batches in the epoch.
        seed: the run's seed.
        epoch: the epoch's number.
    """
    return np.random.RandomState((seed * 100_003 + epoch) % 2**32).permutation(n_batches)


def collate_mt(data: MTData, idx: np.ndarray, pad: int, bos: int) -> dict[str, Tensor]:
    """(src, prev_output_tokens, target) padded on the right; ``ntokens`` counts real target tokens.

    Args:
        data: the encoded pairs.
        idx: the batch's example indices.
        pad: the padding id.
        bos: the id prev_output_tokens starts with.
    """
    b = len(idx)
    S = max(len(data.src[i]) for i in idx)
    T = max(len(data.tgt[i]) for i in idx)
    src = torch.full((b, S), pad, dtype=torch.long)
    prev = torch.full((b, T), pad, dtype=torch.long)
    target = torch.full((b, T), pad, dtype=torch.long)
    for row, i in enumerate(idx):
        s, t = torch.from_numpy(data.src[i].astype(np.int64)), torch.from_numpy(data.tgt[i].astype(np.int64))
        src[row, : len(s)] = s
        target[row, : len(t)] = t
        prev[row, 0] = bos
        prev[row, 1 : len(t)] = t[:-1]
    return {"src": src, "prev": prev, "target": target, "ntokens": int(target.ne(pad).sum())}


def lm_blocks(stream: np.ndarray, block: int) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of shape (n, block): targets are inputs shifted by one token."""
    n = (len(stream) - 1) // block
    ids = torch.from_numpy(stream[: n * block + 1].astype(np.int64))
    return ids[:-1].view(n, block), ids[1:].view(n, block)


def lm_batches(n_blocks: int, batch_tokens: int, block: int) -> list[np.ndarray]:
    """Consecutive block indices, ``batch_tokens // block`` blocks per batch (at least one).

    Args:
        n_blocks: blocks in the split.
        batch_tokens: tokens per batch.
        block: tokens per block.
    """
    per = max(1, batch_tokens // block)
    return [np.arange(i, min(i + per, n_blocks)) for i in range(0, n_blocks, per)]
