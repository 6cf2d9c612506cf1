"""Compression (bench.compress): exact sparsity kept through fine-tuning, int8 close to fp32, sizes read from
the files, the sparse-int8 formula by hand, the sparsity chooser's rule, and bad input as one clear line.

One tiny Transformer (d=32, 1+1 layers) is trained for 60 steps on a synthetic word-for-word corpus (the
pattern of tests/bench/test_train.py); everything else runs on it at 1 thread."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bench.compress as compress
from bench.compress import (
    apply_masks,
    choose_sparsity,
    compress_run,
    compression_ratio,
    finetune_masked,
    finetune_schedule,
    load_compressed,
    magnitude_masks,
    measure_sparsity,
    prunable_weights,
    prune_model,
    quantize_int8,
    relative_index_entries,
    sparse_int8_size,
    sparse_int8_tensor_bytes,
    stage_tag,
    transformer_base_size,
)
from bench.cost.params import count_params
from bench.data import get_corpus
from bench.errors import BenchError
from bench.evaluation.evaluate import EvalContext, evaluate_model, evaluate_run, load_run
from bench.train.batching import collate_mt, encode_parallel
from bench.train.schedules import get_schedule
from bench.train.trainer import Trainer, load_task_data
from models import create_model
from tests.toy_corpus import write_corpus

TINY = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, ffn_dim=64, dropout=0.1)
FAST = dict(warmup=1, min_runs=3, min_time_s=0.0)  # latency timing for tests (far below the protocol's minima)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A trained run folder (checkpoint.pt, run.json, ...): tiny Transformer, 60 steps, fp32."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compress")
    corpus = write_corpus(root / "toy")
    sched = get_schedule("quick", max_steps=60, batch_tokens=256, warmup_steps=3, valid_every=30,
                         valid_sentences=None, checkpoint_every=100, log_every=10, precision="fp32", max_len=64,
                         eval_beam=2, eval_sentences=None, lr=3e-3)
    data = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    Trainer("transformer", TINY, data, sched, 3, root / "run", progress=False).run(resume=False)
    return root / "run"


def fixed_batch(model_spec_tok):
    """Every validation pair as one padded batch (src, prev, target)."""
    _, spec, tok = model_spec_tok
    splits = get_corpus(spec["corpus"], task="mt").load()
    valid = encode_parallel(tok, splits["valid"].src, splits["valid"].tgt)
    return collate_mt(valid, np.arange(len(valid)), tok.pad_id, tok.bos_id)


# ------------------------------------------------------------------------------------------------ pruning
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_zeroes_exactly_the_stated_fraction_smallest_first(run_dir, scope):
    model, _, _ = load_run(run_dir)
    before = {k: w.detach().clone() for k, w in prunable_weights(model).items()}
    assert all(int((w == 0).sum()) == 0 for w in before.values())  # trained weights hold no exact zero
    masks = prune_model(model, 0.3, scope)
    after = prunable_weights(model)
    n = sum(w.numel() for w in after.values())
    zeros = sum(int((w == 0).sum()) for w in after.values())
    if scope == "global":
        assert zeros == round(0.3 * n)
        pruned = torch.cat([before[k][~masks[k]].abs() for k in masks])
        kept = torch.cat([before[k][masks[k]].abs() for k in masks])
        assert pruned.max() <= kept.min()  # one threshold over every tensor
    else:
        for k, w in after.items():
            assert int((w == 0).sum()) == round(0.3 * w.numel()), k
            assert before[k][~masks[k]].abs().max() <= before[k][masks[k]].abs().min()
    for k, w in after.items():  # the kept weights are untouched, the pruned ones are zero
        assert torch.equal(w[masks[k]], before[k][masks[k]]) and not w[~masks[k]].any()
    assert measure_sparsity(model)["sparsity"] == pytest.approx(zeros / n)


def test_pruning_set_leaves_embeddings_norms_biases_and_softmax_kernels_alone():
    torch.manual_seed(0)
    lite = create_model("lite_transformer", d_model=32, encoder_layers=1, decoder_layers=1, kernel_sizes=[3],
                        conv="lightweight", glu=False, vocab_size=50)
    names = set(prunable_weights(lite))
    assert names and all(n.endswith(".weight") for n in names)
    assert not any("embed" in n or "norm" in n or ".conv.conv." in n for n in names)
    et = create_model("evolved_transformer", d_model=32, heads=4, encoder_layers=1, decoder_layers=1, vocab_size=50)
    et_names = set(prunable_weights(et))
    assert any(n.endswith("right.weight") for n in et_names)  # nn.Conv1d
    assert any("depthwise" in n for n in et_names)  # separable convolutions' depthwise kernels
    before = {n: p.detach().clone() for n, p in et.named_parameters() if n not in et_names}
    prune_model(et, 0.5)
    assert all(torch.equal(p, before[n]) for n, p in et.named_parameters() if n in before)


def test_finetuning_keeps_the_mask(run_dir, tmp_path):
    model, spec, tok = load_run(run_dir)
    masks = prune_model(model, 0.4, "global")
    kept_before = {k: w.detach()[masks[k]].clone() for k, w in prunable_weights(model).items()}
    summary = finetune_masked(model, spec, tok, masks, 1500, tmp_path / "ft")
    assert summary["train_tokens"] >= 1500 and summary["stop"] == "max_tokens"
    weights = prunable_weights(model)
    n = sum(w.numel() for w in weights.values())
    assert sum(int((w == 0).sum()) for w in weights.values()) == round(0.4 * n)
    assert all(not w[~masks[k]].any() for k, w in weights.items())
    assert any(not torch.equal(w.detach()[masks[k]], kept_before[k]) for k, w in weights.items())  # it trained
    assert not (tmp_path / "ft" / "checkpoint.pt").exists() and (tmp_path / "ft" / "train.json").exists()


# ----------------------------------------------------------------------------------------- quantization
def test_int8_outputs_stay_close_to_fp32_on_a_fixed_batch(run_dir):
    """Tolerance (dynamic int8: weights per output channel, activations per tensor): max |logit difference|
    <= 3% of the fp32 logits' range, mean NLL per target token within 0.02 nats, top-1 agreement >= 95% of
    the target positions. (Measured here: ~1.5%, < 0.005 nats, ~98%; the disagreements are near-ties of a
    d=32 model trained for 60 steps, so 99% is not a property of int8 at this size.)"""
    loaded = load_run(run_dir)
    model = loaded[0]
    b = fixed_batch(loaded)
    q = quantize_int8(model)
    mask = b["target"].ne(model.config.pad_id)
    with torch.no_grad():
        a, c = model(b["src"], b["prev"]), q(b["src"], b["prev"])
    rng = float(a[mask].max() - a[mask].min())
    assert float((a - c).abs()[mask].max()) <= 0.03 * rng
    agree = (a.argmax(-1) == c.argmax(-1))[mask].float().mean().item()
    assert agree >= 0.95
    nll = [torch.nn.functional.cross_entropy(x[mask], b["target"][mask]).item() for x in (a, c)]
    assert abs(nll[0] - nll[1]) < 0.02
    assert sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__ for m in q.modules()) == len(
        [m for m in model.modules() if isinstance(m, nn.Linear)])


def test_quantization_keeps_pruned_zeros(run_dir):
    model, _, _ = load_run(run_dir)
    masks = prune_model(model, 0.3, "layer")
    fp32 = measure_sparsity(model)
    q = quantize_int8(model)
    sp = measure_sparsity(q)
    assert sp["by_kind"].keys() == {"int8"}
    stored = compress.stored_weights(q)
    for name, keep in masks.items():  # symmetric int8: a zero stays zero
        assert not stored[name][0][~keep].any(), name
    # ... and a weight below half a quantization step rounds to zero: sparsity can only grow, a little
    assert fp32["zeros"] <= sp["zeros"] and sp["sparsity"] < fp32["sparsity"] + 0.05


# ------------------------------------------------------------------------------------------------ sizes
def test_sparse_int8_formula_by_hand():
    v = torch.zeros(4, 5, dtype=torch.int8)
    v.view(-1)[[0, 3, 19]] = torch.tensor([5, -7, 1], dtype=torch.int8)
    # n=20, nnz=3: dense 20 B; bitmap ceil(20/8) + 3 = 6 B; 16-bit relative 3 entries x 3 B = 9 B -> bitmap
    assert sparse_int8_tensor_bytes(v, scales=4) == (6 + 4 * 4, "bitmap")
    assert sparse_int8_tensor_bytes(torch.ones(4, 5), scales=1) == (20 + 4, "dense")  # no zero: dense wins
    # two non-zeros 150000 apart: gap-1 = 149999 needs 2 fillers of 65536 -> 4 entries x 3 B = 12 B
    far = torch.zeros(200_000)
    far[[0, 150_000]] = 1.0
    assert relative_index_entries(torch.tensor([0, 150_000])) == 4
    assert relative_index_entries(torch.tensor([65_535])) == 1  # gap 65536: stored as 65535, fits
    assert relative_index_entries(torch.tensor([65_536])) == 2  # gap 65537: one filler
    assert sparse_int8_tensor_bytes(far, scales=1) == (12 + 4, "relative16")
    # a whole model: Embedding(10, 4) + Linear(4, 3) with one row zeroed, quantized per channel
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[0.5, -0.25, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, -1.0, 0.5]]))
    size = sparse_int8_size(quantize_int8(net))
    # linear: n=12, nnz=7 -> min(12, 2 + 7, 21) = 9 B + 3 scales x 4 B; embedding int8 40 B + 10 row scales
    # x 4 B; bias 3 x 4 B
    assert size["linear_bytes"] == 9 + 12
    assert size["other_bytes"] == 40 + 40 + 12 and size["embedding_bytes"] == 80
    assert size["bytes"] == 9 + 12 + 80 + 12 and size["bytes_no_emb"] == 9 + 12 + 12


def test_transformer_base_is_counted_not_quoted():
    base = transformer_base_size({"vocab_size": 8000, "share_embeddings": True})
    ref = count_params(create_model("transformer", d_model=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6,
                                    vocab_size=8000))
    assert base["params_total"] == ref["params_total"] and base["bytes_fp32"] == 4 * ref["params_total"]
    assert 176.0e6 < base["bytes_fp32_no_emb"] < 177.0e6  # the paper's "176 MB" Transformer base
    assert compression_ratio(base["bytes_fp32"] // 8, {"vocab_size": 8000}) == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(BenchError):
        compression_ratio(0, {"vocab_size": 8000})


# ------------------------------------------------------------------------------------------ the pipeline
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_compress_run_stages_sizes_from_files_quality_and_latency(run_dir, tmp_path):
    out = tmp_path / "c"
    res = compress_run(run_dir, quantize="int8", prune=0.3, finetune_tokens=1000, out_dir=out, threads=(1,),
                       timing=FAST)
    tags = [s["compression"] for s in res["stages"]]
    assert tags == ["fp32", "int8", "int8+prune0.30+ft1k"]
    fp32, int8, pruned = res["stages"]
    for s in res["stages"]:
        assert s["stage"] == "compress" and s["seed"] == 3 and s["model"] == "transformer"
        assert s["size_bytes_disk"] == os.path.getsize(s["file"]) and s["size_mb_disk"] == s["size_bytes_disk"] / 1e6
        assert Path(s["file"]).parent == out
        for key in ("valid_nll", "forward_p50_ms_t1", "translate_p50_ms_t1", "size_mb_sparse_int8",
                    "size_mb_fp32_params", "compression_ratio"):
            assert isinstance(s[key], float) and math.isfinite(s[key]), key
        for split, key in itertools.product(("test", "test_clean"), ("bleu", "chrf")):  # the evaluator's layout
            assert isinstance(s[split][key], float) and math.isfinite(s[split][key]), (split, key)
        assert s["test"]["bleu_signature"].startswith("nrefs:1|case:mixed")
        assert s["compression_ratio"] == pytest.approx(
            transformer_base_size(load_run(run_dir)[1]["config"])["bytes_fp32"] / s["size_bytes_disk"])
    assert int8["size_bytes_disk"] < fp32["size_bytes_disk"]
    assert pruned["sparsity"] >= 0.3 and pruned["prune_target"] == 0.3 and pruned["finetune_tokens"] >= 1000
    assert pruned["size_bytes_sparse_int8"] < int8["size_bytes_sparse_int8"]
    assert fp32["size_mb_fp32_params"] == pytest.approx(4 * count_params(load_run(run_dir)[0])["params_total"] / 1e6)
    # the same protocol as bench.evaluation.evaluate: the fp32 stage scores what `evaluate` scores
    ev = evaluate_run(run_dir)
    per_sentence = ("hypotheses", "bleu_stats")  # the run's own evaluation also keeps these, for paired tests
    assert fp32["test"] == {k: v for k, v in ev["test"].items() if k not in per_sentence}
    assert fp32["test_clean"] == ev["test_clean"]
    assert fp32["valid_nll"] == pytest.approx(ev["valid_nll"])
    # every file loads again with weights_only=True and gives the measured model's outputs
    saved = json.loads((out / "compress.json").read_text())
    assert [s["compression"] for s in saved["stages"]] == tags
    for s in res["stages"]:
        raw = torch.load(s["file"], map_location="cpu", weights_only=True)
        assert raw["compression"]["tag"] == s["compression"]
        model, _ = load_compressed(Path(s["file"]))
        assert measure_sparsity(model)["sparsity"] == pytest.approx(s["sparsity"])
        assert evaluate_model(model, EvalContext.for_run(*load_run(run_dir)[1:]))["test"] == s["test"]


def test_prune_without_quantization_and_layer_scope(run_dir, tmp_path):
    res = compress_run(run_dir, quantize=None, prune=0.25, prune_scope="layer", out_dir=tmp_path / "p",
                       latency=False)
    assert [s["compression"] for s in res["stages"]] == ["fp32", "prune0.25-layer"]
    p = res["stages"][1]
    assert p["sparsity"] == pytest.approx(0.25, abs=0.01) and p["quantize"] == "none"
    assert "forward_p50_ms_t1" not in p
    assert p["size_bytes_disk"] == os.path.getsize(p["file"])


def test_stage_tags():
    assert stage_tag(None, None) == "fp32" and stage_tag("int8", None) == "int8"
    assert stage_tag("int8", 0.3) == "int8+prune0.30" and stage_tag(None, 0.3, "layer") == "prune0.30-layer"
    assert stage_tag("int8", 0.3, finetune_tokens=2_500_000) == "int8+prune0.30+ft2.5M"


# ----------------------------------------------------------------------------------- sparsity chooser
def test_choose_sparsity_rule_on_validation(run_dir, monkeypatch):
    """Scripted BLEU (by the model's measured sparsity): fp32 20.0; 0.1 -> 19.9, 0.2 -> 19.6, 0.3 -> 19.0,
    0.4 -> 19.8 (a noisy rebound past a failure must not be picked)."""
    table = {0.0: 20.0, 0.1: 19.9, 0.2: 19.6, 0.3: 19.0, 0.4: 19.8}
    seen_splits = []

    def fake_valid_bleu(model, ctx, max_sentences=None):
        seen_splits.append(len(ctx.splits["valid"].src))
        s = round(measure_sparsity(model)["sparsity"], 1)
        return {"bleu": table[s], "chrf": 50.0, "bleu_signature": "sig", "chrf_signature": "sig", "n": 30}

    monkeypatch.setattr(compress.pipeline, "valid_bleu", fake_valid_bleu)
    res = choose_sparsity(run_dir, candidates=(0.4, 0.1, 0.3, 0.2), max_bleu_drop=0.5, quantize=None, criterion="bleu")
    assert res["sparsity"] == 0.2 and res["split"] == "valid" and res["reference_bleu"] == 20.0
    assert [c["sparsity"] for c in res["candidates"]] == [0.1, 0.2, 0.3]  # stops at the first failure
    assert [c["ok"] for c in res["candidates"]] == [True, True, False]
    res = choose_sparsity(run_dir, candidates=(0.3,), max_bleu_drop=0.5, quantize=None, criterion="bleu")
    assert res["sparsity"] is None


def test_choose_sparsity_real_run_and_prune_auto(run_dir, tmp_path):
    # every candidate's measured drop first (no limit), then a budget just above the smallest drop: it must bind
    cands = (0.1, 0.5, 0.9)
    free = choose_sparsity(run_dir, candidates=cands, max_bleu_drop=100.0, max_sentences=10, criterion="bleu")
    assert free["sparsity"] == 0.9 and free["valid_sentences"] == 10 and len(free["candidates"]) == 3
    drop = {c["sparsity"]: c["bleu_drop"] for c in free["candidates"]}
    above = [d for d in drop.values() if d > drop[0.1]]
    assert above, f"no candidate costs more BLEU than 10% sparsity: {drop}"
    budget = (drop[0.1] + min(above)) / 2
    expected = None
    for s in cands:  # the rule by hand: increasing sparsity, stop at the first drop over the budget
        if drop[s] > budget:
            break
        expected = s
    assert expected is not None and expected < 0.9  # the budget binds
    res = choose_sparsity(run_dir, candidates=cands, max_bleu_drop=budget, max_sentences=10, criterion="bleu")
    assert res["sparsity"] == expected
    assert [c["bleu_drop"] for c in res["candidates"]] == [drop[s] for s in cands[: len(res["candidates"])]]
    out = compress_run(run_dir, quantize="int8", prune="auto", out_dir=tmp_path / "a", latency=False,
                       candidates=cands, max_bleu_drop=budget, choose_sentences=10, criterion="bleu")
    assert out["choice"]["sparsity"] == expected
    assert out["stages"][-1]["compression"] == f"int8+prune{expected:.2f}"


def test_prune_auto_on_validation_nll_binds(run_dir, tmp_path):
    """The default criterion: validation NLL against fp32, by hand from each candidate's pruned model."""
    from bench.compress.pipeline import valid_nll
    from bench.evaluation.evaluate import EvalContext, load_run

    cands = (0.1, 0.5, 0.9)
    free = choose_sparsity(run_dir, candidates=cands, max_nll_increase=100.0, max_sentences=10, quantize=None)
    assert free["criterion"] == "valid_nll" and free["sparsity"] == 0.9
    model, spec, tok = load_run(run_dir)
    ctx = EvalContext.for_run(spec, tok)
    ref = valid_nll(model, ctx, 10)
    assert free["reference_valid_nll"] == pytest.approx(ref)
    pruned = copy.deepcopy(model)
    prune_model(pruned, 0.5)
    assert free["candidates"][1]["nll_increase"] == pytest.approx(valid_nll(pruned, ctx, 10) - ref)
    rise = {c["sparsity"]: c["nll_increase"] for c in free["candidates"]}
    assert rise[0.9] > rise[0.1]  # pruning 90% of the weights costs more than 10%
    budget = (rise[0.1] + rise[0.9]) / 2
    expected = 0.5 if rise[0.5] <= budget else 0.1
    res = choose_sparsity(run_dir, candidates=cands, max_nll_increase=budget, max_sentences=10, quantize=None)
    assert res["sparsity"] == expected  # the budget binds: 0.9 is never chosen
    with pytest.raises(BenchError, match="prune criterion 'ppl' is not valid"):
        choose_sparsity(run_dir, criterion="ppl")
    with pytest.raises(BenchError, match="max_nll_increase must be >= 0"):
        choose_sparsity(run_dir, max_nll_increase=-1.0)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "abc", True])
def test_sparsity_outside_zero_one_is_one_clear_line(run_dir, tmp_path, bad):
    with pytest.raises(BenchError, match=r"sparsity must be a number in \[0, 1\)") as exc:
        compress_run(run_dir, prune=bad, out_dir=tmp_path / "x")
    assert "\n" not in str(exc.value) and not (tmp_path / "x").exists()
    with pytest.raises(BenchError, match=r"\[0, 1\)"):
        magnitude_masks({"w": torch.ones(3)}, bad if not isinstance(bad, str) else 2.0)


def test_bad_run_folders_and_options(run_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (dict(run_dir=empty), "has no checkpoint.pt"),
        (dict(run_dir=tmp_path / "missing"), "does not exist"),
        (dict(run_dir=run_dir, quantize="int4"), "unknown quantization 'int4'"),
        (dict(run_dir=run_dir, prune=0.3, prune_scope="row"), "unknown scope 'row'"),
        (dict(run_dir=run_dir, finetune_tokens=100), "give --prune too"),
        (dict(run_dir=run_dir, prune=0.3, finetune_tokens=0), "positive integer"),
        (dict(run_dir=run_dir, quantize=None), "nothing to compress"),
    ]
    for kwargs, message in cases:
        with pytest.raises(BenchError, match=message) as exc:
            compress_run(out_dir=tmp_path / "never", **kwargs)
        assert "\n" not in str(exc.value)
    assert not (tmp_path / "never").exists()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="corrupt"):
        compress_run(tmp_path / "corrupt")
    with pytest.raises(BenchError, match="not a litebench compressed model"):
        load_compressed(tmp_path / "corrupt" / "checkpoint.pt")


def _cli(argv: list[str]) -> tuple[int, str, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_command_line(run_dir, tmp_path):
    for argv, message in [
        (["compress", str(run_dir), "--prune", "1.2"], r"[0, 1)"),
        (["compress", str(run_dir), "--prune", "many"], r"[0, 1)"),
        (["compress", str(run_dir), "--prune", "-0.5"], r"[0, 1)"),
        (["compress", str(run_dir), "--quantize", "fp8"], "unknown quantization"),
        (["compress", str(tmp_path / "none"), "--quantize", "int8"], "does not exist"),
        (["compress", str(run_dir), "--quantize", "int8", "--threads", "0"], "--threads"),
        (["compress", str(run_dir), "--quantize", "int8", "--beam", "0"], "--beam must be an integer >= 1"),
    ]:
        code, out, err = _cli(argv)  # bad input: one line on stderr, exit 2
        assert code == 2 and out == "" and err.startswith("error:") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
    out = tmp_path / "cli"
    code, stdout, err = _cli(["compress", str(run_dir), "--quantize", "int8", "--out", str(out), "--no-latency",
                              "--json"])
    assert code == 0, err
    res = json.loads(stdout)
    assert [s["compression"] for s in res["stages"]] == ["fp32", "int8"] and (out / "model-int8.pt").exists()
    code, stdout, err = _cli(["compress", str(run_dir), "--quantize", "int8", "--out", str(out), "--no-latency"])
    assert code == 0 and "int8" in stdout and "BLEU" in stdout


def test_apply_masks_rejects_unknown_names():
    with pytest.raises(BenchError):
        apply_masks(nn.Linear(2, 2), {"nope.weight": torch.ones(2, 2, dtype=torch.bool)})


def test_finetune_schedule_is_a_short_cosine_whatever_the_run_used():
    spec = {"schedule": get_schedule("short").to_dict()}  # inverse-sqrt, 1000 warm-up steps
    ft = finetune_schedule(spec, tokens=50_000)
    steps = -(-50_000 // ft.batch_tokens)
    assert ft.decay == "cosine" and ft.max_tokens == 50_000 and ft.warmup_steps == max(1, steps // 10)
    assert ft.lr < spec["schedule"]["lr"] and ft.max_steps is None
