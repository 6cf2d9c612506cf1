"""Ablations (``ablations:`` in a budget file, ``bench run --ablations``): the section's rules (one line and exit 2
for a bad one), each ablation planned as its family's row with one thing changed (solved to the budget again,
the recipe and tuned rate otherwise), the training-time ablation's tokens from the comparison's records, and the
table's differences against a hand computation from the per-sentence records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.budget.spec import load_budget
from bench.cli import main
from bench.errors import BenchError
from bench.report.ablations import CSV, TABLE, write_ablations
from bench.sweep.runner import Sweep, SweepOptions
from tests.bench.test_report import make_results

ROOT = Path(__file__).resolve().parents[2]
BUDGET = (ROOT / "budgets" / "100M.yaml").read_text(encoding="utf-8")


def _budget(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "100M.yaml"
    start = BUDGET.index("ablations:\n")
    end = BUDGET.index("\n# Training:", start)
    path.write_text(BUDGET[:start] + section + BUDGET[end:], encoding="utf-8")
    return path


@pytest.mark.parametrize("section,message", [
    ("ablations:\n  a: {model: transformer}\n", "changes nothing"),
    ("ablations:\n  a: {model: transformer, set: {heads: 4}, colour: red}\n", "unknown key.*colour"),
    ("ablations:\n  a: {model: transformer, set: {wings: 2}}\n", "unknown transformer key"),
    ("ablations:\n  a: {model: transformer, wall_time_of: transformer}\n", "wall_time_of must be another family"),
    ("ablations:\n  a: {model: transformer, wall_time_of: lite_transformer, train: {max_tokens: 5}}\n",
     "may not set max_tokens"),
    ("ablations:\n  a: {model: transformer, train: {warmup: 5}}\n", "unknown key.*warmup"),
    ("ablations:\n  a: {model: resnet, set: {heads: 4}}\n", "needs 'model'"),
])
def test_a_bad_ablation_is_one_line_and_exit_2(tmp_path, capsys, section, message):
    path = _budget(tmp_path, section)
    with pytest.raises(BenchError, match=message):
        load_budget(path)
    assert main(["solve", "--budget", str(path), "transformer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]


def test_the_100M_ablations_are_planned_as_their_family_with_one_thing_changed():
    base = Sweep(SweepOptions(budget="100M", log=lambda m: None))
    sweep = Sweep(SweepOptions(budget="100M", ablations=True, log=lambda m: None))
    assert sweep.results == base.results / "ablations" and set(sweep.models) == set(load_budget("100M").ablations)
    assert len(sweep.models) >= 6
    family = {f: base.plan(f) for f in ("transformer", "lite_transformer")}
    for name in sweep.models:
        run = sweep.plan(name)
        ref = family[sweep.budget.family_of(name)]
        cfg, ref_cfg = run.solution.config.to_dict(), ref.solution.config.to_dict()
        assert abs(run.solution.macs / 100e6 - 1) <= 0.02, name  # solved to the budget again
        changed_cfg = {k for k in cfg if cfg[k] != ref_cfg[k]} - {"d_model", "ffn_dim"}
        sched, ref_sched = run.schedule.to_dict(), ref.schedule.to_dict()
        changed_sched = {k for k in sched if sched[k] != ref_sched[k]} - {"name"}
        v = sweep.budget.variants[name]
        assert changed_cfg == set(v.sets), name
        assert changed_sched == set(v.train) | ({"max_tokens"} if v.wall_time_of else set()), name
        assert run.schedule.lr == ref.schedule.lr and run.folder.parent == sweep.results / "runs"
    assert sweep.plan("lite-kernel1").solution.config.kernel_sizes == [1] * 6
    assert sweep.plan("transformer-h4").solution.config.heads == 4
    assert sweep.plan("transformer-warmup250").schedule.warmup_steps == 250
    # the training-time ablation, by hand from the committed train records of the two current rows
    walls = {}
    for f, run in family.items():
        recs = [json.loads(p.read_text()) for p in run.folder.glob("train-s*.json")]
        walls[f] = (np.mean([r["train_wall_s"] for r in recs]), np.mean([r["train_tokens"] for r in recs]))
    want = walls["transformer"][1] * walls["lite_transformer"][0] / walls["transformer"][0]
    assert sweep.plan("transformer-lite-time").schedule.max_tokens == int(round(want, -3))


def _with_sentences(folder: Path, model: str, per_seed: dict[int, list[float]]) -> None:
    """Each eval record of ``folder`` carries per-sentence validation NLL (one token each) and its mean."""
    for seed, nll in per_seed.items():
        path = folder / f"eval-s{seed}.json"
        rec = json.loads(path.read_text())
        rec.update(model=model, valid_nll=float(np.mean(nll)), valid_sentence_nll=nll,
                   valid_sentence_tokens=[1] * len(nll))
        path.write_text(json.dumps(rec))


def test_the_table_pairs_each_ablation_with_its_family_row(tmp_path):
    results = make_results(tmp_path)
    family = {1: [2.0, 2.2, 1.9, 2.1], 2: [2.1, 2.0, 2.0, 2.2]}
    ablated = {1: [2.3, 2.4, 2.2, 2.5]}
    _with_sentences(results / "runs" / "transformer-c0ffee", "transformer", family)
    own = results / "ablations" / "runs" / "transformer-h4-beef"
    shutil.copytree(results / "runs" / "transformer-c0ffee", own)
    for p in own.glob("*.json"):
        rec = json.loads(p.read_text())
        rec.update(model="transformer-h4", config_hash="beef")
        p.write_text(json.dumps(rec))
    (own / "eval-s2.json").unlink()
    (own / "train-s2.json").unlink()
    _with_sentences(own, "transformer-h4", ablated)
    path = _budget(tmp_path, "ablations:\n  transformer-h4: {model: transformer, what: four heads, "
                             "set: {heads: 4, encoder_attention_heads: 4}}\n  lite-k1: {model: lite_transformer, "
                             "set: {kernel_sizes: [1, 1, 1, 1, 1, 1]}}\n")
    budget = load_budget(path)
    written = write_ablations(results / "ablations", results, budget)
    assert [p.name for p in written] == [TABLE, CSV]
    md = (results / "ablations" / TABLE).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| transformer-h4 |"))
    want = np.mean(ablated[1]) - np.mean([np.mean(v) for v in family.values()])  # the seed means' difference
    assert f"{want:+.3f} [" in row and "| four heads |" in row and "| 1 |" in row
    assert "lite-k1" not in md  # no records yet: no row
    import pandas as pd

    csv = pd.read_csv(results / "ablations" / CSV)
    assert csv.loc[0, "d_valid_nll"] == pytest.approx(want) and csv.loc[0, "seeds_family"] == 2
    assert csv.loc[0, "d_valid_nll_lo"] <= want <= csv.loc[0, "d_valid_nll_hi"]
    with pytest.raises(BenchError, match="no ablation records"):
        write_ablations(tmp_path / "empty", results, budget)


@pytest.mark.slow
def test_an_ablation_sweep_trains_and_pairs_with_the_rows(tmp_path):
    """End to end on the toy corpus (quick schedule): the comparison's row, then its ablation beside it, then the
    table, by the commands a user runs."""
    from tests.bench.test_shapes import SHAPES, TINY
    from tests.toy_corpus import write_corpus

    corpus = write_corpus(tmp_path / "toy")
    budget = tmp_path / "tiny.yaml"
    budget.write_text(TINY + SHAPES + "ablations:\n  transformer-h1: {model: transformer, what: one head, "
                      "set: {heads: 1, encoder_attention_heads: 1}}\n")
    common = ["--budget", str(budget), "--quick", "--corpus", str(corpus), "--models", "transformer", "--results",
              str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--train-threads", "1"]
    assert main(["run", *common, "--stages", "profile,train,evaluate"]) == 0
    common[common.index("--models") + 1] = "transformer-h1"
    assert main(["run", *common, "--ablations"]) == 0
    folder = tmp_path / "results" / "tiny-quick" / "ablations"
    (run,) = (folder / "runs").glob("transformer-h1-*")
    assert {"profile.json", "train-s1.json", "eval-s1.json"} <= {p.name for p in run.glob("*.json")}
    assert not list(run.glob("latency-*.json"))  # quality only
    md = (folder / TABLE).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| transformer-h1 |"))
    assert "| one head |" in row and " [" in row  # paired with the transformer row
    assert not (folder / "leaderboard.md").exists()


def test_a_budget_without_ablations_is_one_line(capsys):
    assert main(["run", "--budget", "500M", "--ablations"]) == 2
    assert "budget 500M (mt) has no 'ablations:' section" in capsys.readouterr().err
    assert main(["run", "--budget", "100M", "--ablations", "--models", "transformer"]) == 2
    assert "unknown ablation(s) transformer" in capsys.readouterr().err
