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

import pytest

import bench.budget.mac_solver as mac_solver
from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.errors import BenchError
from bench.report.length import family_pairs
from bench.report.style import family_order, family_palette
from bench.sweep.runner import Sweep, SweepOptions
from models import families, unregister_model
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
    counted = []
    real = mac_solver.count_config_macs
    monkeypatch.setattr(mac_solver, "count_config_macs", lambda *a, **k: counted.append(a[3]) or real(*a, **k))
    sol = solve_model(load_budget(tiny), NAME)  # its grid runs to d_model 4096: 511 widths
    assert abs(sol.rel_error) <= 0.1 and sol.solved_by == "flop_counter"
    assert sol.analytic_macs is None and "analytic_macs" not in sol.to_dict()  # no other counter's number
    widths = sorted({c["d_model"] for c in counted})
    assert len(widths) <= 12 and widths[-1] <= 128  # stopped a few widths past the budget, not at 4096


def test_the_search_stop_changes_no_solution_of_a_family_with_a_formula():
    budget = load_budget("100M")
    for model in budget.models:
        sol = solve_model(budget, model)
        base = budget.base_config(model)
        full = mac_solver.grid_widths(budget, model, base)
        cut = mac_solver.grid_widths(budget, model, base, stop_above=budget.high)
        nearest = lambda ws: sorted(ws, key=lambda w: abs(w[2] - budget.target_macs))[:4]  # noqa: E731
        assert [w[0] for w in nearest(full)] == [w[0] for w in nearest(cut)], model
        assert sol.solved_by == "analytic" and sol.analytic_macs is not None


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
