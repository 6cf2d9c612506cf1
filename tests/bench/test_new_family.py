"""The one-file promise: a family defined in one file (here outside ``models/``, joined by ``LITEBENCH_MODELS``)
and one budget entry, with no hand MAC formula and no line anywhere else, is solved, profiled, timed, trained,
evaluated and reported by the suite; registered for translation only, it is left out of language modelling
with the registry's reason. A list of families written by hand anywhere in the path fails this test."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

import bench.budget.mac_solver as mac_solver
import bench.cost.counting as counting
from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.cost.analytic import Protocol, has_formula
from bench.cost.counting import count_macs
from bench.errors import BenchError
from bench.report.length_data import family_pairs
from bench.report.style import family_order, family_palette
from bench.sweep.runner import Sweep, SweepOptions
from models import create_model, families, resolve_config, supports, unregister_model
from tests.toy_corpus import write_corpus

ROOT = Path(__file__).resolve().parents[2]
PROBE = "tests.bench.probe_family"
NAME = "fourier_probe"
TINY = """\
name: tiny
target_macs: 1_000_000
tolerance: 0.1
protocol: {batch: 1, src_tokens: 30, tgt_tokens: 30, counter: flop_counter}
models:
  transformer:
    fixed: {heads: 4, encoder_attention_heads: 4, dropout: 0.1, vocab_size: 60}
    mt: {encoder_layers: 1, decoder_layers: 1}
    lm: {decoder_layers: 2}
    vary: {key: d_model, step: 8, min: 16, max: 64}
    fine: {key: ffn_dim, step: 8}
  fourier_probe:
    fixed: {heads: 4, encoder_attention_heads: 4, dropout: 0.1, vocab_size: 60}
    mt: {encoder_layers: 1, decoder_layers: 1}
    vary: {key: d_model, step: 8, min: 16, max: 4096}
    fine: {key: ffn_dim, step: 8}
"""


@pytest.fixture
def probe(monkeypatch):
    """The probe family registered in this process and in every child it starts; unregistered afterwards."""
    monkeypatch.setenv("LITEBENCH_MODELS", PROBE)
    importlib.import_module(PROBE)
    yield NAME
    unregister_model(NAME)
    sys.modules.pop(PROBE, None)


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_the_family_order_colours_and_pairs_come_from_the_registry(probe):
    assert families()[:3] == ["transformer", "evolved_transformer", "lite_transformer"]  # the paper's order
    assert families()[-1] == NAME and family_order()[-1] == NAME
    colours = family_palette([NAME, "transformer", "lite_transformer"])
    assert len({colours[f] for f in colours}) == 3  # a colour of its own, not one of the paper's three
    assert colours["lite_transformer"] == family_palette(["lite_transformer"])["lite_transformer"]  # unmoved
    assert (NAME, "transformer") in family_pairs([NAME, "transformer"])


def test_a_family_without_a_formula_is_solved_by_counting_only_the_widths_near_the_budget(probe, tiny, monkeypatch):
    built, passes = [], []
    real_pass = counting._primary_pass

    def spy(model, protocol, on_meta):
        built.append(model.config.d_model)
        passes.append(on_meta)
        return real_pass(model, protocol, on_meta)

    monkeypatch.setattr(counting, "_primary_pass", spy)
    sol = solve_model(load_budget(tiny), NAME)  # its grid runs to d_model 4096: 511 widths
    assert abs(sol.rel_error) <= 0.1 and sol.solved_by == "flop_counter"
    assert sol.analytic_macs is None and "analytic_macs" not in sol.to_dict()  # no other counter's number
    widths = sorted(set(built))
    assert len(widths) <= 12 and widths[-1] <= 128  # stopped a few widths past the budget, not at 4096
    assert passes and all(passes)  # every candidate counted on the meta device (no weights, no arithmetic)
    # the solution's MACs are the real model's, by the full counter
    assert sol.macs == count_macs(create_model(NAME, **sol.config.to_dict()), protocol=load_budget(tiny).protocol).macs


def _tasks(name: str) -> list[str]:
    return [t for t in ("mt", "lm") if supports(name, t)]


@pytest.mark.parametrize("d_model", [64, 128])
def test_a_count_on_the_meta_device_is_the_real_models_count(probe, d_model, monkeypatch):
    # every registered family (the probe included), every task it supports: the solver's shape-only count equals
    # the primary counter on the real model, and it really ran on the meta device (no silent fallback)
    seen = []
    real_pass = counting._primary_pass
    monkeypatch.setattr(counting, "_primary_pass",
                        lambda m, p, on_meta: seen.append(on_meta) or real_pass(m, p, on_meta))
    for name in families():
        for task in _tasks(name):
            cfg = resolve_config(name, task, d_model=d_model)
            build = lambda: create_model(name, **cfg.to_dict())  # noqa: E731
            seen.clear()
            got = counting.search_macs(build, Protocol())
            assert seen == [True], (name, task)
            assert got == count_macs(build(), counters=("flop_counter",)).macs, (name, task)


class _NeedsData(nn.Module):
    """A language model whose pass branches on its data (an ``.item()``): it cannot run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(task="lm", target_vocab=50, vocab_size=50, bos_id=0)
        self.embed, self.proj = nn.Embedding(50, 16), nn.Linear(16, 24)

    def decode_features(self, tokens):
        x = self.embed(tokens)
        return self.proj(x) if x.abs().sum().item() > 0 else x


def test_a_family_that_needs_real_data_is_counted_for_real(monkeypatch):
    # the meta pass is tried and fails on the .item(); the real pass then counts (the same count either way, so
    # the passes tried are what the test holds)
    seen = []
    real_pass = counting._primary_pass
    monkeypatch.setattr(counting, "_primary_pass",
                        lambda m, p, on_meta: seen.append(on_meta) or real_pass(m, p, on_meta))
    protocol = Protocol()
    assert counting.search_macs(_NeedsData, protocol) == protocol.tgt_tokens * 16 * 24
    assert seen == [True, False]


@pytest.mark.benchmark
def test_a_formula_less_family_solves_at_100M(probe, tmp_path, benchmark):
    # `make benchmark`: the solve of a family with no hand formula at the real 100M budget (the promise: seconds,
    # not the grid to d_model 4096); the probe entry copies the Transformer's rule
    text = (ROOT / "budgets" / "100M.yaml").read_text(encoding="utf-8")
    entry = ("  fourier_probe:\n    fixed: {heads: 8, encoder_attention_heads: 8}\n"
             "    mt: {encoder_layers: 6, decoder_layers: 6}\n"
             "    vary: {key: d_model, step: 8, min: 16, max: 4096}\n    fine: {key: ffn_dim, step: 8}\n")
    path = tmp_path / "100M-probe.yaml"
    path.write_text(text.replace("  lite_transformer:\n", entry + "  lite_transformer:\n", 1), encoding="utf-8")
    budget = load_budget(path)
    sol = benchmark.pedantic(solve_model, args=(budget, NAME), rounds=1, iterations=1)
    assert budget.low <= sol.macs <= budget.high and sol.solved_by == "flop_counter"


def test_the_search_stop_changes_no_solution_of_a_family_with_a_formula():
    budget = load_budget("100M")
    for model in budget.models:
        sol = solve_model(budget, model)
        if not has_formula(sol.config):
            continue  # a family without a formula (one just added): bisected, the whole grid never counted
        assert sol.solved_by == "analytic", model  # a family with a formula is solved by it
        base = budget.base_config(model)
        full = mac_solver.grid_widths(budget, model, base)
        cut = mac_solver.grid_widths(budget, model, base, stop_above=budget.high)
        nearest = lambda ws: sorted(ws, key=lambda w: abs(w[2] - budget.target_macs))[:4]  # noqa: E731
        assert [w[0] for w in nearest(full)] == [w[0] for w in nearest(cut)], model
        assert sol.analytic_macs is not None


def test_a_translation_only_family_is_left_out_of_language_modelling_with_the_reason(probe, tiny):
    lm = load_budget(tiny, task="lm")
    assert list(lm.models) == ["transformer"] and "registered for task(s) mt only" in lm.skipped[NAME]
    assert NAME in load_budget(tiny, task="mt").models
    logged = []
    sweep = Sweep(SweepOptions(budget=str(tiny), task="lm", quick=True, log=logged.append))
    assert sweep.models == ["transformer"] and any(NAME in line and "mt only" in line for line in logged)
    with pytest.raises(BenchError, match="mt only"):
        Sweep(SweepOptions(budget=str(tiny), task="lm", quick=True, models=[NAME]))
    with pytest.raises(BenchError, match="mt only"):
        solve_model(lm, NAME)


def test_the_solver_passes_the_registrys_reason_through(probe, tmp_path):
    bad = tmp_path / "bad.yaml"
    probe_rule = TINY[TINY.index("  fourier_probe:"):]
    bad_rule = probe_rule.replace("heads: 4,", "heads: 7,").replace("max: 4096", "max: 48")  # 7 divides no 8k < 56
    bad.write_text(TINY.replace(probe_rule, bad_rule))
    with pytest.raises(BenchError, match="no valid fourier_probe config.*divisible"):
        solve_model(load_budget(bad), NAME)


def test_every_stage_runs_on_the_new_family(probe, tiny, tmp_path):
    """solve, profile, latency (fresh processes: they register the family from LITEBENCH_MODELS), train,
    evaluate and the report, by the command a user runs."""
    corpus = write_corpus(tmp_path / "toy")
    argv = [sys.executable, "-m", "bench", "run", "--budget", str(tiny), "--quick", "--corpus", str(corpus),
            "--models", NAME, "--threads", "1", "--results", str(tmp_path / "results"), "--cache",
            str(tmp_path / "cache"), "--train-threads", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "LITEBENCH_MODELS": PROBE})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = tmp_path / "results" / "tiny-quick"
    (folder,) = (results / "runs").glob(f"{NAME}-*")
    names = {p.name for p in folder.glob("*.json")}
    assert {"profile.json", "latency-cpu-t1-forward.json", "latency-cpu-t1-translate.json", "train-s1.json",
            "eval-s1.json"} <= names
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["macs"] > 0 and profile["params"] > 0
    with open(results / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # ranked or not by the failed-run rule (40 updates of a tiny model may stay above the unigram plateau), the
    # row is there with every measure
    assert [r["model"] for r in rows] == [NAME] and rows[0]["status"] in ("ok", "failed")
    assert float(rows[0]["valid_nll"]) > 0 and float(rows[0]["macs"]) == profile["macs"]
    assert float(rows[0]["forward_p50_ms_t1"]) > 0 and rows[0]["bleu_test"] != ""


def test_a_latency_budget_counts_only_the_widths_its_bisection_visits(probe, tmp_path, monkeypatch):
    # a family without a formula counts a width by building the model: the latency solver counts those its
    # bracket and bisection visit (a dozen or two), not the grid's 511 (which took minutes at 100M)
    from bench.budget.latency_solve import solve_latency
    from tests.bench.test_latency_solve import fake_timer

    built = []
    real_pass = counting._primary_pass

    def spy(model, protocol, on_meta):
        built.append(model.config.d_model)
        return real_pass(model, protocol, on_meta)

    text = TINY.replace("tolerance: 0.1\n", "tolerance: 0.1\ntarget_latency_ms: 2.0\nlatency: {threads: 1}\n")
    path = tmp_path / "2ms-tiny.yaml"
    path.write_text(text)
    budget = load_budget(path)
    timer = fake_timer(NAME, budget, per_gmac_ms=1000.0, overhead_ms=0.5)  # 1.5 ms of MACs: d near 64
    monkeypatch.setattr(counting, "_primary_pass", spy)
    sol = solve_latency(budget, NAME, measure=timer, cache_dir=tmp_path / "solve", log=lambda _: None)
    assert budget.latency.low <= sol.latency["p50_ms"] <= budget.latency.high
    assert len(set(built)) <= 24 and max(built) < 4096  # not every width of the grid to d_model 4096
