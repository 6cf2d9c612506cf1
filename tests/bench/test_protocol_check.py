"""The "One protocol" section of leaderboard.md (bench.report.protocol): on synthetic records, agreement and each
kind of difference named; on the committed 100M results, one protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report.leaderboard import build_leaderboard
from bench.report.render import render_markdown
from tests.bench.test_report import make_results


def _recipe(folder: Path, change: dict | None = None, lr: dict | None = None) -> None:
    """Give every train record the recipe keys a real one carries; ``change`` per model, ``lr`` per model."""
    for path in sorted(folder.glob("runs/*/train-s*.json")):
        rec = json.loads(path.read_text())
        rec["config"].update(normalize_before=True, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0)
        rec["schedule_config"] = {"name": "short", "max_tokens": 2_000_000, "batch_tokens": 1024, "warmup_steps": 500,
                                  "decay": "cosine", "precision": "bf16", "betas": [0.9, 0.98],
                                  "lr": (lr or {}).get(rec["model"], 4e-3)}
        rec["corpus"] = "toy"
        for key, value in ((change or {}).get(rec["model"]) or {}).items():
            (rec["config"] if key in rec["config"] or key.endswith("dropout") else rec["schedule_config"])[key] = value
        path.write_text(json.dumps(rec))


def test_one_protocol_when_the_records_agree_and_each_difference_named_when_not(tmp_path):
    folder = make_results(tmp_path, "100M")
    _recipe(folder, lr={"transformer": 2e-3})
    (folder / "tuning").mkdir()
    (folder / "tuning" / "chosen.json").write_text(json.dumps(
        {"grid": [2e-3, 4e-3], "tokens_per_trial": 1000, "trial_kind": "truncated", "recipe_tokens": 2_000_000,
         "chosen": {"transformer": {"lr": 2e-3, "valid_nll": 5.0},
                    "lite_transformer": {"lr": 4e-3, "valid_nll": 4.0}}}))
    check = build_leaderboard(folder).attrs["protocol"]
    assert check["one"] and check["families"] == ["lite_transformer", "transformer"]
    assert check["agree"]["max_tokens"] == 2_000_000 and check["agree"]["normalize_before"] is True
    assert check["agree"]["betas"] == (0.9, 0.98) and "lr" not in check["agree"]
    assert check["seeds"] == {"lite_transformer": [1, 2], "transformer": [1, 2]}
    md = render_markdown(build_leaderboard(folder))
    assert "**One protocol**" in md and "max_tokens 2,000,000" in md and "seeds 1, 2 for every family" in md
    assert "Lite Transformer 0.004; Transformer 0.002 (as tuning/chosen.json chose)" in md
    # fewer tokens and post-norm for one family, a rate its tuning did not choose, a seed missing: each named
    _recipe(folder, change={"transformer": {"max_tokens": 1_500_000, "normalize_before": False}},
            lr={"transformer": 4e-3})
    (folder / "runs" / "lite_transformer-c0ffee" / "train-s2.json").unlink()
    check = build_leaderboard(folder).attrs["protocol"]
    assert not check["one"]
    assert check["differ"]["max_tokens"] == {"lite_transformer": ["2,000,000"], "transformer": ["1,500,000"]}
    assert check["differ"]["normalize_before"] == {"lite_transformer": ["true"], "transformer": ["false"]}
    assert check["differ"]["seeds"] == {"lite_transformer": ["1"], "transformer": ["1, 2"]}
    assert check["differ"]["peak lr against tuning/chosen.json"] == {"transformer": ["0.004 (chose 0.002)"]}
    md = render_markdown(build_leaderboard(folder))
    assert "**Not one protocol**" in md and "- max_tokens: Lite Transformer 2,000,000; Transformer 1,500,000" in md


def test_the_committed_100m_results_hold_one_protocol():
    """The committed translation results at 100M: every family's primary rows under one recipe, three seeds
    each, each at the peak rate its tuning chose."""
    folder = Path(__file__).resolve().parents[2] / "results" / "100M"
    check = build_leaderboard(folder).attrs["protocol"]
    assert check["one"], check["differ"]
    assert check["families"] == ["evolved_transformer", "lite_transformer", "transformer"]
    assert all(s == [1, 2, 3] for s in check["seeds"].values())
    assert check["agree"]["normalize_before"] is True and check["agree"]["max_tokens"] == 2_000_000
    assert check["agree"]["decay"] == "cosine" and check["agree"]["min_lr"] == 0.0
    assert check["lr"] == {f: [check["chosen"][f]] for f in check["families"]}


def test_the_committed_tuning_records_give_every_family_the_same_trials():
    """Every committed tuning (each budget and task, and the superseded runs' tuning, e.g. 500M translation with
    dropout 0.1, whose re-run tunes again): chosen.json's trials exist, and every family has the same rates, trial
    count, tokens per trial and kind of trial; the chosen rate is that family's lowest final validation NLL."""
    root = Path(__file__).resolve().parents[2] / "results"
    found = sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("tuning/chosen.json"))
    assert {"100M/tuning", "500M/superseded/dropout-0.1/tuning", "100M-lm/tuning"} <= set(found), found
    for name in found:
        folder = root / name
        chosen = json.loads((folder / "chosen.json").read_text())
        trials = [json.loads((folder / name).read_text()) for name in chosen["trials"]]
        plan = {f: sorted((t["lr"], t["tokens_per_trial"], t["trial_kind"]) for t in trials if t["family"] == f)
                for f in chosen["chosen"]}
        assert len(plan) == 3 and len({tuple(p) for p in plan.values()}) == 1, plan
        assert [r for r, _, _ in next(iter(plan.values()))] == chosen["grid"]
        assert all(t["trial_kind"] == chosen["trial_kind"] and t["tokens_per_trial"] == chosen["tokens_per_trial"]
                   for t in trials)
        assert chosen["cost_in_seeds"] == pytest.approx(
            len(chosen["grid"]) * chosen["tokens_per_trial"] / chosen["recipe_tokens"], abs=1e-3)
        for fam, pick in chosen["chosen"].items():
            best = min((t for t in trials if t["family"] == fam), key=lambda t: t["valid_nll"])
            assert pick["lr"] == best["lr"] and pick["valid_nll"] == best["valid_nll"]


def test_rates_knobs_and_tuning_the_protocol_check_must_not_miss(tmp_path):
    folder = make_results(tmp_path, "100M")
    _recipe(folder, change={"lite_transformer": {"weight_dropout": 0.0}})
    md = render_markdown(build_leaderboard(folder))
    # a knob one family lacks is named as that family's, not claimed for every family
    assert "weight_dropout 0 (Lite Transformer only)" in md and "**One protocol**" in md
    # seeds of one family at two rates are not one row, with or without a tuning file
    path = folder / "runs" / "transformer-c0ffee" / "train-s2.json"
    rec = json.loads(path.read_text())
    rec["schedule_config"]["lr"] = 1e-3
    path.write_text(json.dumps(rec))
    check = build_leaderboard(folder).attrs["protocol"]
    assert not check["one"] and check["differ"]["peak lr within a family"] == {"transformer": ["0.001, 0.004"]}
    _recipe(folder)
    # a family its tuning left out, and a tuning made for another token budget
    (folder / "tuning").mkdir()
    (folder / "tuning" / "chosen.json").write_text(json.dumps(
        {"grid": [4e-3], "tokens_per_trial": 1000, "trial_kind": "truncated", "recipe_tokens": 1_500_000,
         "chosen": {"lite_transformer": {"lr": 4e-3, "valid_nll": 4.0}}}))
    check = build_leaderboard(folder).attrs["protocol"]
    assert check["differ"]["peak lr against tuning/chosen.json"] == {"transformer": ["0.004 (not tuned)"]}
    assert check["differ"]["tuning's recipe"] == {
        "tuning/chosen.json": ["tuned for 1,500,000 target tokens, the runs trained 2,000,000"]}
    assert "(as tuning/chosen.json chose)" not in render_markdown(build_leaderboard(folder))
    # one family with train records: nothing to compare, and not called one protocol
    for path in (folder / "runs" / "transformer-c0ffee").glob("train-s*.json"):
        path.unlink()
    check = build_leaderboard(folder).attrs["protocol"]
    assert check["families"] == ["lite_transformer"] and not check["one"]
    assert ("Only Lite Transformer has train records in the configuration the table reports: nothing to compare."
            in render_markdown(build_leaderboard(folder)))


def test_the_decoding_each_evaluation_used_is_checked_and_shown(tmp_path):
    folder = make_results(tmp_path, "100M")
    _recipe(folder)
    df = build_leaderboard(folder)
    assert df.attrs["protocol"]["one"] and df.attrs["protocol"]["agree"]["evaluated_length_penalty"] == 1.0
    assert "beam 4, length penalty 1 (" in render_markdown(df)
    # one seed re-evaluated with another length penalty: the check names it, the note shows both values
    path = folder / "runs" / "transformer-c0ffee" / "eval-s2.json"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "length_penalty": 0.6}))
    df = build_leaderboard(folder)
    check = df.attrs["protocol"]
    assert not check["one"] and check["differ"]["evaluated_length_penalty"] == {
        "lite_transformer": ["1"], "transformer": ["0.6", "1"]}
    assert "beam 4, length penalty 1, 0.6 (" in render_markdown(df)


def test_a_language_models_rows_say_how_much_of_the_test_split_was_scored(tmp_path):
    df = build_leaderboard(make_results(tmp_path, "100M-lm", task="lm"))
    assert set(df.loc[df["ppl"].notna() & (df["compression"] == "none"), "test_tokens"]) == {92_672}
    assert "Perplexity per token on the test split (92,672 tokens scored;" in render_markdown(df)
