"""Failed-run rule and pairwise significance, against hand cases and sacreBLEU's own paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from sacrebleu.significance import PairedTest

from bench.evaluation.evaluate import bleu_sentence_stats
from bench.report.quality import (
    failed_reason,
    paired_bleu,
    paired_nll,
    paired_rouge,
    pairwise_note,
    pairwise_table,
    render_pairwise,
    row_status,
)

REFS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Open the file menu and choose Save As.",
    "The table shows the results for every model.",
    "Click OK to close the dialog box.",
    "This option changes the default settings.",
    "Select the cells that you want to format.",
    "The document was saved in another format.",
]
HYP_A = [
    "The cat sat on the mat.",
    "A fast brown fox jumps over the lazy dog.",
    "Open the file menu and choose Save As.",
    "The table shows results for each model.",
    "Click OK to close the dialog.",
    "This option changes default settings.",
    "Select cells you want to format.",
    "The document was saved in other format.",
]
HYP_B = [
    "A cat is on a mat.",
    "The brown fox jumped over a dog.",
    "Open the menu and save.",
    "The table has results.",
    "Press OK to close.",
    "The option changes settings.",
    "Choose the cells to format.",
    "The file was saved.",
]


# ------------------------------------------------------------------------------------------- failed runs
def test_failed_rule_on_synthetic_curves():
    assert failed_reason(3.2, 3.15, 6.5) is None
    assert "unigram entropy" in failed_reason(6.9, 6.8, 6.5)  # the plateau
    assert "above its best" in failed_reason(4.0, 3.8, 6.5)  # diverged late: 0.2 nats above its best
    assert failed_reason(3.85, 3.8, 6.5) is None  # within 0.1
    assert "no finite" in failed_reason(float("nan"), 3.0, 6.5)
    # drift is judged on the in-training sample where the record has it: a whole split 0.2 above the sample's
    # best is the sample's offset when the sample itself ended 0.05 above it...
    assert failed_reason(3.2, 3.0, 6.5, final_sample=3.05) is None
    # ...and a collapse when the sample ended 0.15 above it
    assert "on the in-training sample 3.15" in failed_reason(3.1, 3.0, 6.5, final_sample=3.15)
    # the plateau is always the whole split's
    assert "unigram entropy" in failed_reason(6.6, 6.55, 6.5, final_sample=6.4)
    # just under the plateau is not having trained either: 0.07 below it (a post-norm run at BLEU 0.1) fails,
    # 0.15 below it does not
    assert "less than 0.1 below the unigram entropy 6.79" in failed_reason(6.72, 6.67, 6.79)
    assert failed_reason(6.64, 6.60, 6.79) is None


def _train(seed, final, best=None, plateau=6.5, curve=None):
    return {"stage": "train", "seed": seed, "valid_nll": final, "best_valid_nll": best, "unigram_entropy": plateau,
            "curve": curve}


def test_row_status_names_the_failed_seed_and_uses_the_whole_split_figure():
    train = pd.DataFrame([_train(1, 3.0, 2.95), _train(2, 3.1, 3.0)])
    assert row_status(train) == ("ok", None)
    # seed 2's eval (whole validation split) is what counts, and it is 0.2 above its best
    evals = pd.DataFrame([{"seed": 1, "valid_nll": 3.0}, {"seed": 2, "valid_nll": 3.2}])
    status, why = row_status(train, evals)
    assert status == "failed" and why.startswith("seed 2:") and "seed 1" not in why
    # an older record without best_valid_nll / unigram_entropy: its curve still tells
    old = pd.DataFrame([_train(1, 7.6, None, None, curve=[{"valid_nll": 6.83}, {"valid_nll": 7.1}, {"final": True,
                                                                                                 "valid_nll": 7.6}])])
    assert row_status(old)[0] == "failed" and "6.83" in row_status(old)[1]


def test_row_status_judges_drift_on_the_in_training_sample():
    rec = _train(1, 3.0, 2.9)
    rec["final_sample_valid_nll"] = 2.95  # the eval's whole split is 0.2 above the sample's best; the sample 0.05
    evals = pd.DataFrame([{"seed": 1, "valid_nll": 3.1}])
    assert row_status(pd.DataFrame([rec]), evals) == ("ok", None)
    rec["final_sample_valid_nll"] = 3.05
    status, why = row_status(pd.DataFrame([rec]), evals)
    assert status == "failed" and "3.05" in why and "2.90" in why


# ---------------------------------------------------------------------------------------------- BLEU
def test_one_seed_paired_bleu_is_sacrebleus_paired_bootstrap():
    test = PairedTest([("b", HYP_B), ("a", HYP_A)], {"BLEU": sacrebleu.BLEU()}, [REFS], test_type="bs",
                      n_samples=1000)
    _, scores = test()
    theirs = scores["BLEU"][1]
    ours = paired_bleu([np.array(bleu_sentence_stats(HYP_A, REFS))], [np.array(bleu_sentence_stats(HYP_B, REFS))])
    bl_a, bl_b = (sacrebleu.corpus_bleu(h, [REFS]).score for h in (HYP_A, HYP_B))
    assert ours["diff"] == pytest.approx(bl_a - bl_b)
    assert ours["p_value"] == pytest.approx(theirs.p_value)
    assert ours["ci95"][0] < ours["diff"] < ours["ci95"][1]
    # A is better on almost every sentence: the interval excludes 0
    assert ours["ci95"][0] > 0 and ours["p_value"] < 0.05


def test_shuffled_hypotheses_score_lower_and_identical_systems_do_not_differ():
    shuffled = HYP_A[1:] + HYP_A[:1]
    stats = np.array(bleu_sentence_stats(HYP_A, REFS))
    worse = np.array(bleu_sentence_stats(shuffled, REFS))
    res = paired_bleu([stats], [worse])
    assert res["diff"] > 20 and res["ci95"][0] > 0
    same = paired_bleu([stats], [stats])
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]


def test_seed_level_widens_the_interval():
    a1 = np.array(bleu_sentence_stats(HYP_A, REFS))
    a2 = np.array(bleu_sentence_stats(HYP_B, REFS))  # a second "seed" of A that is much worse
    b = np.array(bleu_sentence_stats(HYP_B, REFS))
    one = paired_bleu([a1], [b])
    two = paired_bleu([a1, a2], [b])
    assert two["diff"] == pytest.approx(one["diff"] / 2)
    assert two["ci95"][1] - two["ci95"][0] > one["ci95"][1] - one["ci95"][0]


# ----------------------------------------------------------------------------------------------- NLL
def test_paired_nll_by_hand():
    nll_a, tok = [[2.0, 4.0, 6.0, 8.0]], [[1, 2, 3, 4]]  # 2 nats per token on every sentence
    nll_b = [[3.0, 6.0, 9.0, 12.0]]  # 3 nats per token
    res = paired_nll(nll_a, tok, nll_b, tok)
    assert res["diff"] == pytest.approx(-1.0) and res["ci95"] == pytest.approx([-1.0, -1.0])
    # seed means: A's two seeds average 2.5 per token
    two = paired_nll([nll_a[0], nll_b[0]], tok * 2, nll_b, tok)
    assert two["diff"] == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        paired_nll(nll_a, [[1, 2, 3]], nll_b, tok)


def test_pairwise_table_from_records():
    stats_a, stats_b = bleu_sentence_stats(HYP_A, REFS), bleu_sentence_stats(HYP_B, REFS)
    recs = pd.DataFrame(
        [
            {"stage": "eval", "model": m, "seed": s, "test.bleu_stats": st, "valid_sentence_nll": [1.0 * k, 2.0],
             "valid_sentence_tokens": [1, 1]}
            for m, st, k in (("a", stats_a, 1), ("b", stats_b, 3))
            for s in (1, 2)
        ]
        + [{"stage": "train", "model": "a", "seed": 1}]
    )
    (row,) = pairwise_table(recs)
    assert (row["a"], row["b"], row["seeds_a"], row["seeds_b"]) == ("a", "b", 2, 2)
    assert row["bleu"]["diff"] > 0 and row["valid_nll"]["diff"] == pytest.approx(-1.0)
    lines = render_pairwise([row])
    assert len(lines) == 3 and lines[2].startswith("| a | b | 2/2 | -1.000 |")  # NLL first, then BLEU


def test_paired_rouge_by_hand_and_the_tables_test_column_follows_the_task():
    # per summary [R1, R2, RL] F1: A's ROUGE-L is 0.5 on every summary, B's 0.3 -> +20 points, no spread
    a = [[[0.6, 0.4, 0.5]] * 4]
    b = [[[0.4, 0.2, 0.3]] * 4]
    res = paired_rouge(a, b)
    assert res["diff"] == pytest.approx(20.0) and res["ci95"] == pytest.approx([20.0, 20.0])
    # the mean over summaries, then over seeds: a second seed of A at RL 0.1 gives (50 + 10) / 2 - 30 = 0
    assert paired_rouge([a[0], [[0.0, 0.0, 0.1]] * 4], b)["diff"] == pytest.approx(0.0)
    recs = pd.DataFrame(
        [{"stage": "eval", "model": m, "seed": 1, "test.rouge_sentences": r, "valid_sentence_nll": [1.0, k],
          "valid_sentence_tokens": [1, 1]} for m, r, k in (("a", a[0], 2.0), ("b", b[0], 4.0))]
    )
    (row,) = pairwise_table(recs)
    assert "bleu" not in row and row["rouge_l"]["diff"] == pytest.approx(20.0)
    assert row["valid_nll"]["diff"] == pytest.approx(-1.0)
    lines = render_pairwise([row])
    assert "ΔROUGE-L" in lines[0] and "BLEU" not in lines[0] and lines[2].startswith("| a | b | 1/1 | -1.000 |")
    assert lines[0].index("Δvalid NLL") < lines[0].index("ΔROUGE-L") and "| +20.00 |" in lines[2]  # NLL first
    assert "ROUGE-L F1" in pairwise_note([row]) and "BLEU" not in pairwise_note([row])
    # a language model: validation NLL only, and the header and note say no test metric
    lm = pairwise_table(recs.drop(columns="test.rouge_sentences"))
    lines = render_pairwise(lm)
    assert lines[0] == "| A | B | seeds A/B | Δvalid NLL (A−B) | 95% interval | p |"
    assert lines[1].count("|") == lines[0].count("|") and lines[2].startswith("| a | b | 1/1 | -1.000 |")
    assert "no test column" in pairwise_note(lm) and "BLEU" not in pairwise_note(lm)


def test_learning_curve_band_by_hand():
    from bench.report.curves import curve_band

    a = [{"tokens": 0, "valid_nll": 8.0}, {"tokens": 100, "valid_nll": 4.0}, {"tokens": 50, "valid_nll": None}]
    b = [{"tokens": 10, "valid_nll": 7.0}, {"tokens": 110, "valid_nll": 5.0}]
    grid, mean, low, high = curve_band([a, b], "tokens")
    assert grid[0] == 10 and grid[-1] == 100  # the span every seed covers
    # at x=10: a is 7.6 (interpolated), b is 7.0; at x=100: a 4.0, b 5.2
    assert mean[0] == pytest.approx(7.3) and (low[0], high[0]) == pytest.approx((7.0, 7.6))
    assert mean[-1] == pytest.approx(4.6) and (low[-1], high[-1]) == pytest.approx((4.0, 5.2))
    assert curve_band([[{"tokens": 0, "valid_nll": 1.0}]], "tokens") is None


def _curve(valid: list[float], train: list[float]) -> list[dict]:
    """A curve logged every 20 steps (training loss) with validation every 200, as the recipe logs."""
    out = []
    for i, loss in enumerate(train, 1):
        e = {"step": 20 * i, "train_loss": loss, "valid_nll": None}
        if (20 * i) % 200 == 0 and (20 * i) // 200 <= len(valid):
            e["valid_nll"] = valid[(20 * i) // 200 - 1]
        out.append(e)
    return out


def test_a_late_rise_with_falling_training_loss_is_overfitting_not_a_failure():
    import pandas as pd

    from bench.report.quality import overfit

    valid = [5.0, 4.0, 3.5, 3.2, 3.0, 2.9, 2.95, 3.0, 3.05, 3.1]  # best 2.9 at step 1200, ends 0.2 above it
    falling = list(np.linspace(5.0, 2.8, 60)) + list(np.linspace(2.8, 2.3, 40))  # kept fitting the data
    rising = list(np.linspace(5.0, 2.8, 60)) + list(np.linspace(2.8, 3.6, 40))  # diverging: training loss up
    assert overfit(_curve(valid, falling)) == pytest.approx((np.mean(falling[35:60]), np.mean(falling[-25:])))
    assert overfit(_curve(valid, rising)) is None
    assert overfit(_curve(valid, falling[:30])) is None  # too short to say
    base = {"seed": 1, "valid_nll": 3.1, "best_valid_nll": 2.9, "final_sample_valid_nll": 3.1,
            "unigram_entropy": 6.8}
    status, why = row_status(pd.DataFrame([{**base, "curve": _curve(valid, falling)}]))
    assert status == "ok" and why.startswith("seed 1: overfit, not failed") and "3.10 is more than 0.1" in why
    status, why = row_status(pd.DataFrame([{**base, "curve": _curve(valid, rising)}]))
    assert status == "failed" and "above its best" in why and "overfit" not in why
    # a plateau failure stays a failure whatever the training loss did
    status, _ = row_status(pd.DataFrame([{**base, "valid_nll": 6.75, "curve": _curve(valid, falling)}]))
    assert status == "failed"


def test_a_collapse_after_the_best_is_not_overfitting_even_below_the_steep_part_before_it():
    from bench.report.quality import overfit

    valid = [5.0, 4.0, 3.5, 3.2, 3.0, 2.9, 3.0, 3.1, 3.2, 3.3]
    # steep fall to the best (mean of its window ~3.7), then the loss rises from 2.5 to 3.0: ends under 3.6
    collapse = list(np.linspace(5.0, 2.5, 60)) + list(np.linspace(2.5, 3.0, 40))
    assert np.mean(collapse[-25:]) < np.mean(collapse[35:60]) - 0.1  # what the first test alone would take
    assert overfit(_curve(valid, collapse)) is None


def test_the_rows_of_one_variant_are_compared_across_families_as_the_primary_rows_are():
    from bench.report.quality import default_pairs

    rows = [("transformer", "transformer", None), ("lite_transformer", "lite_transformer", None),
            ("transformer (searched shape, L3x3-h8-f4)", "transformer", "transformer-searched"),
            ("lite_transformer (searched shape, L3x3-h4-f1)", "lite_transformer", "lite_transformer-searched"),
            ("transformer (post-norm, paper)", "transformer", "transformer-postnorm")]
    df = pd.DataFrame({"model": [r[0] for r in rows], "family": [r[1] for r in rows], "compression": "none",
                       "status": "ok"})
    records = pd.DataFrame({"model": [r[0] for r in rows], "family": [r[1] for r in rows],
                            "variant": [r[2] for r in rows]})
    pairs = default_pairs(df, records)
    assert pairs[0] == ("lite_transformer", "transformer")
    assert ("transformer (searched shape, L3x3-h8-f4)", "transformer") in pairs  # each against its family
    # the searched shapes against each other (the family order of the primary pair); post-norm has one family only
    assert pairs[-1] == ("lite_transformer (searched shape, L3x3-h4-f1)", "transformer (searched shape, L3x3-h8-f4)")
    assert len(pairs) == 1 + 3 + 1
    assert default_pairs(df) == pairs[:-1]  # without records: families and variants against their family
    df.loc[3, "status"] = "failed"
    assert default_pairs(df, records) == pairs[:-1]  # a failed row is compared with no other variant row
