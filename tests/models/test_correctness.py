"""Wiring proofs for every family: causality, incremental caches, padding, beam search, determinism."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from models.seq2seq import next_token
from tests.conftest import VOCAB, random_tokens, small_model

TASKS = ["mt", "lm"]


def tgt_vocab(model) -> int:
    return model.config.target_vocab


def run(model, src, tgt):
    return model(src, tgt) if model.config.task == "mt" else model(tgt)


@pytest.mark.parametrize("task", TASKS)
def test_causality(family_key, task):
    model = small_model(family_key, task)
    src = random_tokens(2, 9, seed=3)
    tgt = random_tokens(2, 12, tgt_vocab(model), seed=4)
    ref = run(model, src, tgt)
    for t in (0, 4, 10):
        changed = tgt.clone()
        changed[:, t + 1 :] = random_tokens(2, 12 - t - 1, tgt_vocab(model), seed=5 + t)
        out = run(model, src, changed)
        assert (
            torch.equal(out[:, : t + 1], ref[:, : t + 1])
            or (out[:, : t + 1] - ref[:, : t + 1]).abs().max() < 1e-5
        )
        assert (out[:, t + 1 :] - ref[:, t + 1 :]).abs().max() > 1e-3  # the change is visible after t


@pytest.mark.parametrize("task", TASKS)
def test_incremental_logits_equal_full_pass(family_key, task):
    model = small_model(family_key, task)
    src = random_tokens(3, 8, seed=6)
    tgt = random_tokens(3, 11, tgt_vocab(model), seed=7)
    tgt[:, 0] = model.config.bos_id
    full = run(model, src, tgt)
    state: dict = {}
    steps = []
    with torch.no_grad():
        enc = model.encode(src) if task == "mt" else None
        for t in range(1, tgt.size(1) + 1):
            prefix = tgt[:, :t]
            logits = model.decode(prefix, enc, state) if task == "mt" else model.decode(prefix, state)
            assert logits.shape[1] == 1
            steps.append(logits)
    inc = torch.cat(steps, dim=1)
    assert (inc - full).abs().max().item() < 1e-4


def test_greedy_equals_argmax_of_teacher_forced_pass(family_key):
    model = small_model(family_key, "mt")
    src = random_tokens(3, 9, seed=8)
    out = model.generate(src, max_len=12)
    cfg = model.config
    for b in range(src.size(0)):
        hyp = out[b][out[b] != cfg.pad_id]
        prev = torch.cat([torch.tensor([cfg.bos_id]), hyp[:-1]])[None]
        with torch.no_grad():
            argmax = next_token(model(src[b : b + 1], prev), cfg)[0]
        assert torch.equal(argmax, hyp)


def test_lm_greedy_equals_argmax(family_key):
    model = small_model(family_key, "lm")
    prefix = random_tokens(2, 5, seed=9)
    new = model.generate(prefix, max_len=6, early_stop=False)
    for b in range(2):
        seq = torch.cat([prefix[b], new[b]])
        with torch.no_grad():
            argmax = next_token(model(seq[None, :-1]), model.config)[0, prefix.size(1) - 1 :]
        live = new[b] != model.config.pad_id
        assert torch.equal(argmax[live], new[b][live])


def test_padding_changes_nothing_at_real_positions(family_key):
    model = small_model(family_key, "mt")
    pad = model.config.pad_id
    src = random_tokens(2, 7, seed=10)
    tgt = random_tokens(2, 6, tgt_vocab(model), seed=11)
    ref = model(src, tgt)
    # source padded on the left for one sentence and on the right for the other; target padded on the right
    src_p = torch.full((2, 10), pad)
    src_p[0, 3:] = src[0]
    src_p[1, :7] = src[1]
    tgt_p = torch.full((2, 9), pad)
    tgt_p[:, :6] = tgt
    out = model(src_p, tgt_p)
    assert (out[:, :6] - ref).abs().max().item() < 1e-5
    # a batch with a shorter sentence gives that sentence the output it gets alone
    alone = model(src[1:, :4], tgt[1:])
    mixed_src = src.clone()
    mixed_src[1, 4:] = pad
    assert (model(mixed_src, tgt)[1:] - alone).abs().max().item() < 1e-5


def test_lm_padding(family_key):
    model = small_model(family_key, "lm")
    tok = random_tokens(2, 6, seed=12)
    padded = torch.cat([tok, torch.full((2, 3), model.config.pad_id)], dim=1)
    assert (model(padded)[:, :6] - model(tok)).abs().max().item() < 1e-5


def test_beam_one_equals_greedy(family_key):
    model = small_model(family_key, "mt")
    src = random_tokens(4, 9, seed=13)
    with torch.no_grad():
        enc = model.encode(src)
        greedy = model._greedy(enc, 4, 10)
        beam1 = model._beam_search(enc, 4, 10, beam=1, length_penalty=1.0)
    for b in range(4):
        g = greedy[b][greedy[b] != model.config.pad_id]
        h = beam1[b][beam1[b] != model.config.pad_id]
        assert torch.equal(g, h)


def _sequence_logprob(model, src, seq):
    cfg = model.config
    prev = torch.tensor([[cfg.bos_id] + seq[:-1]])
    with torch.no_grad():
        lp = F.log_softmax(model(src, prev).float(), dim=-1)[0]
    return sum(lp[i, t].item() for i, t in enumerate(seq))


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_wide_beam_finds_the_exhaustive_optimum(length_penalty):
    """With a beam wider than the search space, beam search must return the best sequence found by
    enumerating every output of length <= 3 (an independent reference)."""
    model = small_model("transformer", "mt", vocab_size=7)
    cfg = model.config
    src = torch.tensor([[4, 5, 6, 5]])
    words = [3, 4, 5, 6]  # every id but bos/pad/eos
    ended = [[*body, cfg.eos_id] for n in (0, 1, 2) for body in itertools.product(words, repeat=n)]
    unfinished = [list(seq) for seq in itertools.product(words, repeat=3)]  # max_len reached without EOS
    scored = [(_sequence_logprob(model, src, s) / len(s) ** length_penalty, s) for s in ended + unfinished]
    best = max(scored)
    out = model.generate(src, max_len=3, beam=30, length_penalty=length_penalty)[0]
    hyp = out[out != cfg.pad_id].tolist()
    assert hyp == best[1]


def test_beam_search_batched_equals_one_by_one():
    model = small_model("lite_dynamic_glu", "mt")
    src = random_tokens(3, 8, seed=14)
    batched = model.generate(src, max_len=9, beam=3)
    for b in range(3):
        alone = model.generate(src[b : b + 1], max_len=9, beam=3)[0]
        a = alone[alone != model.config.pad_id]
        assert torch.equal(batched[b][: len(a)], a)


def test_fixed_seed_gives_identical_weights_and_outputs(family_key):
    a, b = small_model(family_key, seed=123), small_model(family_key, seed=123)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    src = random_tokens(2, 7, seed=15)
    assert torch.equal(a.generate(src, 8, beam=2), b.generate(src, 8, beam=2))
    c = small_model(family_key, seed=124)
    assert not torch.equal(a(src, src[:, :5] % tgt_vocab(a)), c(src, src[:, :5] % tgt_vocab(a)))


def test_generate_stops_and_pads():
    model = small_model("transformer", "mt")
    out = model.generate(random_tokens(3, 6, seed=16), max_len=7)
    assert out.shape[0] == 3 and out.shape[1] <= 7
    cfg = model.config
    for row in out.tolist():
        if cfg.eos_id in row:
            i = row.index(cfg.eos_id)
            assert all(t == cfg.pad_id for t in row[i + 1 :])
    forced = model.generate(random_tokens(3, 6, seed=16), max_len=7, early_stop=False)
    assert forced.shape == (3, 7)


def test_vocab_sizes_and_tying():
    tied = small_model("transformer")
    assert tied.output.tied and tied.output.weight is tied.encoder.embed.embed.weight
    assert tied.encoder.embed.embed.weight is tied.decoder.embed.embed.weight
    untied = small_model("lite_light_iwslt")
    assert untied.encoder.embed.embed.num_embeddings == VOCAB
    assert untied.decoder.embed.embed.num_embeddings == 45
    assert untied(random_tokens(1, 5), random_tokens(1, 4, 45)).shape == (1, 4, 45)
