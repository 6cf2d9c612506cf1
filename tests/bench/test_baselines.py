"""The floors the models must clear (bench.evaluation.baselines, ``python -m bench baseline``) and how the report
shows them: lead-k against rouge-score called directly, k chosen on validation, copy-source BLEU against
sacreBLEU, baseline rows that are never models, and a report without baselines that is exactly what it was."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from bench.cli import main
from bench.evaluation.baselines import (
    choose_k,
    copy_source_bleu,
    corpus_folder,
    lead_baseline,
    lead_curve,
    lead_words,
    median_k,
    unigram_plateau,
)
from bench.evaluation.rouge import rouge
from bench.report.baselines import LEAD_COLUMNS, models_only
from bench.report.figures import write_figures
from bench.report.leaderboard import build_leaderboard
from bench.report.quality import paired_rouge
from bench.report.render import render_csv, render_latex, render_markdown
from tests.bench.test_report import make_results
from tests.toy_corpus import WORDS, write_corpus

PAIRS = [  # (description, synopsis): a few by hand, stemming and punctuation included
    ("The quick brown foxes are jumping over lazy dogs in the garden.", "quick brown fox jumps"),
    ("Python bindings for the GNU Scientific Library, a numerical library for C.", "GNU Scientific Library bindings"),
    ("Utilities, helpers and tools: running the tests of running programs", "tools for running tests"),
    ("One", "two words"),
]


def _direct(hyp: str, ref: str) -> list[float]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    s = scorer.score(ref, hyp)
    return [s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure]


# ------------------------------------------------------------------------------------------------ lead-k
def test_lead_words_are_the_first_k_whitespace_words() -> None:
    assert lead_words("  a  b\tc\nd e ", 3) == "a b c"
    assert lead_words("a b", 5) == "a b"
    with pytest.raises(ValueError):
        lead_words("a b", 0)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_lead_k_scores_are_rouge_score_called_directly(k: int) -> None:
    hyps = [" ".join(src.split()[:k]) for src, _ in PAIRS]
    refs = [ref for _, ref in PAIRS]
    direct = [_direct(h, r) for h, r in zip(hyps, refs)]
    ours = rouge([lead_words(src, k) for src, _ in PAIRS], refs)
    for i, t in enumerate(("rouge1", "rouge2", "rougeL")):
        assert ours[t] == pytest.approx(100 * np.mean([d[i] for d in direct]), abs=1e-4)
    curve = lead_curve([src for src, _ in PAIRS], refs, ks=[k])
    assert curve[k] == pytest.approx(100 * np.mean([d[2] for d in direct]), abs=1e-9)


def test_k_is_chosen_on_validation_ties_to_the_smaller_and_the_median_rounds_half_up() -> None:
    # every synopsis is the description's first 4 words (of 12 distinct ones): lead-4 scores F1 = 1 exactly
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.permutation(WORDS)[:12]) for _ in range(15)]
    curve = lead_curve(docs, [" ".join(d.split()[:4]) for d in docs])
    assert choose_k(curve) == 4 and curve[4] == pytest.approx(100.0)
    assert all(v < 100.0 for k, v in curve.items() if k != 4)
    assert choose_k({1: 5.0, 2: 7.0, 3: 7.0, 4: 6.0}) == 2  # a tie: the smaller k
    assert median_k(["a b c", "a b c d", "a b c d e f g"]) == (4, 4.0)
    assert median_k(["a b c", "a b c d", "a", "a b c d e f"]) == (4, 3.5)  # half up, not to even
    assert median_k(["a b", "a b c"]) == (3, 2.5)


def write_sum_corpus(root: Path, valid_k: int = 4, test_k: int = 7, seed: int = 0) -> Path:
    """Descriptions of 14 distinct toy words; validation synopses are their first ``valid_k`` words, test ones
    their first ``test_k`` (so a k chosen on test would differ), train ones 3 to 5 words (median 4)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for split, n, k in (("train", 9, None), ("valid", 10, valid_k), ("test", 8, test_k)):
        docs = [list(rng.permutation(WORDS)[:14]) for _ in range(n)]
        sums = [d[: k or (3 + i % 3)] for i, d in enumerate(docs)]
        sums[1] = sums[1][:-1] + ["zebra"]  # not every synopsis is a plain prefix
        (root / f"{split}.src").write_text("".join(" ".join(d) + "\n" for d in docs))
        (root / f"{split}.tgt").write_text("".join(" ".join(s) + "\n" for s in sums))
        if split == "test":
            (root / "test-clean.src").write_text("".join(" ".join(d) + "\n" for d in docs[::2]))
            (root / "test-clean.tgt").write_text("".join(" ".join(s) + "\n" for s in sums[::2]))
    return root


def test_lead_baseline_of_a_corpus_folder(tmp_path: Path) -> None:
    folder = write_sum_corpus(tmp_path / "corpus")
    rec = lead_baseline(folder)
    assert rec["k_lead"] == 4 and rec["k_median"] == 4  # validation's k, not test's 7
    assert rec["valid_n"] == 10 and set(rec["valid_rougeL"]) == {str(k) for k in range(1, 31)}
    src = (folder / "test.src").read_text().splitlines()
    tgt = (folder / "test.tgt").read_text().splitlines()
    lead = rec["baselines"][0]
    assert lead["name"] == "lead-k" and lead["k"] == 4
    direct = [_direct(" ".join(s.split()[:4]), t) for s, t in zip(src, tgt)]
    assert lead["test"]["n"] == 8 and lead["test"]["rougeL"] == pytest.approx(100 * np.mean([d[2] for d in direct]),
                                                                              abs=1e-4)
    assert lead["test"]["rouge_sentences"] == [[round(v, 5) for v in d] for d in direct]
    assert lead["test_clean"]["n"] == 4
    assert lead["test_clean"]["rouge_settings"] == rec["rouge_settings"]
    assert rec["baselines"][1]["name"] == "lead-median" and rec["corpus_digest"].startswith("sha256:")


def test_copy_source_bleu_is_sacrebleu_on_the_source(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "mt")  # de -> en by the folder's convention
    rec = copy_source_bleu(folder)
    src = (folder / "test.de").read_text().splitlines()
    ref = (folder / "test.en").read_text().splitlines()
    bleu = sacrebleu.BLEU()
    assert rec["test"]["bleu"] == pytest.approx(bleu.corpus_score(src, [ref]).score, abs=1e-4)
    assert rec["test"]["bleu_signature"] == str(bleu.get_signature()) and rec["test_clean"]["n"] == 10
    assert (rec["src"], rec["tgt"]) == ("de", "en")


def test_unigram_plateau_from_train_records() -> None:
    rec = unigram_plateau([{"model": "a", "unigram_entropy": 6.0}, {"model": "b", "unigram_entropy": 6.2},
                           {"model": "b", "stage": "train"}])
    assert rec["unigram_entropy"] == pytest.approx(6.1) and rec["ppl"] == pytest.approx(math.exp(6.1), abs=1e-3)


# ------------------------------------------------------------------------------------------------ report
N = 6
ROUGE_L = {  # model -> per seed, per summary ROUGE-L F1 (R1, R2 made from it)
    "transformer": [[0.1, 0.2, 0.0, 0.5, 0.3, 0.4], [0.2, 0.2, 0.1, 0.4, 0.3, 0.3]],
    "lite_transformer": [[0.3, 0.2, 0.2, 0.5, 0.6, 0.4], [0.3, 0.4, 0.2, 0.6, 0.5, 0.4]],
}
LEAD = [0.5, 0.1, 0.3, 0.6, 0.2, 0.3]


def _sentences(rl: list[float]) -> list[list[float]]:
    return [[min(1.0, v + 0.1), v / 2, v] for v in rl]


def _scores(rows: list[list[float]]) -> dict:
    means = [100 * float(np.mean([r[i] for r in rows])) for i in range(3)]
    return {"rouge1": means[0], "rouge2": means[1], "rougeL": means[2], "n": len(rows),
            "rouge_settings": "rouge-score:test|x100"}


def make_sum_results(root: Path) -> Path:
    """test_report's synthetic folder turned summarization: ROUGE and per-summary scores in the eval records."""
    out = make_results(root, "100M-sum", task="sum")
    for model, seeds in ROUGE_L.items():
        for seed, rl in zip((1, 2), seeds):
            path = out / "runs" / f"{model}-c0ffee" / f"eval-s{seed}.json"
            rec = json.loads(path.read_text())
            rows = _sentences(rl)
            rec["test"] = {**_scores(rows), "rouge_sentences": rows}
            rec["test_clean"] = _scores(rows[::2])
            path.write_text(json.dumps(rec))
    return out


def write_lead(results: Path, k: int = 5) -> dict:
    rows = _sentences(LEAD)
    rec = {"kind": "lead", "task": "sum", "budget": "100M", "corpus": "toy", "selection": "rule A",
           "median_rule": "rule B", "k_lead": k, "k_median": 3, "rouge_settings": "rouge-score:test|x100",
           "baselines": [
               {"name": "lead-k", "k": k, "rule": "rule A", "test": {**_scores(rows), "rouge_sentences": rows},
                "test_clean": _scores(rows[::2])},
               {"name": "lead-median", "k": 3, "rule": "rule B", "test": _scores(rows[:3] * 2),
                "test_clean": _scores(rows[:3])}]}
    (results / "baselines").mkdir(parents=True, exist_ok=True)
    (results / "baselines" / "lead.json").write_text(json.dumps(rec))
    return rec


def _texts(results: Path) -> dict[str, str]:
    df = build_leaderboard(results)
    return {"csv": render_csv(df), "md": render_markdown(df), "tex": render_latex(df)}


def test_baseline_rows_pairs_and_sentence(tmp_path: Path) -> None:
    results = make_sum_results(tmp_path)
    write_lead(results)
    df = build_leaderboard(results)
    base = df[df["status"] == "baseline"]
    assert list(base["model"]) == ["lead-k (k=5)", "lead-median (k=3)"]
    assert set(base["family"]) == {"baseline"} and set(base["compression"]) == {"none"}
    lead = base.iloc[0]
    assert lead["rougeL_test"] == pytest.approx(100 * np.mean(LEAD))
    assert lead["rougeL_test_clean"] == pytest.approx(100 * np.mean(LEAD[::2]))
    for col in ("macs", "params", "forward_p50_ms_t1", "valid_nll", "n_eval"):
        assert lead[col] is None or (isinstance(lead[col], float) and math.isnan(lead[col])), col
    # the models' rows and statuses are those of the leaderboard without the baseline
    assert len(models_only(df)) == len(df) - 2 and set(models_only(df)["status"].dropna()) == {"ok"}
    pairs = [p for p in df.attrs["pairwise"] if p["b"] == "lead-k (k=5)"]
    assert [p["a"] for p in pairs] == ["lite_transformer", "transformer"]
    for p in pairs:
        seeds = ROUGE_L[p["a"]]
        want = 100 * (np.mean([np.mean(s) for s in seeds]) - np.mean(LEAD))
        assert p["rouge_l"]["diff"] == pytest.approx(want)
        assert p["rouge_l"] == paired_rouge([_sentences(s) for s in seeds], [_sentences(LEAD)])
        assert (p["seeds_a"], p["seeds_b"]) == (2, 1) and "valid_nll" not in p
        # the CSV carries the same difference, interval and p-value on the family's row, and nothing elsewhere
        row = df[(df["model"] == p["a"]) & (df["compression"] == "none")].iloc[0]
        assert [row[c] for c in LEAD_COLUMNS] == pytest.approx(
            [p["rouge_l"]["diff"], *p["rouge_l"]["ci95"], p["rouge_l"]["p_value"]])
    assert df[LEAD_COLUMNS[0]].notna().sum() == len(pairs)
    md = render_markdown(df)
    assert "| lead-k (k=5) |" in md and "| baseline |" in md and "rule A" in md and "rule B" in md
    assert "| Lite Transformer | lead-k (k=5) | 2/1 |" in md
    assert "never ranked" in md and "Failed runs" in md and "- none" in md  # a baseline is no failed run


def test_figures_draw_lead_k_as_a_line_never_a_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.report.figures as figures

    results = make_sum_results(tmp_path)
    write_lead(results)
    drawn = {}

    def keep(fig, stem):
        ax = fig.axes[0]
        drawn[stem.name] = ([line.get_label() for line in ax.get_lines()],
                            [t.get_text() for t in ax.texts])
        return []

    monkeypatch.setattr(figures, "save", keep)
    write_figures(results)
    labels, texts = drawn["quality_vs_macs"]
    assert "lead-k (k=5)" in labels and not any("lead" in t for t in texts)
    assert "lead-k (k=5)" in drawn["quality_vs_latency"][0]


def test_no_baselines_folder_is_todays_report(tmp_path: Path) -> None:
    results = make_sum_results(tmp_path)
    before = _texts(results)
    assert "baseline" not in before["md"] and "lead-k" not in before["csv"]
    write_lead(results)
    assert _texts(results) != before
    shutil.rmtree(results / "baselines")
    (results / "baselines").mkdir()  # an empty folder adds nothing either
    assert _texts(results) == before
    # a translation folder ignores a summarization record and reads its own
    mt = make_results(tmp_path / "mt")
    plain = _texts(mt)
    write_lead(mt)
    assert _texts(mt) == plain
    (mt / "baselines" / "copy.json").write_text(json.dumps(
        {"kind": "copy-source", "test": {"bleu": 3.21, "chrf": 20.0, "n": 500, "bleu_signature": "sig"},
         "test_clean": {"bleu": 2.5}}))
    md = _texts(mt)["md"]
    assert "copying the source sentence as its translation scores BLEU 3.21" in md and "2.50 on test-clean" in md
    assert md.replace(next(line for line in md.splitlines() if "copying the source" in line) + "\n", "") == plain["md"]


def test_the_language_model_floor_and_a_broken_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lm = make_results(tmp_path, "100M-lm", task="lm")
    plain = _texts(lm)
    (lm / "baselines").mkdir()
    (lm / "baselines" / "unigram.json").write_text(json.dumps({"kind": "unigram", "unigram_entropy": 6.5}))
    md = _texts(lm)["md"]
    assert f"6.500 nats per token (perplexity per token {math.exp(6.5):.1f}" in md
    assert _texts(lm)["csv"] == plain["csv"]  # a sentence, no row
    (lm / "baselines" / "unigram.json").write_text("{")
    assert main(["report", "--results", str(lm)]) == 2
    err = capsys.readouterr().err
    assert "unigram.json is not a baseline record" in err and err.count("\n") == 1


def test_committed_leaderboards_are_rebuilt_as_committed() -> None:
    root = Path(__file__).resolve().parents[2] / "results"
    for name in ("100M-sum", "100M-lm"):
        if (root / name / "baselines").exists():
            pytest.skip(f"{name} has baselines")
        assert render_markdown(build_leaderboard(root / name)) == (root / name / "leaderboard.md").read_text()


# ------------------------------------------------------------------------------------------------ command
def test_the_command_writes_the_record_the_report_reads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = write_sum_corpus(tmp_path / "corpus")
    results = make_sum_results(tmp_path / "results")
    assert main(["baseline", "--budget", "100M", "--task", "sum", "--corpus", str(corpus),
                 "--results", str(tmp_path / "results")]) == 0
    # make_results names its folder 100M-sum as results_dir_for("100M", "sum") does
    rec = json.loads((results / "baselines" / "lead.json").read_text())
    assert rec["k_lead"] == 4 and rec["budget"] == "100M" and rec["command"].startswith("python -m bench baseline")
    assert {"torch", "git_commit"} <= set(rec["env"]) and rec["created"]
    out = capsys.readouterr().out
    assert "lead-k (k=4)" in out and f"wrote {results / 'baselines' / 'lead.json'}" in out


@pytest.mark.parametrize("argv,says", [
    (["--task", "xx"], "invalid choice: 'xx'"),
    (["--task", "sum", "--corpus", "/no/such/corpus"], "is neither a folder nor built under"),
    (["--task", "sum", "--corpus", "debian-descriptions-missing"], "is neither a folder nor built under"),
    (["--task", "lm", "--corpus", "sotu"], "takes no --corpus"),
    (["--task", "lm"], "no train record carries a unigram entropy"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, argv, says) -> None:
    code = main(["baseline", "--budget", "100M", "--results", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("*.json"))


def test_a_corpus_name_is_found_in_the_cache_never_built(tmp_path: Path) -> None:
    built = write_sum_corpus(tmp_path / "cache" / "toy-sum")
    assert corpus_folder("toy-sum", cache_dir=tmp_path / "cache") == built
    assert corpus_folder(built) == built
