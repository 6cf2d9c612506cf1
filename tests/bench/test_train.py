"""Training and evaluation on a tiny corpus: batching, loss, schedule, exact resume, DDP, BLEU, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
import torch.multiprocessing as mp

from bench.budget.spec import load_budget
from bench.data import DataError
from bench.errors import BenchError
from bench.evaluation.evaluate import bleu_chrf, evaluate_run
from bench.train.batching import MTData, collate_mt, epoch_order, token_batches
from bench.train.run_folder import load_checkpoint
from bench.train.schedules import get_schedule, parse_schedule_sets
from bench.train.trainer import Trainer, label_smoothed_nll, learning_rate, load_task_data
from tests.toy_corpus import write_corpus, write_lm_corpus

TINY = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, ffn_dim=64, dropout=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "toy")


def schedule(**kw):
    base = dict(
        max_steps=12,
        batch_tokens=256,
        warmup_steps=3,
        valid_every=4,
        valid_sentences=None,
        checkpoint_every=4,
        log_every=2,
        precision="fp32",
        max_len=64,
        eval_beam=2,
        eval_sentences=None,
    )
    base.update(kw)
    return get_schedule("quick", **base)


def task_data(corpus: Path, sched):
    return load_task_data(str(corpus), "mt", sched, vocab_size=60)


def trainer(corpus: Path, out: Path, sched=None, seed: int = 3, **config) -> Trainer:
    sched = sched or schedule()
    return Trainer("transformer", {**TINY, **config}, task_data(corpus, sched), sched, seed, out, progress=False)


# ---------------------------------------------------------------------------------------------- batching
def test_batches_cover_every_sentence_once_per_epoch():
    rng = np.random.RandomState(0)
    data = MTData([np.ones(rng.randint(2, 30)) for _ in range(500)], [np.ones(rng.randint(2, 30)) for _ in range(500)])
    batches = token_batches(data, 200, seed=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        longest = max(max(len(data.src[i]), len(data.tgt[i])) for i in b)
        assert longest * len(b) <= 200 or len(b) == 1
    assert sorted(epoch_order(len(batches), 1, 0).tolist()) == list(range(len(batches)))
    assert not np.array_equal(epoch_order(len(batches), 1, 0), epoch_order(len(batches), 1, 1))


def test_collate_shifts_targets():
    data = MTData([np.array([5, 6, 2])], [np.array([7, 8, 9, 2])])
    b = collate_mt(data, np.array([0]), pad=1, bos=0)
    assert b["prev"].tolist() == [[0, 7, 8, 9]] and b["target"].tolist() == [[7, 8, 9, 2]]
    assert b["ntokens"] == 4


# -------------------------------------------------------------------------------------------- loss, lr
def test_label_smoothed_loss_equals_naive_formula():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 7), torch.tensor([[4, 5, 1], [2, 1, 1]])
    loss, nll = label_smoothed_nll(logits, target, 0.1, pad=1)
    lp = torch.log_softmax(logits, -1)
    exp_loss = exp_nll = 0.0
    for b in range(2):
        for t in range(3):
            if target[b, t] == 1:
                continue
            for v in range(7):  # target prob 1 - eps, the other V-1 share eps
                q = 0.9 if v == target[b, t] else 0.1 / 6
                exp_loss -= q * lp[b, t, v].item()
            exp_nll -= lp[b, t, target[b, t]].item()
    assert abs(nll.item() - exp_nll) < 1e-4 and abs(loss.item() - exp_loss) < 1e-4


def test_learning_rate_schedule():
    s = get_schedule("short", decay="cosine")
    assert learning_rate(s, 0, 0) == pytest.approx(s.lr / s.warmup_steps)
    assert learning_rate(s, s.warmup_steps - 1, 0) == pytest.approx(s.lr)
    assert learning_rate(s, 10_000, s.max_tokens, 100_000) == pytest.approx(s.min_lr)
    # the cosine starts at the peak where warm-up ended (no jump) and is halfway at the middle of the rest
    assert learning_rate(s, s.warmup_steps, 100_000, 100_000) == pytest.approx(s.lr)
    mid = learning_rate(s, 10_000, (s.max_tokens + 100_000) // 2, 100_000)
    assert mid == pytest.approx(s.min_lr + 0.5 * (s.lr - s.min_lr))
    inv = get_schedule("full")
    assert learning_rate(inv, 4 * inv.warmup_steps - 1, 0) == pytest.approx(inv.lr / 2)


def test_schedule_sets_are_typed_and_bad_ones_are_one_line():
    got = parse_schedule_sets(["batch_tokens=1024", "lr=2e-3", "decay=inverse_sqrt", "max_tokens=3e6",
                               "max_steps=none", "betas=0.9,0.997"])
    assert got == {"batch_tokens": 1024, "lr": 0.002, "decay": "inverse_sqrt", "max_tokens": 3_000_000,
                   "max_steps": None, "betas": (0.9, 0.997)}
    assert type(got["batch_tokens"]) is int and type(got["max_tokens"]) is int
    s = get_schedule("short", **got)
    assert (s.batch_tokens, s.lr, s.max_steps, s.betas) == (1024, 0.002, None, (0.9, 0.997))
    for bad, says in [("nonsense=1", "valid keys"), ("lr", "KEY=VALUE"), ("batch_tokens=1.5", "expected int"),
                      ("lr=fast", "expected float"), ("name=x", "valid keys")]:
        with pytest.raises(BenchError, match=says) as err:
            parse_schedule_sets([bad])
        assert "\n" not in str(err.value)
    with pytest.raises(BenchError, match="decay="):
        get_schedule("short", **parse_schedule_sets(["decay=linear"]))
    # values from a budget file's train: section get the same typing (YAML reads 1.5e6 as a string)
    assert get_schedule("short", max_tokens="1.5e6", lr=5e-4).max_tokens == 1_500_000
    for bad in ({"max_tokens": "lots"}, {"warmup_steps": 2.5}, {"lr": True}, {"betas": [0.9]}, {"decay": 3}):
        with pytest.raises(BenchError, match="expected"):
            get_schedule("short", **bad)


def test_budget_files_adjust_the_schedule_for_train_and_run(tmp_path):
    big, small = load_budget("500M").schedule_overrides("short"), load_budget("100M").schedule_overrides("short")
    # one recipe, the same data: the two budgets differ in the models only
    assert big == small and big["max_tokens"] == 2_000_000
    assert load_budget("100M").schedule_overrides("full") == {}
    bad = tmp_path / "b.yaml"
    bad.write_text((Path(__file__).parents[2] / "budgets" / "100M.yaml").read_text() + "\n" + "train: [1, 2]\n")
    with pytest.raises(BenchError, match="'train' must map"):
        load_budget(bad)


# ------------------------------------------------------------------------------------------ training
def test_training_lowers_validation_loss_and_logs(corpus, tmp_path):
    t = trainer(corpus, tmp_path / "run", schedule(max_steps=30, lr=3e-3))
    first = t.validate(None)
    summary = t.run(resume=False)
    assert summary["stop"] == "max_steps" and summary["train_steps"] == 30
    assert summary["valid_nll"] < first - 0.5
    log = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["valid_nll"] is not None and not e.get("final")] == [4, 8, 12, 16, 20, 24, 28]
    assert log[-1]["final"] and log[-1]["valid_nll"] == round(summary["valid_nll"], 4)
    assert json.loads((tmp_path / "run" / "train.json").read_text())["train_tokens"] == summary["train_tokens"]


def test_fixed_seed_gives_the_same_curve(corpus, tmp_path):
    a = trainer(corpus, tmp_path / "a").run(resume=False)
    b = trainer(corpus, tmp_path / "b").run(resume=False)
    la = [e["train_loss"] for e in map(json.loads, (tmp_path / "a" / "train.jsonl").read_text().splitlines())]
    lb = [e["train_loss"] for e in map(json.loads, (tmp_path / "b" / "train.jsonl").read_text().splitlines())]
    assert la == lb and a["valid_nll"] == b["valid_nll"]


def test_resume_after_interruption_gives_the_same_weights(corpus, tmp_path):
    full = trainer(corpus, tmp_path / "full")
    full.run(resume=False)
    part = trainer(corpus, tmp_path / "part")
    assert part.run(resume=False, stop_at_step=5)["stop"] == "interrupted"  # checkpoints mid-epoch
    again = trainer(corpus, tmp_path / "part")
    again.run(resume=True)
    assert again.state.step == full.state.step == 12
    assert full.resumed_from_step is None and again.resumed_from_step == 5  # what the train record reports
    for (name, p), (_, q) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p, q), name


def test_a_run_killed_between_checkpoints_resumes_to_the_uninterrupted_weights_and_log(corpus, tmp_path):
    """A kill (SIGKILL, a session's end) lands between checkpoints: the steps after the last checkpoint are
    lost and trained again from it. Simulated exactly: the run's step-4 checkpoint is put back after it went on
    to step 6, as a kill at step 6 leaves the folder (checkpoint at 4, log lines to 6, one cut short)."""
    import shutil

    full = trainer(corpus, tmp_path / "full")
    full.run(resume=False)
    part = trainer(corpus, tmp_path / "part")
    part.run(resume=False, stop_at_step=4)
    shutil.copy(tmp_path / "part" / "checkpoint.pt", tmp_path / "ck4.pt")
    cont = trainer(corpus, tmp_path / "part")
    cont.run(resume=True, stop_at_step=6)
    shutil.copy(tmp_path / "ck4.pt", tmp_path / "part" / "checkpoint.pt")  # what the kill leaves
    with open(tmp_path / "part" / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 7, "tok')  # a line the kill cut short
    again = trainer(corpus, tmp_path / "part")
    summary = again.run(resume=True)
    for (name, p), (_, q) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p, q), name
    read = lambda run: [json.loads(x) for x in (tmp_path / run / "train.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda log: [{k: v for k, v in e.items() if k not in ("wall_s", "tokens_per_s")} for e in log]  # noqa: E731
    assert strip(read("part")) == strip(read("full"))  # every step once, the same losses
    # the record says it resumed, and from where (the first resume is lost with the steps after step 4)
    assert summary["resumed_from_steps"] == [4] and again.resumed_from_step == 4  # the kill took the 2nd
    assert summary["valid_nll"] == full.state.valid_nll and summary["train_tokens"] == full.state.tokens


def test_a_checkpoint_of_another_schedule_or_corpus_is_not_continued(corpus, tmp_path):
    trainer(corpus, tmp_path / "run").run(resume=False, stop_at_step=4)
    other = trainer(corpus, tmp_path / "run", schedule(max_steps=24))
    with pytest.raises(BenchError, match="schedule differ"):
        other.run(resume=True)


def test_stops_at_max_tokens(corpus, tmp_path):
    s = schedule(max_steps=None, max_tokens=700)
    summary = trainer(corpus, tmp_path / "tok", s).run(resume=False)
    assert summary["stop"] == "max_tokens" and 700 <= summary["train_tokens"] < 700 + 256


def _ddp_worker(rank: int, world: int, init: str, corpus: str, out: str, result: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        t = trainer(Path(corpus), Path(out), schedule(max_steps=2, batch_tokens=256), dropout=0.0)
        t.run(resume=False)
        if rank == 0:
            torch.save(t.model.state_dict(), result)
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_equals_one_process_on_the_same_global_batch(corpus, tmp_path):
    torch.set_num_threads(1)
    # dropout off: the processes draw their masks from their own RNG streams
    single = trainer(corpus, tmp_path / "single", schedule(max_steps=2, batch_tokens=256), dropout=0.0)
    single.run(resume=False)
    result = tmp_path / "ddp.pt"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_ddp_worker, args=(2, init, str(corpus), str(tmp_path / "ddp"), str(result)), nprocs=2, join=True)
    ddp = torch.load(result, weights_only=True)
    # The key bias gets an exactly-zero gradient in theory (softmax ignores a per-query constant); Adam turns
    # its float noise into a full-size step, so it carries no information about DDP. Every other tensor must match.
    bad = [
        n
        for n, p in single.model.state_dict().items()
        if "k_proj.bias" not in n and not torch.allclose(ddp[n], p, atol=2e-6, rtol=1e-5)
    ]
    assert bad == []


# -------------------------------------------------------------------------------------------- evaluation
def test_references_against_themselves_score_100():
    refs = ["Das ist ein Test.", "Noch ein Satz, mit Komma!"]
    r = bleu_chrf(refs, refs)
    assert r["bleu"] == 100.0 and r["chrf"] == 100.0
    assert r["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert "chrf_signature" in r and r["n"] == 2


def test_evaluate_writes_scores_and_hypotheses(corpus, tmp_path):
    t = trainer(corpus, tmp_path / "ev", schedule(max_steps=40, lr=3e-3))
    t.run(resume=False)
    res = evaluate_run(tmp_path / "ev", beam=2)
    assert res["test"]["n"] == 20 and 0 <= res["test"]["bleu"] <= 100
    assert res["test"]["bleu_signature"].startswith("nrefs:1|case:mixed")
    (hyp,) = (tmp_path / "ev").glob("hyp.test.beam2.*")
    assert hyp.read_text().count("\n") == 20
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["valid_nll"] == pytest.approx(res["valid_nll"])
    assert math.isfinite(res["valid_nll"])
    # the record carries what paired tests resample: test hypotheses (rescoring them gives the same BLEU) and
    # the validation NLL per sentence (summing it gives the corpus figure)
    assert res["test"]["hypotheses"] == hyp.read_text().splitlines()
    refs = (tmp_path / "ev").glob("ref.test.*").__next__().read_text().splitlines()
    assert bleu_chrf(res["test"]["hypotheses"], refs)["bleu"] == res["test"]["bleu"]
    stats = np.asarray(res["test"]["bleu_stats"]).sum(0)
    assert len(res["test"]["bleu_stats"]) == 20
    rescored = sacrebleu.BLEU()._compute_score_from_stats(stats.tolist()).score
    assert rescored == pytest.approx(res["test"]["bleu"], abs=1e-4)
    nll, tokens = res["valid_sentence_nll"], res["valid_sentence_tokens"]
    assert len(nll) == len(tokens) == 30 and min(tokens) >= 2
    assert sum(nll) / sum(tokens) == pytest.approx(res["valid_nll"], rel=1e-5)


# --------------------------------------------------------------------------------------------- bad input
def test_bad_corpora(tmp_path):
    with pytest.raises(DataError):
        task_data(tmp_path / "missing", schedule())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        task_data(empty, schedule())
    bad = write_corpus(tmp_path / "bad")
    (bad / "train.de").write_text("nur eine zeile\n")
    with pytest.raises(DataError, match="train"):
        task_data(bad, schedule())


def test_corrupt_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="corrupt"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_bad_input_leaves_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    r = _bench("train", "transformer", "--max-steps", "-1", "--out", str(out), "--corpus", str(corpus))
    assert r.returncode == 2 and "--max-steps must be positive" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not out.exists()
    r = _bench("train", "transformer", "--schedule-set", "batch_tokens=big", "--out", str(out), "--corpus", str(corpus))
    assert r.returncode == 2 and "batch_tokens='big'" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not out.exists()
    r = _bench("train", "transformer", "--corpus", str(tmp_path / "nope"), "--out", str(out), "--max-steps", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"\x80garbage")
    before = (bad / "checkpoint.pt").read_bytes()
    r = _bench("evaluate", str(bad))
    assert r.returncode == 2 and "corrupt" in r.stderr and (bad / "checkpoint.pt").read_bytes() == before


def test_language_model_trains_and_reports_perplexity(tmp_path):
    corpus = write_lm_corpus(tmp_path / "lm")
    sched = schedule(max_steps=20, lr=3e-3, lm_block=16, batch_tokens=128, max_len=16)
    data = load_task_data(str(corpus), "lm", sched, vocab_size=40)
    t = Trainer(
        "lite_transformer",
        dict(d_model=32, decoder_layers=2, kernel_sizes=[3, 5]),
        data,
        sched,
        1,
        tmp_path / "run",
        progress=False,
    )
    first = t.validate(None)
    assert t.run(resume=False)["valid_nll"] < first
    res = evaluate_run(tmp_path / "run")
    assert res["ppl"] == pytest.approx(math.exp(res["test_nll"]))
    assert res["ppl_word"] > 1 and math.isfinite(res["valid_nll"])
    # per validation block, what a paired bootstrap between two language models resamples: summing it gives the
    # corpus figure, and every block counts its (unpadded) targets
    nll, tokens = res["valid_sentence_nll"], res["valid_sentence_tokens"]
    assert len(nll) == len(tokens) == len(data.valid[0]) and min(tokens) >= 1 and max(tokens) <= 16
    assert sum(nll) / sum(tokens) == pytest.approx(res["valid_nll"], rel=1e-5)
