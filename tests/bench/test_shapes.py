"""The equal-budget shape search (``bench shapes``): the candidates (the paper's shape always among them, the same
number and trial tokens for every family, every one solved within the budget's tolerance by an independent MAC
count), bad input before any training, resume, the choice, the confirmation runs, cluster jobs, and a real
search on the toy corpus. Trials are faked where the training itself is not what is tested."""

from __future__ import annotations

import collections
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import bench.train.searched_shapes as searched_shapes
import bench.train.shapes as shapes
import bench.train.trials as trials
from bench.budget.solve import solve_model
from bench.budget.spec import Variant, load_budget
from bench.cli import main
from bench.cost.counting import count_macs
from bench.errors import BenchError
from bench.train.schedules import get_schedule
from models import create_model
from tests.toy_corpus import write_corpus

REPO = Path(__file__).resolve().parents[2]
TINY = """\
name: tiny
target_macs: 1_000_000
tolerance: 0.02
protocol: {batch: 1, src_tokens: 30, tgt_tokens: 30, counter: flop_counter}
shared: {normalize_before: true, dropout: 0.0, vocab_size: 60}
models:
  transformer:
    fixed: {heads: 2, encoder_attention_heads: 2}
    mt: {encoder_layers: 1, decoder_layers: 1}
    lm: {decoder_layers: 2}
    vary: {key: d_model, step: 4, min: 8, max: 128}
    fine: {key: ffn_dim, step: 4}
  evolved_transformer:
    fixed: {heads: 2, parallel_heads: 4, encoder_attention_heads: 2}
    mt: {encoder_layers: 1, decoder_layers: 1}
    vary: {key: d_model, step: 4, min: 8, max: 128}
    fine: {key: ffn_dim, step: 4}
  lite_transformer:
    fixed: {conv: dynamic, glu: true, heads: 2, conv_heads: 2, encoder_attention_heads: 4}
    mt: {encoder_layers: 1, decoder_layers: 1, kernel_sizes: [3, 5]}
    vary: {key: d_model, step: 8, min: 16, max: 128}
    fine: {key: ffn_dim, step: 4}
train:
  short: {max_tokens: 3000, batch_tokens: 256, warmup_steps: 4, valid_every: 1000, valid_sentences: null,
          checkpoint_every: 1000, log_every: 1, precision: fp32, max_len: 64}
"""
SHAPES = """\
shapes:
  trials_per_family: 3
  tokens_per_trial: 1000
  models:
    transformer: {layers: [[1, 1], [2, 2]], heads: [2, 4]}
    evolved_transformer: [{layers: 2}, {ffn_ratio: 2}]
    lite_transformer: {layers: [[1, 1], [2, 2], [3, 3]], ffn_ratio: [1, 2]}
"""
RATES = {"transformer": 3e-3, "evolved_transformer": 2e-3, "lite_transformer": 4e-3}


def budget_file(root: Path, section: str = SHAPES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "tiny.yaml"
    path.write_text(TINY + section)
    return path


def write_tuned(results: Path, budget: Path, rates: dict[str, float] = RATES) -> None:
    """What `bench tune` leaves for the tiny budget (its recipe: 3000 target tokens): results/tiny/tuning."""
    path = results / "tiny" / "tuning" / "chosen.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schedule": "short", "recipe_tokens": 3000, "trial_kind": "truncated",
                                "chosen": {f: {"lr": v} for f, v in rates.items()}}))


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    """The tiny budget's trials: every family, every candidate solved (the real solver, once for the module)."""
    budget = load_budget(str(budget_file(tmp_path_factory.mktemp("plan"))))
    schedule = get_schedule("short", **budget.schedule_overrides("short"))
    return budget, schedule, shapes.plan(budget, schedule, "toy", RATES)


@pytest.fixture
def solved_once(monkeypatch):
    """Solving a candidate costs seconds: tests that exercise the search, not the solver, solve each one once."""
    cache: dict = {}
    real = shapes.solve_shape

    def cached(budget, family, shape, paper_cfg, candidate=0):
        key = (budget.name, budget.task, family, shape, candidate)
        if key not in cache:
            cache[key] = real(budget, family, shape, paper_cfg, candidate)
        return cache[key]

    monkeypatch.setattr(shapes, "solve_shape", cached)
    return cache


class FakeRuns:
    """Trials without training: a validation NLL per ``family:shape`` or per shape (None: diverged; 5.0 when not
    given; a full run 1.0 lower); ``stop_after``: the search is killed once that many trials have finished."""

    def __init__(self, nll: dict[str, float | None], stop_after: int | None = None) -> None:
        self.nll, self.stop_after, self.calls = nll, stop_after, collections.Counter()

    def __call__(self, trial, task, corpus, seed, out, what):
        if self.stop_after is not None and sum(self.calls.values()) >= self.stop_after:
            raise RuntimeError("killed")
        self.calls[trial.name] += 1
        s = trial.schedule
        slug = trial.solved.shape.slug
        nll = self.nll.get(f"{trial.family}:{slug}", self.nll.get(slug, 5.0))
        tokens = s.stop_tokens or s.max_tokens
        if nll is None:
            return {"error": "training diverged (loss nan)"}
        return {"valid_nll": nll + (0 if s.stop_tokens else -1.0), "train_tokens": tokens, "stop": "stop_tokens"}


def _error_line(capsys) -> str:
    """The one error line (stderr may hold progress lines before it, "solving ... candidate shapes")."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and not any("Traceback" in line for line in err), err
    return errors[0]


# ------------------------------------------------------------------------------------------ the 100M section
@pytest.mark.parametrize("name", ["100M", "500M"])
def test_candidates_are_eight_per_family_paper_first_moving_one_knob(name):
    """At 100M and 500M (the same grids) every family gets 8 candidates of 666,666 target tokens: the paper's shape
    (the budget file's own fixed knobs, read here from the YAML) and the seven one-knob moves of the grid, in the
    documented order."""
    raw = yaml.safe_load((REPO / "budgets" / f"{name}.yaml").read_text())
    budget = load_budget(name)
    assert budget.shapes.trials_per_family == 8 and budget.shapes.tokens_per_trial == 666_666
    expected = {
        "transformer": ["L6x6-h8-f4", "L3x3-h8-f4", "L4x4-h8-f4", "L8x8-h8-f4", "L6x6-h4-f4", "L6x6-h16-f4",
                        "L6x6-h8-f2", "L6x6-h8-f8"],
        "evolved_transformer": ["L3x4-h8-f4", "L2x2-h8-f4", "L2x3-h8-f4", "L4x5-h8-f4", "L3x4-h4-f4", "L3x4-h16-f4",
                                "L3x4-h8-f2", "L3x4-h8-f8"],
        "lite_transformer": ["L6x6-h4-f1", "L3x3-h4-f1", "L4x4-h4-f1", "L8x8-h4-f1", "L6x6-h2-f1", "L6x6-h8-f1",
                             "L6x6-h4-f2", "L6x6-h4-f4"],
    }
    rule = {"transformer": 4, "evolved_transformer": 4, "lite_transformer": 1}  # ffn = 4d, and Lite's flattened d
    for family, slugs in expected.items():
        got = shapes.candidates(budget, family)
        assert [s.slug for s in got] == slugs and len(set(got)) == 8
        model = raw["models"][family]
        paper = got[0]
        assert (paper.encoder_layers, paper.decoder_layers, paper.heads, paper.ffn_ratio) == (
            model["mt"]["encoder_layers"], model["mt"]["decoder_layers"], model["fixed"]["heads"], rule[family])
        assert all(s.moved(paper) == 1 for s in got[1:])
    # a knob's move keeps the other head counts in their paper ratio; Lite's kernels follow its depth
    lite = shapes.paper_config(budget, "lite_transformer")
    over = shapes.shape_overrides("lite_transformer", lite, shapes.Shape(8, 8, 8, 1.0))
    assert (over["conv_heads"], over["encoder_attention_heads"]) == (8, 16)
    assert over["kernel_sizes"] == [3, 7, 15, 31, 31, 31, 31, 31]
    assert shapes.shape_overrides("lite_transformer", lite, shapes.Shape(3, 3, 4, 1.0))["kernel_sizes"] == [3, 7, 15]
    et = shapes.paper_config(budget, "evolved_transformer")
    over = shapes.shape_overrides("evolved_transformer", et, shapes.Shape(3, 4, 4, 4.0))
    assert (over["heads"], over["parallel_heads"], over["encoder_attention_heads"]) == (4, 8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["100M", "500M"])
def test_every_candidate_is_within_the_budget_by_the_primary_counter(name):
    """Every candidate (24 solves per budget, minutes): within +-2% of the budget's MACs counted again here on the
    built model; the paper's shape is the sweep's own config, and its trial is the tuning trial at that rate."""
    from bench.train.tune import plan as tune_plan
    from models import create_model

    budget = load_budget(name)
    target = budget.target_macs
    schedule = get_schedule("short", **budget.schedule_overrides("short"))
    rates = {"transformer": 4e-3, "evolved_transformer": 4e-3, "lite_transformer": 4e-3}
    trials = shapes.plan(budget, schedule, "libreoffice-en-de", rates)
    by_family = collections.Counter(t.family for t in trials)
    assert by_family == {f: 8 for f in budget.models}
    assert {t.schedule.stop_tokens for t in trials} == {666_666} and {t.schedule.max_tokens for t in trials} == {
        2_000_000}
    for t in trials:
        macs = count_macs(create_model(t.family, **t.config), counters=("flop_counter",),
                          protocol=budget.protocol).macs_by_counter["flop_counter"]
        assert 0.98 * target <= macs <= 1.02 * target and macs == t.solved.macs, t.name
    tuned = {t.family: t for t in tune_plan(budget, schedule, "libreoffice-en-de", grid=(4e-3,),
                                             tokens_per_trial=666_666)}
    for t in trials:
        if t.solved.paper:
            assert t.config == solve_model(budget, t.family).config.to_dict()
            # the config and schedule of tuning's 4e-3 trial (the tuning trial at the rate it chose)
            assert (t.config, t.schedule) == (tuned[t.family].config, tuned[t.family].schedule)


# ------------------------------------------------------------------------------------------ the tiny budget
def test_every_family_gets_the_same_trials_and_every_candidate_is_within_the_budget(tiny_plan):
    from models import create_model

    budget, schedule, trials = tiny_plan
    assert collections.Counter(t.family for t in trials) == {f: 3 for f in budget.models}
    assert {t.schedule.stop_tokens for t in trials} == {1000}
    assert {(t.schedule.max_tokens, t.schedule.warmup_steps) for t in trials} == {(3000, 4)}  # the recipe, truncated
    assert all(t.schedule.lr == RATES[t.family] for t in trials)
    assert len({t.key for t in trials}) == len(trials)
    for family in budget.models:
        mine = [t for t in trials if t.family == family]
        paper = [t for t in mine if t.solved.paper]
        assert len(paper) == 1 and paper[0].solved.candidate == 0
        assert paper[0].config == solve_model(budget, family).config.to_dict()  # what the sweep trains
    for t in trials:  # an independent count of the built model, not the solver's number
        macs = count_macs(create_model(t.family, **t.config), counters=("flop_counter",),
                          protocol=budget.protocol).macs_by_counter["flop_counter"]
        assert 980_000 <= macs <= 1_020_000 and macs == t.solved.macs, t.name
    cfg = {t.solved.shape.slug: t.config for t in trials if t.family == "lite_transformer"}
    assert cfg["L1x1-h2-f1"]["kernel_sizes"] == [3, 5]  # the paper's list as written
    assert cfg["L3x3-h2-f1"]["kernel_sizes"] == [3, 5, 5]  # extended with its last value
    assert [cfg[s]["encoder_layers"] for s in ("L1x1-h2-f1", "L2x2-h2-f1", "L3x3-h2-f1")] == [1, 2, 3]
    cfg = {t.solved.shape.slug: t.config for t in trials if t.family == "transformer"}
    assert (cfg["L1x1-h4-f4"]["heads"], cfg["L1x1-h4-f4"]["encoder_attention_heads"]) == (4, 4)
    assert cfg["L2x2-h2-f4"]["decoder_layers"] == 2
    # the FFN ratio replaces the rule (ffn = 4d) before the fine knob, which stays within a factor 2 of it
    et = {t.solved.shape.slug: t.config for t in trials if t.family == "evolved_transformer"}
    assert et["L1x1-h2-f2"]["ffn_dim"] / et["L1x1-h2-f2"]["d_model"] < 4
    d = et["L1x1-h2-f2"]["d_model"]
    assert d <= et["L1x1-h2-f2"]["ffn_dim"] <= 4 * d


def test_a_grid_larger_than_the_trials_takes_the_paper_and_the_fewest_moves(tmp_path):
    section = SHAPES.replace("trials_per_family: 3", "trials_per_family: 4").replace(
        "transformer: {layers: [[1, 1], [2, 2]], heads: [2, 4]}",
        "transformer: {heads: [4, 2], layers: [[2, 2], [3, 3]], ffn_ratio: [2]}")
    budget = load_budget(str(budget_file(tmp_path, section)))
    # the paper (1+1, 2 heads, 4d) is not in this grid, whose every shape moves the FFN ratio: the paper first,
    # then two knobs moved before three, in the grid's order (its first knob changing fastest)
    assert [s.slug for s in shapes.candidates(budget, "transformer")] == [
        "L1x1-h2-f4", "L2x2-h2-f2", "L3x3-h2-f2", "L2x2-h4-f2"]
    # a list shorter than trials_per_family: fewer candidates, the paper's shape added first
    assert [s.slug for s in shapes.candidates(budget, "evolved_transformer")] == [
        "L1x1-h2-f4", "L2x2-h2-f4", "L1x1-h2-f2"]


@pytest.mark.parametrize("section, message", [
    ("  models:\n    transformer: {depth: [2]}\n", "unknown knob(s) depth; valid: layers"),
    ("  models:\n    transformer: {heads: []}\n", "heads needs a non-empty list of values"),
    ("  models:\n    transformer: []\n", "needs a grid"),
    ("  models:\n    transformer: [{layers: [1, 1, 1]}]\n", "layers must be a positive integer or a pair"),
    ("  models:\n    transformer: [{heads: 0}]\n", "heads must be a positive integer"),
    ("  models:\n    transformer: [{layers: 2, decoder_layers: 3}]\n", "give it or encoder_layers"),
    ("  models:\n    gpt: {heads: [2]}\n", "'shapes: models: gpt': not a family of this budget"),
    ("  models:\n    transformer: [{layers: 40}]\n", "shapes: transformer L40x40-h2-f4 cannot be solved to tiny"),
    ("  models: {}\n", "'shapes: models' must map families"),
])
def test_bad_candidates_are_one_line_and_exit_2_before_any_training(tmp_path, monkeypatch, capsys, section,
                                                                     message):
    head = "shapes:\n  trials_per_family: 3\n  tokens_per_trial: 1000\n"
    budget = budget_file(tmp_path, head + section)
    write_tuned(tmp_path / "results", budget)
    fake = FakeRuns({})
    monkeypatch.setattr(shapes, "_run", fake)
    rc = main(["shapes", "--budget", str(budget), "--results", str(tmp_path / "results"), "--corpus", "toy"])
    assert rc == 2 and message in _error_line(capsys)
    assert not fake.calls and not (tmp_path / "results" / "tiny" / "shapes").exists()


@pytest.mark.parametrize("argv, section, tuned, message", [
    ([], "", True, "has no 'shapes:' section"),
    ([], SHAPES, False, "no tuned peak rate for transformer, evolved_transformer, lite_transformer"),
    (["--models", "transformer,gpt"], SHAPES, True, "gpt not among the families"),
    (["--tokens-per-trial", "4000"], SHAPES, True, "longer than the recipe (3,000)"),
    (["--tokens-per-trial", "0"], SHAPES, True, "--tokens-per-trial must be an integer >= 1"),
    ([], SHAPES.replace("trials_per_family: 3", "trials_per_family: 0"), True, "trials_per_family' must be a positive"),
    ([], SHAPES.replace("  tokens_per_trial: 1000\n", ""), True, "'shapes' needs tokens_per_trial"),
    ([], SHAPES.replace("models:", "modles:"), True, "unknown key(s) modles in 'shapes'"),
    (["--task", "lm"], SHAPES, True, "layers [1, 1]: a language model has one stack"),
    (["--task", "lm"], SHAPES.replace("[{layers: 2}, {ffn_ratio: 2}]", "[{encoder_layers: 2}]").replace(
        "transformer: {layers: [[1, 1], [2, 2]], heads: [2, 4]}", "transformer: {heads: [2, 4]}"), True,
     "encoder_layers is not a knob of a language model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, section, tuned, message):
    budget = budget_file(tmp_path, section)
    if tuned:
        write_tuned(tmp_path / "results", budget)
        if "lm" in argv:  # the language-model folder's own tuning
            (tmp_path / "results" / "tiny-lm").mkdir()
            (tmp_path / "results" / "tiny" / "tuning").rename(tmp_path / "results" / "tiny-lm" / "tuning")
    fake = FakeRuns({})
    monkeypatch.setattr(shapes, "_run", fake)
    rc = main(["shapes", "--budget", str(budget), "--results", str(tmp_path / "results"), "--corpus", "toy", *argv])
    assert rc == 2 and message in _error_line(capsys)
    assert not fake.calls


# ------------------------------------------------------------------------------------------ the search
def _search(root: Path, **kw):
    return shapes.search(str(root / "tiny.yaml"), corpus="toy", results_root=root / "results",
                         cache_root=root / "cache", log=lambda m: None, **kw)


def test_a_stopped_search_resumes_without_repeating_a_finished_trial(tmp_path, monkeypatch, solved_once):
    write_tuned(tmp_path / "results", budget_file(tmp_path))
    killed = FakeRuns({}, stop_after=4)
    monkeypatch.setattr(shapes, "_run", killed)
    with pytest.raises(RuntimeError, match="killed"):
        _search(tmp_path, jobs=1)
    folder = tmp_path / "results" / "tiny" / "shapes"
    done = {p.stem for p in folder.glob("*.json")}
    assert len(done) >= 4 and not (folder / "chosen.json").exists()
    assert done <= set(killed.calls)
    again = FakeRuns({})
    monkeypatch.setattr(shapes, "_run", again)
    res = _search(tmp_path, jobs=2)
    assert not set(again.calls) & done  # a finished trial is never trained again
    assert set(again.calls) | done == {n[:-5] for n in res["trials"]} and len(res["trials"]) == 9
    assert all(n == 1 for n in again.calls.values())
    third = FakeRuns({})
    monkeypatch.setattr(shapes, "_run", third)
    assert _search(tmp_path)["chosen"] == res["chosen"] and not third.calls
    _search(tmp_path, seed=2)  # another seed's trials are other trials
    assert len(third.calls) == 9 and not set(third.calls) & (set(again.calls) | done)


def test_chosen_is_the_lowest_nll_and_the_table_and_figure_show_every_candidate(tmp_path, monkeypatch,
                                                                                solved_once):
    write_tuned(tmp_path / "results", budget_file(tmp_path))
    nll = {"transformer:L1x1-h2-f4": 3.0, "transformer:L2x2-h2-f4": 2.5,  # a tie between two moves: the earlier
           "transformer:L1x1-h4-f4": 2.5,  # (in the candidate order) wins
           "L1x1-h2-f1": 2.0, "L2x2-h2-f1": None, "L3x3-h2-f1": 2.2,  # Lite's 2+2 diverged
           "L1x1-h2-f2": 4.0}  # ET's FFN move wins; its paper shape and 2+2 tie at 5.0, the paper first
    monkeypatch.setattr(shapes, "_run", FakeRuns(nll))
    res = _search(tmp_path)
    folder = tmp_path / "results" / "tiny" / "shapes"
    records = [json.loads((folder / n).read_text()) for n in res["trials"]]
    for family in RATES:
        mine = [r for r in records if r["family"] == family and r["valid_nll"] is not None]
        best = min(mine, key=lambda r: (r["valid_nll"], not r["paper_shape"], r["candidate"]))
        assert res["chosen"][family]["shape_slug"] == best["shape_slug"]
    assert res["chosen"]["transformer"]["shape_slug"] == "L2x2-h2-f4"
    assert res["chosen"]["transformer"]["confirm"] == ["L2x2-h2-f4", "L1x1-h4-f4"]
    assert res["chosen"]["evolved_transformer"]["confirm"] == ["L1x1-h2-f2", "L1x1-h2-f4"]
    lite = res["chosen"]["lite_transformer"]
    assert lite["shape_slug"] == "L1x1-h2-f1" and lite["ranking"][-1] == "L2x2-h2-f1"
    assert lite["ranks"]["L2x2-h2-f1"] is None and lite["confirm"] == ["L1x1-h2-f1", "L3x3-h2-f1"]
    saved = json.loads((folder / "chosen.json").read_text())
    assert saved["chosen"] == res["chosen"] and saved["candidates"] == {f: 3 for f in RATES}
    assert saved["cost_in_seeds"] == {f: round(3 * 1000 / 3000, 3) for f in RATES} and saved["lr"] == RATES
    rec = next(r for r in records if r["family"] == "transformer" and r["shape_slug"] == "L2x2-h2-f4")
    assert rec["stage"] == "shapes" and rec["trial_kind"] == "truncated" and rec["tokens_per_trial"] == 1000
    assert rec["schedule_config"]["stop_tokens"] == 1000 and rec["lr"] == 3e-3
    assert f"transformer-L2x2-h2-f4-{rec['config_hash']}.json" in res["trials"]
    assert abs(rec["macs"] / rec["analytic_macs"] - 1) < 0.01
    assert rec["rel_error"] == pytest.approx(rec["macs"] / 1_000_000 - 1, abs=1e-6)
    md = (folder / "shapes.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert len(rows) == 9 and "1,000 target tokens per trial for every family" in md
    assert "| transformer | L2x2-h2-f4 | 2+2 | 2 | 4 |" in md and "L1x1-h2-f4 (paper)" in md
    row = next(r for r in rows if "L2x2-h2-f1" in r)
    assert row.split(" | ")[-2:] == ["diverged", "- |"]
    row = next(r for r in rows if "| transformer | L2x2-h2-f4 |" in r).strip("| ").split(" | ")
    assert row[7] == f"{rec['macs']:,}" and row[8] == f"{rec['rel_error']:+.2%}" and row[9] == f"{rec['params']:,}"
    assert row[10:] == ["2.500", "1"]
    assert (folder / "shapes.png").stat().st_size > 0 and (folder / "shapes.pdf").stat().st_size > 0


def test_ties_go_to_the_paper_shape_and_unequal_trials_are_refused():
    def rec(family, slug, nll, paper=False, candidate=1, tokens=100):
        return {"family": family, "shape_slug": slug, "valid_nll": nll, "paper_shape": paper, "candidate": candidate,
                "tokens_per_trial": tokens, "shape": {}, "d_model": 8, "ffn_dim": 8, "lr": 1e-3}

    out = shapes.rank([rec("a", "x", 2.0, candidate=1), rec("a", "p", 2.0, paper=True, candidate=0),
                       rec("a", "y", math.nan, candidate=2)])
    assert out["a"]["shape_slug"] == "p" and out["a"]["ranking"] == ["p", "x", "y"] and out["a"]["ranks"]["y"] is None
    with pytest.raises(BenchError, match="unequal"):
        shapes.rank([rec("a", "x", 2.0), rec("b", "x", 2.0, tokens=50)])
    with pytest.raises(BenchError, match="every run of a diverged"):
        shapes.rank([rec("a", "x", None)])


def test_a_family_with_fewer_candidates_is_said_so(tmp_path, monkeypatch, solved_once):
    section = SHAPES.replace("[{layers: 2}, {ffn_ratio: 2}]", "[{layers: 2}]")
    write_tuned(tmp_path / "results", budget_file(tmp_path, section))
    monkeypatch.setattr(shapes, "_run", FakeRuns({}))
    res = _search(tmp_path, models=["evolved_transformer", "transformer"])
    assert res["candidates"] == {"evolved_transformer": 2, "transformer": 3}
    assert res["fewer_candidates"] == {"evolved_transformer": 2}
    md = (tmp_path / "results" / "tiny" / "shapes" / "shapes.md").read_text()
    assert "evolved_transformer has 2 candidates, fewer than trials_per_family 3" in md


def test_confirm_trains_the_two_best_with_the_whole_recipe(tmp_path, monkeypatch, capsys, solved_once):
    budget = budget_file(tmp_path)
    write_tuned(tmp_path / "results", budget)
    nll = {"L1x1-h2-f4": 3.0, "L2x2-h2-f4": 2.5, "L1x1-h4-f4": 2.6}
    runs = FakeRuns(nll)
    monkeypatch.setattr(shapes, "_run", runs)
    argv = ["shapes", "--budget", str(budget), "--results", str(tmp_path / "results"), "--corpus", "toy",
            "--models", "transformer", "--confirm"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "transformer: best L2x2-h2-f4" in out and "to confirm: L2x2-h2-f4, L1x1-h4-f4" in out
    folder = tmp_path / "results" / "tiny" / "shapes"
    confirm = sorted((folder / "confirm").glob("*.json"))
    recs = [json.loads(p.read_text()) for p in confirm]
    assert sorted(r["shape_slug"] for r in recs) == ["L1x1-h4-f4", "L2x2-h2-f4"]
    assert all(r["stage"] == "shapes_confirm" and r["trial_kind"] == "full" and "stop_tokens" not in
               r["schedule_config"] and r["schedule_config"]["max_tokens"] == 3000 and r["lr"] == 3e-3 for r in recs)
    saved = json.loads((folder / "chosen.json").read_text())
    assert saved["confirmed"]["transformer"]["ranking"] == ["L2x2-h2-f4", "L1x1-h4-f4"]
    md = (folder / "shapes.md").read_text()
    assert "full-run NLL | full-run rank" in md
    assert "| 2.500 | 1 | 1.500 | 1 |" in md and "| 2.600 | 2 | 1.600 | 2 |" in md
    calls = sum(runs.calls.values())
    assert main(argv) == 0 and sum(runs.calls.values()) == calls == 5  # three trials, two full runs; none again


def test_trials_as_cluster_jobs_of_one_array(tmp_path, monkeypatch, solved_once):
    import torch

    from tests.bench.test_sweep_jobs import FakeCluster

    threads = torch.get_num_threads()
    write_tuned(tmp_path / "results", budget_file(tmp_path))
    fake = FakeCluster(monkeypatch)
    monkeypatch.setattr(trials, "run_units", fake)
    monkeypatch.setattr(shapes, "check_cluster", lambda partition: None)
    trained = collections.Counter()

    def train(family, config, schedule, task, corpus, seed, out):
        trained[config["d_model"]] += 1
        return {"valid_nll": 3.0 + config["decoder_layers"], "train_tokens": schedule["stop_tokens"],
                "stop": "stop_tokens"}

    monkeypatch.setattr(shapes, "train_trial", train)
    try:
        res = _search(tmp_path, models=["transformer"], executor="slurm")
        assert [[(name.split(" ")[0], kind) for name, kind, _ in units] for units in fake.submitted] == [
            [("shape", "shapes")] * 3]
        folder = tmp_path / "results" / "tiny" / "shapes"
        records = [json.loads((folder / n).read_text()) for n in res["trials"]]
        assert sorted(r["job_id"] for r in records) == ["9_0", "9_1", "9_2"] and res["chosen"]["transformer"][
            "shape_slug"] != "L2x2-h2-f4"
        (folder / res["trials"][1]).unlink()
        _search(tmp_path, models=["transformer"], executor="slurm")
        assert len(fake.submitted[-1]) == 1 and sum(trained.values()) == 4
    finally:
        torch.set_num_threads(threads)


def test_a_real_search_on_the_toy_corpus(tmp_path, solved_once):
    """Three truncated trials of the Transformer, each trained in its own process on the toy corpus."""
    corpus = write_corpus(tmp_path / "toy")
    write_tuned(tmp_path / "results", budget_file(tmp_path))
    log: list[str] = []
    kw = dict(models=["transformer"], corpus=str(corpus), results_root=tmp_path / "results",
              cache_root=tmp_path / "cache", log=log.append)
    res = shapes.search(str(tmp_path / "tiny.yaml"), **kw)
    folder = tmp_path / "results" / "tiny" / "shapes"
    records = [json.loads((folder / n).read_text()) for n in res["trials"]]
    assert len(records) == 3 and all(math.isfinite(r["valid_nll"]) and r["threads"] == 1 for r in records)
    assert all(1000 <= r["train_tokens"] < 3000 and r["stop"] == "stop_tokens" for r in records)
    assert all(r["lr"] == 3e-3 and r["curve"] for r in records)
    best = min(records, key=lambda r: r["valid_nll"])
    assert res["chosen"]["transformer"]["shape_slug"] == best["shape_slug"]
    again = shapes.search(str(tmp_path / "tiny.yaml"), **kw)
    assert again["chosen"] == res["chosen"] and sum("done before" in m for m in log) == 3


# ------------------------------------------------------------------------------------ searched-shape rows
SEARCHED = """\
variants:
  transformer-searched: {model: transformer, label: transformer (searched shape), shape: searched, tasks: [mt]}
  lite_transformer-searched: {model: lite_transformer, shape: searched}
  evolved_transformer-searched: {model: evolved_transformer, shape: searched}
"""


def test_searched_shape_rows_take_the_confirmed_shape_and_train_its_confirmation_config(tmp_path, monkeypatch,
                                                                                           solved_once):
    budget = budget_file(tmp_path, SHAPES + SEARCHED)
    results = tmp_path / "results"
    write_tuned(results, budget)
    folder = results / "tiny" / "shapes"
    loaded = load_budget(str(budget))
    # before any search: the rows wait, out of every sweep, and a solve names the reason
    assert set(loaded.searched) == {f"{f}-searched" for f in RATES} and loaded.rows() == [*RATES]
    waiting = searched_shapes.with_searched_shapes(loaded, folder)
    assert waiting.rows() == [*RATES] and "chosen.json is missing" in waiting.skipped["transformer-searched"]
    with pytest.raises(BenchError, match="transformer-searched is left out.*bench shapes --budget tiny --confirm"):
        solve_model(waiting, "transformer-searched")
    with pytest.raises(BenchError, match="takes its shape from budget tiny's shape search"):
        solve_model(loaded, "transformer-searched")
    # the search with its confirmation: Transformer's trials rank L2x2 first but its full run is L1x1-h4; ET's
    # best is a narrower FFN; Lite's is its paper shape
    nll = {"transformer:L2x2-h2-f4": 2.5, "transformer:L1x1-h4-f4": 2.6, "transformer:L1x1-h2-f4": 3.0,
           "evolved_transformer:L1x1-h2-f2": 2.0, "lite_transformer:L1x1-h2-f1": 1.0}
    runs = FakeRuns(nll)

    def fake(trial, task, corpus, seed, out, what):
        got = runs(trial, task, corpus, seed, out, what)
        if what == "confirmation run" and trial.solved.shape.slug == "L1x1-h4-f4":
            got["valid_nll"] = 1.0  # the full runs reverse the trials' order
        return got

    monkeypatch.setattr(shapes, "_run", fake)
    assert main(["shapes", "--budget", str(budget), "--results", str(results), "--corpus", "toy", "--confirm"]) == 0
    chosen = json.loads((folder / "chosen.json").read_text())
    assert chosen["chosen"]["transformer"]["shape_slug"] == "L2x2-h2-f4"
    assert chosen["confirmed"]["transformer"]["shape_slug"] == "L1x1-h4-f4"
    got = searched_shapes.with_searched_shapes(loaded, folder)
    assert got.rows() == [*RATES, "transformer-searched", "evolved_transformer-searched"] and not got.searched
    assert "paper shape (L1x1-h2-f1)" in got.skipped["lite_transformer-searched"]
    t, et = got.variants["transformer-searched"], got.variants["evolved_transformer-searched"]
    assert t.label == "transformer (searched shape, L1x1-h4-f4)" and t.tasks == ("mt",)
    assert et.label == "evolved_transformer (searched shape, L1x1-h2-f2)" and et.ffn_ratio == 2.0
    assert t.sets["heads"] == 4 and t.sets["encoder_attention_heads"] == 4 and t.ffn_ratio is None
    # each row solves to the very config its family's confirmation run trained (its record's config)
    for key, slug in (("transformer-searched", "L1x1-h4-f4"), ("evolved_transformer-searched", "L1x1-h2-f2")):
        rec = next(r for r in (json.loads(p.read_text()) for p in (folder / "confirm").glob("*.json"))
                   if r["shape_slug"] == slug and key.startswith(r["family"]))
        sol = solve_model(got, key)
        assert sol.config.to_dict() == rec["config"], key
        assert abs(sol.macs / got.target_macs - 1) <= got.tolerance
        assert sol.macs == count_macs(create_model(got.family_of(key), **sol.config.to_dict())).macs


def test_a_sweep_runs_the_searched_rows_once_the_search_has_run(tmp_path, monkeypatch):
    from bench.sweep.runner import Sweep, SweepOptions

    budget = budget_file(tmp_path, SHAPES + SEARCHED)
    results = tmp_path / "results"
    write_tuned(results, budget)
    logged: list[str] = []
    opts = dict(budget=str(budget), results_root=results, log=logged.append)
    sweep = Sweep(SweepOptions(**opts))
    assert sweep.models == [*RATES] and not logged  # no search begun: nothing to say on every sweep
    with pytest.raises(BenchError, match="MODELS names a row this sweep leaves out: transformer-searched"):
        Sweep(SweepOptions(**opts, models=["transformer-searched"]))
    folder = results / "tiny" / "shapes"
    folder.mkdir(parents=True)
    Sweep(SweepOptions(**opts))  # a search begun but not confirmed: the sweep says why the rows wait
    assert any("transformer-searched: not in this sweep" in m and "chosen.json is missing" in m for m in logged)
    shape = {"encoder_layers": 2, "decoder_layers": 2, "heads": 2, "ffn_ratio": 4.0}
    (folder / "chosen.json").write_text(json.dumps({"confirmed": {"transformer": {"shape": shape}}}))
    sweep = Sweep(SweepOptions(**opts))
    assert sweep.models == [*RATES, "transformer-searched"]
    assert sweep.schedule_for("transformer-searched").lr == RATES["transformer"]  # the family's tuned rate
    # a longer schedule of the length study reads the search of the schedule it lengthens
    assert searched_shapes.searched_shapes_folder(results / "tiny-x4", "x4", load_budget(str(budget))) == folder


@pytest.mark.parametrize("spec,message", [
    ("{model: transformer, shape: best}", "'shape' must be searched"),
    ("{model: transformer, shape: searched, set: {heads: 4}}", "a searched shape sets no other key"),
    ("{model: transformer}", "needs 'model'.*and a 'set' mapping"),
])
def test_a_bad_searched_variant_is_one_line(tmp_path, capsys, spec, message):
    budget = budget_file(tmp_path, f"variants:\n  row: {spec}\n")
    with pytest.raises(BenchError, match=message):
        load_budget(str(budget))
    assert main(["solve", "--budget", str(budget), "transformer"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_paper_shape_competes_in_the_confirmation_with_its_own_row(tmp_path, monkeypatch, capsys, solved_once):
    """The paper shape's full-recipe run is the family's own row of the comparison (same config, recipe, rate,
    seed): when the trials leave it out of the two best, that row's NLL joins the confirmation's ranking, and a
    paper shape that ends best leaves the family without a searched-shape row."""
    budget = budget_file(tmp_path)
    write_tuned(tmp_path / "results", budget)
    runs = FakeRuns({"L1x1-h2-f4": 3.0, "L2x2-h2-f4": 2.5, "L1x1-h4-f4": 2.6})
    monkeypatch.setattr(shapes, "_run", runs)
    argv = ["shapes", "--budget", str(budget), "--results", str(tmp_path / "results"), "--corpus", "toy",
            "--models", "transformer"]
    assert main(argv) == 0  # the trials, no confirmation: learn the paper trial's config
    folder = tmp_path / "results" / "tiny" / "shapes"
    paper = next(r for r in (json.loads(p.read_text()) for p in folder.glob("transformer-*.json")) if r["paper_shape"])
    recipe = get_schedule("short", **load_budget(str(budget)).schedule_overrides("short")).with_overrides(lr=3e-3)
    row = tmp_path / "results" / "tiny" / "runs" / "transformer-0123456789" / "train-s1.json"
    row.parent.mkdir(parents=True)
    rec = {"model": "transformer", "stage": "train", "seed": 1, "config": paper["config"], "corpus": "toy",
           "schedule_config": json.loads(json.dumps(recipe.to_dict())), "valid_nll": 1.2, "train_tokens": 3000,
           "train_steps": 40, "best_valid_nll": 1.19, "curve": [[40, 3000, 1.2]], "config_hash": "0123456789"}
    for other in ({"config": {**paper["config"], "dropout": 0.3}}, {"corpus": "libreoffice-en-de"}):
        row.write_text(json.dumps({**rec, **other}))  # another config, or another corpus: not this search's run
        assert main([*argv, "--confirm"]) == 0
        saved = json.loads((folder / "chosen.json").read_text())
        assert saved["paper_runs"] == {} and saved["confirmed"]["transformer"]["shape_slug"] == "L2x2-h2-f4"
        assert "Full-recipe runs of the two best (one seed each)" in (folder / "shapes.md").read_text()
    row.write_text(json.dumps(rec))
    capsys.readouterr()
    assert main([*argv, "--confirm"]) == 0
    saved = json.loads((folder / "chosen.json").read_text())
    reused = saved["paper_runs"]["transformer"]
    assert reused["reused_from"] == "tiny/runs/transformer-0123456789/train-s1.json"
    # the row's run, not the truncated trial's: its steps, best NLL, curve, hash and recipe; the trial's shape
    assert (reused["train_steps"], reused["best_valid_nll"], reused["curve"], reused["config_hash"]) == \
        (40, 1.19, [[40, 3000, 1.2]], "0123456789")
    assert reused["trial_kind"] == "full" and reused["schedule_config"] == rec["schedule_config"]
    assert reused["tokens_per_trial"] == recipe.max_tokens and "final_sample_valid_nll" not in reused
    assert (reused["shape_slug"], reused["d_model"], reused["macs"]) == (paper["shape_slug"], paper["d_model"],
                                                                          paper["macs"])
    best = saved["confirmed"]["transformer"]
    assert best["shape_slug"] == "L1x1-h2-f4" and best["paper_shape"] and best["ranking"][0] == "L1x1-h2-f4"
    md = (folder / "shapes.md").read_text()
    assert "| 1.200 (its row) | 1 |" in md and "the paper's shape: no searched-shape row" in md
    assert sum(runs.calls.values()) == 5  # three trials, two full runs: the paper's full run was not trained
    from bench.train.searched_shapes import with_searched_shapes

    spec = load_budget(str(budget))
    spec = replace(spec, searched={"transformer-searched": Variant("transformer-searched", "transformer",
                                                                   "transformer-searched", {}, ("mt",),
                                                                   shape="searched")})
    assert "paper shape" in with_searched_shapes(spec, folder).skipped["transformer-searched"]
