"""The length study: x4 / x16 schedules (the budget's short recipe, longer), the report's length table and
figure checked against hand computations from the committed records, and the 16x dropout rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.budget.spec import load_budget
from bench.report.length import render, write_length
from bench.report.length_data import collect, length_folders, overfit_rule, tokens_to_reach
from bench.sweep.runner import Sweep, SweepOptions
from bench.train.schedules import get_schedule

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "results" / "100M"


def test_longer_schedules_are_the_budgets_short_recipe_with_more_tokens():
    budget = load_budget("100M")
    short = get_schedule("short", **budget.schedule_overrides("short"))
    for name, factor in (("x4", 4), ("x16", 16)):
        longer = get_schedule(name, **budget.schedule_overrides(name))
        assert longer.max_tokens == factor * short.max_tokens == factor * 2_000_000
        same = {k: v for k, v in short.to_dict().items() if k not in ("name", "max_tokens")}
        assert {k: v for k, v in longer.to_dict().items() if k not in ("name", "max_tokens")} == same
    # 500M's short recipe is its own (1.5M tokens there): x4 follows it
    b500 = load_budget("500M")
    assert b500.schedule_overrides("x4")["max_tokens"] == 4 * b500.schedule_overrides("short")["max_tokens"]


def test_a_longer_schedule_takes_the_short_schedules_tuned_rates_and_its_own_folder():
    chosen = json.loads((COMMITTED / "tuning" / "chosen.json").read_text())["chosen"]
    sweep = Sweep(SweepOptions(budget="100M", schedule="x4"))
    assert sweep.results.name == "100M-x4"
    assert sweep.tuned == {f: v["lr"] for f, v in chosen.items()}
    for model in ("transformer", "lite_transformer", "transformer-postnorm"):
        sched = sweep.schedule_for(model)
        assert sched.lr == chosen[sweep.budget.family_of(model)]["lr"] and sched.max_tokens == 8_000_000


def test_tokens_to_reach_and_the_overfit_rule_by_hand():
    curve = [{"tokens": t, "valid_nll": v} for t, v in ((100, 5.0), (200, 4.1), (300, 3.9), (400, 3.95), (500, 3.93))]
    assert tokens_to_reach(curve, 4.0) == 300 and tokens_to_reach(curve, 3.9) == 300
    assert tokens_to_reach(curve, 3.0) is None
    rule = overfit_rule({"a": curve})
    assert rule["per_family"]["a"]["rise"] == pytest.approx(0.05) and rule["dropout"] == 0.1
    flat = [{"tokens": 1, "valid_nll": 3.0}, {"tokens": 2, "valid_nll": 3.015}, {"tokens": 3, "valid_nll": 2.9}]
    rule = overfit_rule({"a": flat, "b": curve[:3]})
    assert rule["per_family"]["a"]["rise"] == pytest.approx(0.015) and rule["dropout"] == 0.0


def _current_folder(fam: str) -> Path:
    import csv

    rows = {r["model"]: r for r in csv.DictReader((COMMITTED / "leaderboard.csv").open())}
    return COMMITTED / "runs" / f"{fam}-{rows[fam]['config_hash']}"


@pytest.fixture(scope="module")
def two_lengths(tmp_path_factory) -> Path:
    """The committed 100M Transformer and Lite rows twice: as the short length and as a stand-in for x4."""
    root = tmp_path_factory.mktemp("results")
    for name in ("100M", "100M-x4"):
        for fam in ("transformer", "lite_transformer"):
            shutil.copytree(_current_folder(fam), root / name / "runs" / _current_folder(fam).name)
    return root


@pytest.fixture(scope="module")
def data(two_lengths: Path) -> dict:
    return collect(length_folders(two_lengths / "100M"))


def test_the_length_table_against_the_records_by_hand(two_lengths: Path, data: dict):
    assert [f for f, _ in length_folders(two_lengths / "100M")] == [1, 4]
    text = render(data)
    for fam in ("transformer", "lite_transformer"):
        folder = _current_folder(fam)
        evals = [json.loads((folder / f"eval-s{s}.json").read_text()) for s in (1, 2, 3)]
        nll = np.mean([json.loads((folder / f"train-s{s}.json").read_text())["valid_nll"] for s in (1, 2, 3)])
        bleu = np.mean([e["test"]["bleu"] for e in evals])
        got = data["lengths"][0]["families"][fam]
        assert np.mean(list(got["nll"].values())) == pytest.approx(nll)
        assert np.mean(list(got["test"].values())) == pytest.approx(bleu)
        assert f"{nll:.3f}" in text and f"{bleu:.2f}" in text
        # the per-sentence sums give the same corpus NLL (the gap's bootstrap resamples them)
        per = [np.sum(e["valid_sentence_nll"]) / np.sum(e["valid_sentence_tokens"]) for e in evals]
        assert np.mean(per) == pytest.approx(nll, abs=1e-3)
    gap = data["lengths"][0]["pairs"][("lite_transformer", "transformer")]["valid_nll"]
    lite, tr = (np.mean(list(data["lengths"][0]["families"][f]["nll"].values()))
                for f in ("lite_transformer", "transformer"))
    assert gap["diff"] == pytest.approx(lite - tr, abs=1e-3) and gap["ci95"][0] < gap["diff"] < gap["ci95"][1]
    assert f"Lite Transformer minus Transformer: {gap['diff']:+.3f} nats at 2M, {gap['diff']:+.3f} nats at 2M." in text
    assert "(the same order)" in text


def test_write_length_writes_the_table_and_both_figures(two_lengths: Path, data: dict, tmp_path: Path, monkeypatch):
    import bench.report.length as length

    monkeypatch.setattr(length, "collect", lambda folders, searched=(): data)  # the fixture's, not the bootstrap again
    out = tmp_path / "combined"
    written = write_length(two_lengths / "100M", out, "100M")
    assert sorted(p.name for p in written) == ["length.md", "length.pdf", "length.png"]
    assert (out / "length.png").stat().st_size > 10_000
    solo = tmp_path / "solo"
    shutil.copytree(two_lengths / "100M", solo / "100M")
    assert write_length(solo / "100M", solo / "combined") == []  # one length: nothing to compare


def test_the_16x_runs_take_the_dropout_the_4x_curves_decided_and_nothing_else_moves():
    budget = load_budget("100M")
    assert budget.schedule_shared == {"x16": {"dropout": 0.1}}
    assert budget.for_schedule("x16").shared == {**budget.shared, "dropout": 0.1}
    assert budget.for_schedule("x4") is budget and budget.for_schedule("short") is budget
    assert load_budget("100M", task="lm").schedule_shared == {}  # translation's subsection alone
    # the short and x4 run folders keep their hashes (committed records); x16's models carry dropout 0.1
    names = {s: Sweep(SweepOptions(budget="100M", schedule=s)).plan("transformer") for s in ("short", "x4", "x16")}
    assert names["short"].folder.name == "transformer-bd048021ee"
    assert names["x4"].folder.name == "transformer-c874e73fa8"
    assert names["x16"].solution.config.dropout == 0.1 and names["x4"].solution.config.dropout == 0.0
    assert names["x16"].solution.config.d_model == names["short"].solution.config.d_model  # the same shape
    # `bench train --budget 100M --schedule x16` trains the sweep's x16 config, not the short one's
    from bench.budget.resolve import resolve_model

    assert resolve_model("transformer", "mt", "100M", schedule="x16") == names["x16"].solution.config
    assert resolve_model("transformer", "mt", "100M").dropout == 0.0


def test_a_schedule_subsection_of_shared_is_checked(tmp_path):
    from bench.errors import BenchError

    text = (REPO / "budgets" / "100M.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("x16: {dropout: 0.1}", "x16: {dropot: 0.1}"))
    with pytest.raises(BenchError, match="dropot"):
        load_budget(bad)
    bad.write_text(text.replace("x16: {dropout: 0.1}", "x16: 0.1"))
    with pytest.raises(BenchError, match="<schedule>"):
        load_budget(bad)


def test_a_budget_files_own_keys_for_a_longer_schedule_layer_on_the_lengthened_recipe():
    from bench.train.schedules import file_keys

    train = {"short": {"max_tokens": 2_000_000, "warmup_steps": 500, "decay": "cosine", "min_lr": 0.0}}
    assert file_keys(train, "x4") == {**train["short"], "max_tokens": 8_000_000}
    assert file_keys({**train, "x4": {"lr": 2e-3}}, "x4") == {**train["short"], "max_tokens": 8_000_000, "lr": 2e-3}


def test_a_latency_budget_on_a_longer_schedule_keeps_its_tuned_from():
    chosen = json.loads((COMMITTED / "tuning" / "chosen.json").read_text())["chosen"]
    sweep = Sweep(SweepOptions(budget="5.4ms", schedule="x4"))
    assert sweep.tuned == {f: v["lr"] for f, v in chosen.items()}


def test_the_dropout_rule_skips_an_empty_curve():
    rule = overfit_rule({"a": [], "b": [{"tokens": 1, "valid_nll": 3.0}]})
    assert set(rule["per_family"]) == {"b"} and rule["dropout"] == 0.0


def test_a_length_with_no_trained_run_yet_is_left_out(two_lengths, tmp_path):
    """A longer schedule whose runs have only their profile (training still going) adds no row and no 'nan'."""
    base = tmp_path / "r"
    shutil.copytree(two_lengths, base)
    profile = next((base / "100M" / "runs").glob("transformer-*")) / "profile.json"
    x16 = base / "100M-x16" / "runs" / "transformer-0000000000"
    x16.mkdir(parents=True)
    shutil.copy(profile, x16 / "profile.json")
    before = [ln["folder"].name for ln in collect(length_folders(base / "100M"))["lengths"]]
    assert before == ["100M", "100M-x4"]


def test_summarizations_pilot_reports_rouge_and_the_lead_baseline(tmp_path):
    """The committed 100M-sum Lite and Transformer rows as the short length and as stand-ins for x4 and x10,
    with the committed lead-k record: ROUGE-L columns, the baseline's line and sentence, no dropout rule."""
    sum_dir = REPO / "results" / "100M-sum"
    import csv

    rows = {r["model"]: r for r in csv.DictReader((sum_dir / "leaderboard.csv").open())}
    root = tmp_path / "results"
    for name in ("100M-sum", "100M-sum-x4", "100M-sum-x10"):
        for fam in ("transformer", "lite_transformer"):
            folder = sum_dir / "runs" / f"{fam}-{rows[fam]['config_hash']}"
            shutil.copytree(folder, root / name / "runs" / folder.name)
    shutil.copytree(sum_dir / "baselines", root / "100M-sum" / "baselines")
    assert [f for f, _ in length_folders(root / "100M-sum")] == [1, 4, 10]
    written = write_length(root / "100M-sum", root / "100M-sum", "100M")
    assert sorted(p.name for p in written) == ["length.md", "length.pdf", "length.png"]
    text = (root / "100M-sum" / "length.md").read_text()
    assert "at 4x and 10x the tokens" in text and "summarization" in text and "test ROUGE-L" in text
    assert "ΔROUGE-L" in text and "BLEU" not in text and "dropout" not in text
    lead = json.loads((sum_dir / "baselines" / "lead.json").read_text())["baselines"][0]["test"]["rougeL"]
    assert f"scores test ROUGE-L {lead:.2f}. No run is above it." in text
    lite = np.mean([json.loads(p.read_text())["test"]["rougeL"]
                    for p in (root / "100M-sum" / "runs").glob("lite_transformer-*/eval-s*.json")])
    assert f"{lite:.2f}" in text


def test_a_length_with_one_family_so_far_claims_no_order(two_lengths: Path, tmp_path):
    """A longer schedule where one family has trained (the others still running) gives no order, not "the same"."""
    root = tmp_path / "results"
    shutil.copytree(two_lengths, root)
    fam = _current_folder("transformer")
    shutil.copytree(fam, root / "100M-x16" / "runs" / fam.name)
    text = render(collect(length_folders(root / "100M")))
    line = next(x for x in text.splitlines() if x.startswith("- ") and "Transformer" in x and "(one family" in x)
    assert "(one family so far: no order yet)" in line and "same order" not in line


def test_a_length_that_shares_fewer_than_two_ranked_families_with_the_first_claims_no_order():
    from bench.report.length import _ranking_lines

    def fam(nll, status="ok"):
        return {"status": status, "nll": {1: nll}, "tokens": 2e6}

    short = {"families": {"transformer": fam(3.4), "lite_transformer": fam(6.9, "failed")}, "pairs": {}}
    longer = {"families": {"transformer": fam(3.0), "lite_transformer": fam(2.4)}, "pairs": {}}
    lines = _ranking_lines([short, longer])
    assert lines[-1].endswith("(fewer than two families ranked at both lengths: no order to compare)"), lines
    short["families"]["lite_transformer"] = fam(2.9)
    assert _ranking_lines([short, longer])[-1].endswith("(the same order)")


def test_the_table_names_the_dropout_where_lengths_differ_in_it(data: dict):
    """The committed short rows train without dropout; a length whose rows took another (the 16x rule) is named in
    the table's first sentence and the figure's title, and equal dropouts leave both as they were."""
    from bench.report.length import figure_title

    assert [ln["dropout"] for ln in data["lengths"]] == [[0.0], [0.0]]
    text = render(data)
    assert "The same models, data, recipe and peak rates at every length" in text and "except dropout" not in text
    title = figure_title(data["lengths"])
    assert title == "The short schedule's recipe at 1x and 4x its tokens (band: seed min to max)"
    longer = {**data, "lengths": [data["lengths"][0], {**data["lengths"][1], "dropout": [0.1]}]}
    text = render(longer)
    assert "the same recipe except dropout (1x (2M tokens): dropout 0; 4x (2M tokens): dropout 0.1; the rule" in text
    assert "data, recipe and peak rates" not in text
    title = figure_title(longer["lengths"])
    assert title.startswith("The short schedule's recipe at 1x and 4x its tokens; 4x: dropout 0.1 (")
    # a length whose records carry no dropout is not read as the same recipe; summarization has no rule to point to
    unknown = {**data, "task": "sum", "lengths": [data["lengths"][0], {**data["lengths"][1], "dropout": []}]}
    assert "4x (2M tokens): dropout not recorded): compare" in render(unknown)
    assert figure_title(unknown["lengths"]).endswith("4x: dropout not recorded (band: seed min to max)")
    three = [data["lengths"][0], {**data["lengths"][1], "factor": 4}, {**data["lengths"][1], "factor": 16}]
    assert figure_title(three).startswith("The short schedule's recipe at 1x, 4x and 16x its tokens (")


def test_the_sample_nll_cell_by_hand_on_a_curve_that_overfits():
    """Best and last differ on an overfitting curve: the cell is the mean of each seed's lowest point, the mean of
    the tokens it was reached at, then the mean of the last points."""
    from bench.report.length import _best_last

    c1 = [{"tokens": 1_000_000, "valid_nll": 3.0}, {"tokens": 2_000_000, "valid_nll": 2.5},
          {"tokens": 3_000_000, "valid_nll": 2.7}]
    c2 = [{"tokens": 1_000_000, "valid_nll": 2.9}, {"tokens": 2_000_000, "valid_nll": 2.8},
          {"tokens": 3_000_000, "valid_nll": 2.6}, {"tokens": 4_000_000, "valid_nll": 2.9}]
    # seed 1: best 2.5 at 2M, last 2.7; seed 2: best 2.6 at 3M, last 2.9
    assert _best_last({"curves": {1: c1, 2: c2}}) == "2.550 (2.5M) / 2.800"
    assert _best_last({"curves": {1: []}}) == "–"


def test_the_table_shows_each_rows_best_and_last_in_training_validation(data: dict):
    """The sample NLL column by hand from the committed curves: per seed the lowest point and its tokens, then
    the last point, averaged over seeds."""
    text = render(data)
    for fam in ("transformer", "lite_transformer"):
        folder = _current_folder(fam)
        curves = [[e for e in json.loads((folder / f"train-s{s}.json").read_text())["curve"]
                   if e.get("valid_nll") is not None and not e.get("final")] for s in (1, 2, 3)]
        best = [min(c, key=lambda e: e["valid_nll"]) for c in curves]
        last = np.mean([c[-1]["valid_nll"] for c in curves])
        at = np.mean([b["tokens"] for b in best]) / 1e6
        cell = f"{np.mean([b['valid_nll'] for b in best]):.3f} ({at:.1f}M) / {last:.3f}"
        assert cell in text, cell


def test_the_searched_shapes_across_lengths_against_the_records_by_hand(two_lengths: Path, tmp_path: Path):
    """The committed searched-shape rows (seeds 2-4) beside their paper-shape rows at two lengths: each row's
    figures from its own records, the gap to its paper shape from the same bootstrap as the leaderboard's, and
    nothing of it without the budget's searched variants."""
    from bench.cli.sweep import _searched_variants
    from bench.report.length import figure_title

    assert _searched_variants("100M", "mt") == ["evolved_transformer-searched", "lite_transformer-searched",
                                                "transformer-searched"]
    assert _searched_variants("no-such-budget", "mt") == []
    root = tmp_path / "results"
    shutil.copytree(two_lengths, root)
    (searched,) = (COMMITTED / "runs").glob("transformer-searched-*")
    for name in ("100M", "100M-x4"):
        shutil.copytree(searched, root / name / "runs" / searched.name)
    data = collect(length_folders(root / "100M"), ["transformer-searched"])
    text = render(data)
    trains = [json.loads((searched / f"train-s{s}.json").read_text()) for s in (2, 3, 4)]
    evals = [json.loads((searched / f"eval-s{s}.json").read_text()) for s in (2, 3, 4)]
    nll, bleu = np.mean([t["valid_nll"] for t in trains]), np.mean([e["test"]["bleu"] for e in evals])
    for ln in data["lengths"]:
        row = ln["searched"]["transformer"]
        assert sorted(row["nll"]) == [2, 3, 4] and row["model"] == trains[0]["model"]
        assert np.mean(list(row["nll"].values())) == pytest.approx(nll)
        assert np.mean(list(row["test"].values())) == pytest.approx(bleu)
        gap = ln["searched_pairs"][(row["model"], "transformer")]["valid_nll"]
        paper = np.mean(list(ln["families"]["transformer"]["nll"].values()))
        assert gap["diff"] == pytest.approx(nll - paper, abs=1e-3) and gap["ci95"][0] < gap["diff"] < gap["ci95"][1]
    assert "## At the searched shapes" in text and "| 3 (2-4) |" in text and f"{nll:.3f} ± " in text
    assert f"- Transformer's searched shape minus its paper shape: {gap['diff']:+.3f} nats at 2M, " in text
    assert "| Transformer (paper shape) |" in text
    assert "dashed: searched shapes" in figure_title(data["lengths"])
    plain = collect(length_folders(root / "100M"))
    assert "searched shape" not in render(plain) and "dashed" not in figure_title(plain["lengths"])
