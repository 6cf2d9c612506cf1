"""The summarization task: ROUGE against hand-computed values, the budget files' summarization protocol and
recipe, its bad input, the latency workloads at its shapes, and one whole tiny sweep (solve -> profile ->
latency -> train -> evaluate -> report) on a synthetic src/tgt folder."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pandas as pd
import pytest

import bench.latency
from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.cli import main
from bench.cost.analytic import Protocol, analytic_macs
from bench.errors import BenchError
from bench.evaluation.rouge import rouge
from bench.latency.workloads import count_workload_macs, make_workload, workload_shape
from bench.sweep.runner import Sweep, SweepOptions
from tests.bench.test_sweep_resume import latency_in_process
from tests.conftest import small_model
from tests.toy_corpus import WORDS


def test_rouge_against_hand_computed_values() -> None:
    hyps = ["the cat is on the mat", "running dogs", ""]
    refs = ["the cat sat on the mat", "the dog runs", "the dog runs"]
    r = rouge(hyps, refs)
    # 1: unigrams the x2, cat, on, mat shared of 6 and 6 -> F 5/6; bigrams the-cat, on-the, the-mat of 5 and 5
    #    -> 3/5; longest common subsequence "the cat on the mat" = 5 -> F 5/6
    # 2: stemmed "run dog" vs "the dog run": unigrams P 2/2, R 2/3 -> F 0.8; no bigram in common; LCS 1 word:
    #    P 1/2, R 1/3 -> F 0.4 (without stemming every score would be 0)
    # 3: an empty summary scores 0
    assert r["rouge1"] == pytest.approx(100 * (5 / 6 + 0.8) / 3, abs=1e-3)
    assert r["rouge2"] == pytest.approx(100 * 0.6 / 3, abs=1e-3)
    assert r["rougeL"] == pytest.approx(100 * (5 / 6 + 0.4) / 3, abs=1e-3)
    assert r["n"] == 3 and "stem:porter" in r["rouge_settings"] and "rougeL" in r["rouge_settings"]


def test_budget_files_state_the_summarization_protocol_and_recipe() -> None:
    for name, tokens in (("100M", 600_000), ("500M", 600_000)):
        mt, sm = load_budget(name), load_budget(name, task="sum")
        assert (mt.protocol.src_tokens, mt.protocol.tgt_tokens) == (30, 30)
        assert (sm.protocol.src_tokens, sm.protocol.tgt_tokens) == (70, 10)
        assert sm.results_name() == f"{name}-sum"
        # the same shared knobs as translation, but summarization keeps dropout 0.1 where 100M translation has 0
        assert {**sm.shared, "dropout": None} == {**mt.shared, "dropout": None} and sm.shared["dropout"] == 0.1
        # translation's knobs (ET 3+4...), the dropout aside
        assert all({**sm.base_config(m), "dropout": None} == {**mt.base_config(m), "dropout": None} for m in sm.rows())
        assert sm.rows() == list(mt.models)  # the post-norm rows are translation's alone
        short, base = sm.schedule_overrides("short"), mt.schedule_overrides("short")
        assert (short["max_tokens"], short["max_len"]) == (tokens, 256) and "max_len" not in base
        assert {k: v for k, v in short.items() if k not in ("max_tokens", "max_len")} == {
            k: v for k, v in base.items() if k != "max_tokens"}  # otherwise the translation recipe
    sol = solve_model(load_budget("100M", task="sum"), "transformer", confirm=False)
    assert sol.config.task == "mt" and sol.macs == analytic_macs(sol.config, Protocol(1, 70, 10))["macs"]
    assert abs(sol.rel_error) <= 0.02


BAD = """\
name: bad
target_macs: 1_000_000
protocol: {batch: 1, src_tokens: 30, tgt_tokens: 30}
models:
  transformer:
    fixed: {heads: 4, encoder_attention_heads: 4}
    vary: {key: d_model, step: 8, min: 16, max: 64}
    fine: {key: ffn_dim, step: 8}
"""


@pytest.mark.parametrize("extra, says", [
    ("", "task sum needs 'protocol: sum: {src_tokens: N, tgt_tokens: M}'"),
    ("train: {sum: {shortt: {max_tokens: 5}}}\n", "unknown key(s) shortt in 'train: sum'"),
    ("train: {sum: {short: {max_tokenz: 5}}}\n", "unknown key(s) max_tokenz in 'train: sum: short'"),
])
def test_bad_summarization_budget_is_one_line_and_exit_2(tmp_path, capsys, extra, says) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("tgt_tokens: 30}", "tgt_tokens: 30, sum: {src_tokens: 9, tgt_tokens: 3}}")
                    if extra else BAD)
    path.write_text(path.read_text() + extra)
    with pytest.raises(BenchError, match=re.escape(says)):
        load_budget(path, task="sum")
    assert main(["solve", "transformer", "--budget", str(path), "--task", "sum"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_workloads_at_the_summarization_shapes() -> None:
    model = small_model("transformer")
    with workload_shape(7, 3):
        forward, decode = make_workload(model, "forward")(), make_workload(model, "translate")()
        macs = count_workload_macs(make_workload(model, "forward"))
    assert forward.shape[:2] == (1, 3) and decode.shape[1] == 3
    assert macs == analytic_macs(model.config, Protocol(1, 7, 3))["macs_with_output"]  # 7 source tokens too
    assert make_workload(model, "forward")().shape[1] == 30  # the protocol's again outside the block
    rec = latency_in_process("transformer", model.config.to_dict(), workload="translate", threads=1,
                             shape={"src_len": 7, "tgt_len": 3}, warmup=1, min_runs=2, min_time_s=0.0)
    assert (rec["src_len"], rec["tgt_len"], rec["decode_steps"]) == (7, None, 3)


def test_paired_latency_and_the_latency_solver_time_the_summarization_shapes(monkeypatch) -> None:
    import bench.latency.compare as compare
    from bench.budget.latency_solve import measure_in_child

    members = [(k, m.config.family, m.config.to_dict()) for k in ("transformer", "lite_prenorm")
               for m in [small_model(k)]]
    fwd = compare.compare_latency(members, "forward", shape={"src_len": 7, "tgt_len": 3}, rounds=2, warmup=1)
    dec = compare.compare_latency(members, "translate", shape={"src_len": 7, "tgt_len": 3}, rounds=2, warmup=1)
    plain = compare.compare_latency(members, "forward", rounds=2, warmup=1)
    assert (fwd["src_len"], fwd["tgt_len"], dec["decode_steps"]) == (7, 3, 3)
    assert (plain["src_len"], plain["tgt_len"]) == (30, 30)
    # a summarization latency budget times each candidate beside the reference at the task's shapes
    seen = []

    def fake(members, **kwargs):
        seen.append(kwargs.get("shape"))
        return {"p50_ms": {"reference": 1.0, "candidate": 1.0}, "ratios": {"candidate": {"ratio": 1.0}},
                "cv": {"candidate": 0.01}}

    monkeypatch.setattr(compare, "compare_in_subprocess", fake)
    budget = load_budget("6ms", task="sum")
    measure_in_child(budget, "lite_transformer")(members[1][2])
    assert seen == [{"src_len": budget.protocol.src_tokens, "tgt_len": budget.protocol.tgt_tokens}] == [
        {"src_len": 70, "tgt_len": 10}]
    # and the families timed together (bench.budget.latency_together) too
    from bench.budget.latency_together import measure_set_in_child

    def fake_set(members, **kwargs):
        seen.append(kwargs.get("shape"))
        return {"p50_ms": {m[0]: 1.0 for m in members}, "ratios": {m[0]: {"ratio": 1.0} for m in members}}

    monkeypatch.setattr(compare, "compare_in_subprocess", fake_set)
    got = measure_set_in_child(budget)({"lite_transformer": ("lite_transformer", members[1][2])})
    assert seen[-1] == {"src_len": 70, "tgt_len": 10} and got["ratios"] == {"lite_transformer": 1.0}


def test_summaries_are_capped_and_scored_by_rouge(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.evaluation.evaluate as ev
    from bench.data import ParallelSplit
    from bench.train.tasks import SUM_MAX_OUTPUT

    seen: dict = {}

    def decode(model, tok, sources, **kw):
        seen.update(kw)
        return ["a b"] * len(sources)

    monkeypatch.setattr(ev, "translate", decode)
    scores = ev.score_test_splits(None, None, {"test": ParallelSplit(["a b c d"], ["a b"])}, 4, 1.0, None, 8,
                                  task="sum")
    assert (seen["max_len_a"], seen["max_len_b"], SUM_MAX_OUTPUT) == (0.0, 48, 48)
    assert scores["test"]["rougeL"] == 100.0 and "bleu" not in scores["test"]


TINY = """\
name: tiny
target_macs: 300_000
tolerance: 0.1
protocol: {batch: 1, src_tokens: 30, tgt_tokens: 30, counter: flop_counter, sum: {src_tokens: 12, tgt_tokens: 4}}
models:
  transformer:
    fixed: {heads: 4, encoder_attention_heads: 4, vocab_size: 60}
    mt: {encoder_layers: 1, decoder_layers: 1}
    vary: {key: d_model, step: 8, min: 16, max: 64}
    fine: {key: ffn_dim, step: 8}
"""


def write_sum_folder(root: Path, seed: int = 0) -> Path:
    """Descriptions of 8-14 toy words; the summary is their first three words."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for split, n in (("train", 300), ("valid", 20), ("test", 12)):
        docs = [[rng.choice(WORDS) for _ in range(rng.randint(8, 14))] for _ in range(n)]
        (root / f"{split}.src").write_text("".join(" ".join(d) + "\n" for d in docs))
        (root / f"{split}.tgt").write_text("".join(" ".join(d[:3]) + "\n" for d in docs))
    return root


def test_a_tiny_summarization_sweep_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.latency, "measure_in_subprocess", latency_in_process)
    (tmp_path / "tiny.yaml").write_text(TINY)
    opts = SweepOptions(budget=str(tmp_path / "tiny.yaml"), task="sum", quick=True, threads=[1],
                        corpus=str(write_sum_folder(tmp_path / "corpus")), results_root=tmp_path / "results",
                        cache_root=tmp_path / "cache", log=lambda m: None, stages=("profile", "latency", "train",
                                                                                   "evaluate"))
    Sweep(opts).run()
    results = tmp_path / "results" / "tiny-sum-quick"
    (run,) = (results / "runs").iterdir()
    rec = {p.stem: json.loads(p.read_text()) for p in run.glob("*.json")}
    assert "12 source + 4 target" in rec["profile"]["protocol"]
    assert rec["profile"]["macs"] == analytic_macs(
        solve_model(load_budget(opts.budget, task="sum"), "transformer").config, Protocol(1, 12, 4))["macs"]
    assert rec["latency-cpu-t1-forward"]["src_len"] == 12 and rec["latency-cpu-t1-forward"]["tgt_len"] == 4
    assert rec["latency-cpu-t1-translate"]["decode_steps"] == 4
    assert rec["train-s1"]["task"] == "sum" and rec["train-s1"]["config"]["task"] == "mt"
    ev = rec["eval-s1"]
    assert {"rouge1", "rouge2", "rougeL", "rouge_settings"} <= set(ev["test"]) and "bleu" not in ev["test"]
    assert len(ev["test"]["rouge_sentences"]) == ev["test"]["n"] == 12
    df = pd.read_csv(results / "leaderboard.csv")
    assert {"rouge1_test", "rouge2_test", "rougeL_test", "rouge_settings"} <= set(df.columns)
    assert df.loc[0, "rougeL_test"] == pytest.approx(ev["test"]["rougeL"])
    md = (results / "leaderboard.md").read_text()
    assert "ROUGE-L (test)" in md and "MACs (M, 12+4 tok)" in md and "rouge-score:" in md
    assert (results / "figures" / "quality_vs_macs.png").is_file()
