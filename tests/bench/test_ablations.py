"""Ablations (``ablations:`` in a budget file, ``bench run --ablations``): the section's rules (one line and exit 2
for a bad one), each ablation planned as its family's row with one thing changed (solved to the budget again,
the recipe and tuned rate otherwise), the training-time ablation's tokens from the training speed measured side
by side, and the table's differences against a hand computation from the per-sentence records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.budget.spec import load_budget
from bench.cli import main
from bench.errors import BenchError
from bench.report.ablations import CSV, TABLE, write_ablations
from bench.sweep.runner import Sweep, SweepOptions
from bench.sweep.train_speed import RECORD, measure, speed_key
from bench.train.schedules import get_schedule
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
    ("ablations:\n  a: {model: [transformer], set: {heads: 4}}\n", "needs 'model'"),
    ("ablations:\n  a: {model: transformer, wall_time_of: [lite_transformer]}\n", "wall_time_of must be"),
    ("ablations:\n  a: {model: transformer, set: {d_model: 512}}\n", "which the solver chooses"),
    ("ablations:\n  a: {model: transformer, ffn_ratio: 0}\n", "ffn_ratio must be a number"),
    ("ablations:\n  a: {model: transformer, ffn_ratio: wide}\n", "ffn_ratio must be a number"),
    ("ablations:\n  a: {model: transformer, ffn_ratio: true}\n", "ffn_ratio must be a number"),
])
def test_a_bad_ablation_is_one_line_and_exit_2(tmp_path, capsys, section, message):
    path = _budget(tmp_path, section)
    with pytest.raises(BenchError, match=message):
        load_budget(path)
    assert main(["solve", "--budget", str(path), "transformer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]


def test_the_100M_ablations_are_planned_as_their_family_with_one_thing_changed(tmp_path):
    base = Sweep(SweepOptions(budget="100M", log=lambda m: None))
    root = tmp_path / "results"
    shutil.copytree(base.results / "tuning", root / "100M" / "tuning")  # the same tuned rates
    sweep = Sweep(SweepOptions(budget="100M", ablations=True, results_root=root, log=lambda m: None))
    assert sweep.results == root / "100M" / "ablations" and set(sweep.models) == set(load_budget("100M").ablations)
    assert len(sweep.models) >= 6
    family = {f: base.plan(f) for f in {sweep.budget.family_of(n) for n in sweep.models}}
    # the training-time ablation reads the side-by-side speed kept in the ablations' folder (a faked record here,
    # for exactly these rows: nothing is measured)
    timed = sweep.budget.variants["transformer-lite-time"]
    configs = {f: family[f].solution.config.to_dict() for f in (timed.model, timed.wall_time_of)}
    key = speed_key(configs, family[timed.wall_time_of].schedule, torch.get_num_threads(), "cpu")
    speeds = {timed.wall_time_of: {"speed_vs_lite_transformer": 1.0}, timed.model: {"speed_vs_lite_transformer": 1.7}}
    (sweep.results / RECORD).parent.mkdir(parents=True)
    (sweep.results / RECORD).write_text(json.dumps({"key": key, "result": {"reference": timed.wall_time_of,
                                                                           "families": speeds}}))
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
    # Lite's FFN ratio: ffn_dim = d_model before the fine knob lands the budget, and the MACs it saves buy width
    ffn1, ref = sweep.plan("transformer-ffn1").solution.config, family["transformer"].solution.config
    assert 3 * ref.d_model < ref.ffn_dim <= 5 * ref.d_model  # the row keeps its family's rule (about 4d)
    assert abs(ffn1.ffn_dim - ffn1.d_model) <= 0.1 * ffn1.d_model and ffn1.d_model > ref.d_model
    # the recipe's tokens times the speed ratio: the tokens the Transformer trains in Lite's time
    assert sweep.plan("transformer-lite-time").schedule.max_tokens == int(round(2_000_000 * 1.7, -3))


class _FakeTrainer:
    """Trains at ``speed`` target tokens per second on a fake clock; every batch is 1,000 target tokens."""

    def __init__(self, speed: float, clock: list[float], batches: int = 50) -> None:
        self.speed, self.clock, self.batches, self.seen = speed, clock, list(range(batches)), []

    def train_step(self, idx):
        self.seen.append(idx)
        self.clock[0] += 1000 / self.speed * (1.05 if len(self.seen) % 3 else 0.95)  # a little noise
        return 2.0, 1000


def test_the_speed_ratio_is_measured_side_by_side_on_the_same_batches():
    clock = [0.0]
    a, b = _FakeTrainer(1000.0, clock), _FakeTrainer(1700.0, clock)
    res = measure({"a": a, "b": b}, rounds=6, steps=4, clock=lambda: clock[0])
    assert a.seen == b.seen and len(a.seen) == 7 * 4  # one warm-up block, then six rounds, the same batches
    fam = res["families"]
    assert fam["a"]["speed_vs_a"] == pytest.approx(1.0)
    assert fam["b"]["speed_vs_a"] == pytest.approx(1.7, rel=0.02)
    assert fam["b"]["ci95"][0] <= fam["b"]["speed_vs_a"] <= fam["b"]["ci95"][1]
    assert fam["b"]["tokens"] == 6 * 4 * 1000 and fam["b"]["updates"] == 24
    with pytest.raises(BenchError, match="two families"):
        measure({"a": a}, rounds=6, steps=4)


def test_a_kept_speed_is_read_back_and_measured_again_only_when_its_rows_change(tmp_path, monkeypatch):
    from bench.sweep import train_speed

    schedule = get_schedule("short")
    made = []

    def factory(family, data, out):
        made.append(family)
        return _FakeTrainer({"t": 1700.0, "l": 1000.0}[family], [0.0])

    monkeypatch.setattr(train_speed, "measure", lambda trainers: {
        "reference": list(trainers)[0], "families": {f: {"speed_vs_l": {"l": 1.0, "t": 1.7}[f]} for f in trainers}})
    args = (tmp_path, "t", "l")
    configs = {"t": {"d_model": 8}, "l": {"d_model": 16}}
    ratio = train_speed.speed_ratio(*args, configs, schedule, lambda: None, factory, 1, "cpu", log=lambda m: None)
    assert ratio == pytest.approx(1.7) and made == ["l", "t"]
    rec = json.loads((tmp_path / RECORD).read_text())
    assert rec["key"]["threads"] == 1 and rec["key"]["configs"] == configs and rec["lock_mode"] == "exclusive"
    assert train_speed.speed_ratio(*args, configs, schedule, lambda: None, factory, 1, "cpu") == pytest.approx(1.7)
    assert made == ["l", "t"]  # read back, nothing built
    train_speed.speed_ratio(*args, {**configs, "t": {"d_model": 24}}, schedule, lambda: None, factory, 1, "cpu",
                            log=lambda m: None)
    assert made == ["l", "t", "l", "t"]  # a row changed: measured again
    (tmp_path / RECORD).write_text("{not json")
    with pytest.raises(BenchError, match="not a training-speed record"):
        train_speed.speed_ratio(*args, configs, schedule, lambda: None, factory, 1, "cpu")


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
    assert row.endswith("| ok |")  # its interval excludes zero: one seed is enough
    import pandas as pd

    csv = pd.read_csv(results / "ablations" / CSV)
    assert csv.loc[0, "d_valid_nll"] == pytest.approx(want) and csv.loc[0, "seeds_family"] == 2
    assert csv.loc[0, "d_valid_nll_lo"] <= want <= csv.loc[0, "d_valid_nll_hi"]
    with pytest.raises(BenchError, match="no ablation records"):
        write_ablations(tmp_path / "empty", results, budget)
    # an ablation no different from its row: the interval crosses zero, and its status asks for seeds 2 and 3
    _with_sentences(own, "transformer-h4", {1: family[1]})
    write_ablations(results / "ablations", results, budget)
    row = next(line for line in (results / "ablations" / TABLE).read_text().splitlines()
               if line.startswith("| transformer-h4 |"))
    assert row.endswith("| ok: its NLL interval crosses 0 with 1 seed(s): 3 wanted (--seeds 2,3) |")
    _with_sentences(own, "transformer-h4", ablated)
    # a failed ablation (its final NLL above the plateau: the leaderboard's rule) is listed as failed, not paired
    train = json.loads((own / "train-s1.json").read_text())
    train["unigram_entropy"] = 2.0
    (own / "train-s1.json").write_text(json.dumps(train))
    write_ablations(results / "ablations", results, budget)
    row = next(line for line in (results / "ablations" / TABLE).read_text().splitlines()
               if line.startswith("| transformer-h4 |"))
    assert "| failed: seed 1: final validation NLL 2.35 is above the unigram entropy" in row and " [" not in row
    assert "d_valid_nll" not in pd.read_csv(results / "ablations" / CSV).columns


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


def test_the_training_time_ablation_measures_the_real_trainers_once(tmp_path, monkeypatch):
    """On the toy corpus and the tiny budget: planning the ablation times both rows' real training updates side
    by side, keeps the measurement, and sets the recipe's tokens times the measured speed ratio; planning again
    reads it back."""
    from bench.sweep import train_speed
    from tests.bench.test_shapes import budget_file, write_tuned
    from tests.toy_corpus import write_corpus

    corpus = write_corpus(tmp_path / "toy")
    budget = budget_file(tmp_path, "ablations:\n  transformer-time: {model: transformer, wall_time_of: "
                                   "lite_transformer}\n")
    write_tuned(tmp_path / "results", budget)
    opts = dict(budget=str(budget), ablations=True, corpus=str(corpus), results_root=tmp_path / "results",
                cache_root=tmp_path / "cache", train_threads=1, log=lambda m: None)
    run = Sweep(SweepOptions(**opts)).plan("transformer-time")
    rec = json.loads((tmp_path / "results" / "tiny" / "ablations" / RECORD).read_text())
    fam = rec["result"]["families"]
    assert rec["result"]["reference"] == "lite_transformer" and rec["key"]["threads"] == 1
    assert fam["transformer"]["updates"] == fam["lite_transformer"]["updates"] == 160
    assert fam["transformer"]["tokens"] == fam["lite_transformer"]["tokens"] > 0  # the same batches
    ratio = fam["transformer"]["speed_vs_lite_transformer"]
    assert run.schedule.max_tokens == int(round(3000 * ratio, -3)) and rec["lock_mode"] == "exclusive"
    monkeypatch.setattr(train_speed, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert Sweep(SweepOptions(**opts)).plan("transformer-time").schedule.max_tokens == run.schedule.max_tokens
