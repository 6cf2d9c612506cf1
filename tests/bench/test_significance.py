"""The paired bootstraps held where they can fail: systems close enough that the p-value lands between 0.01 and
0.9, each checked against sacreBLEU's own paired bootstrap (sacrebleu.significance) with the same seed (12345,
sacreBLEU's default) and the same number of resamples, so the two agree exactly, not within Monte-Carlo noise.

Fixtures whose systems differ on almost every sentence put every p-value at its floor, 1/(n+1): there, a p-value
formula with half its statistic, or a resampling that is not paired, still passes. Here it would not.

- ``bench.report.quality.paired_bleu`` (one seed per row) and ``bench.evaluation.evaluate.paired_bootstrap`` (the
  ``compare`` command, on run folders) against ``PairedTest(..., test_type="bs")`` on the same strings.
- ``paired_nll`` and ``paired_rouge`` against ``sacrebleu.significance._paired_bs_test`` driven by a metric
  whose per-sentence statistics are (sum, count) and whose score is sum / count (sacreBLEU's resampling and
  p-value, the metric ours: per-token NLL, or the mean ROUGE-L over summaries). Values are multiples of 1/8, so
  sacreBLEU's float32 sums are exact.
- The two-level bootstrap (several seeds) against the procedure written out by hand, p-value by sacreBLEU's
  ``_compute_p_value``.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sacrebleu
from sacrebleu.significance import PairedTest, Result, _compute_p_value, _paired_bs_test

import bench.evaluation.evaluate as E
from bench.evaluation.evaluate import bleu_sentence_stats
from bench.report.quality import SEED, paired_bleu, paired_nll, paired_rouge

N = 1000  # resamples: sacreBLEU's default for the paired bootstrap, and ours
WORDS = "der die das haus baum katze hund rot blau gross klein alt neu sieht rennt schnell langsam vogel singt auto"


@pytest.fixture(autouse=True)
def sacrebleu_default_seed(monkeypatch):
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # PairedTest reads it; ours is fixed at 12345
    assert SEED == 12345


def bleu_systems(seed: int, n: int = 40, noise_a: float = 0.30, noise_b: float = 0.34):
    """(references, A, B): A and B replace a similar share of reference words at random."""
    rng = random.Random(seed)
    words = WORDS.split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))) for _ in range(n)]

    def noisy(p: float) -> list[str]:
        return [" ".join(w if rng.random() > p else rng.choice(words) for w in r.split()) for r in refs]

    return refs, noisy(noise_a), noisy(noise_b)


def sacrebleu_paired_bs(refs: list[str], a: list[str], b: list[str]) -> tuple[Result, Result]:
    """sacreBLEU's paired bootstrap, A the baseline: (A's result, B's result with the p-value)."""
    _, scores = PairedTest([("a", a), ("b", b)], {"BLEU": sacrebleu.BLEU()}, [refs], test_type="bs", n_samples=N)()
    return scores["BLEU"][0], scores["BLEU"][1]


# ---------------------------------------------------------------------------------------------- BLEU
@pytest.mark.parametrize("seed", [0, 3])
def test_paired_bleu_equals_sacrebleu_where_the_p_value_is_informative(seed):
    refs, a, b = bleu_systems(seed)
    base, system = sacrebleu_paired_bs(refs, a, b)
    assert 0.01 < system.p_value < 0.9, system.p_value  # the fixture is between the floor and 1
    ours = paired_bleu([np.array(bleu_sentence_stats(a, refs))], [np.array(bleu_sentence_stats(b, refs))], N)
    assert ours["diff"] == pytest.approx(base.score - system.score, abs=1e-9)
    assert ours["p_value"] == pytest.approx(system.p_value, abs=1e-12)
    assert ours["n_samples"] == N
    # and the other way round (B against A): the test is symmetric
    swapped = paired_bleu([np.array(bleu_sentence_stats(b, refs))], [np.array(bleu_sentence_stats(a, refs))], N)
    assert swapped["p_value"] == pytest.approx(system.p_value, abs=1e-12)
    assert swapped["diff"] == pytest.approx(-ours["diff"], abs=1e-9)


def test_compare_on_run_folders_equals_sacrebleu_where_the_p_value_is_informative(tmp_path: Path):
    refs, a, b = bleu_systems(0)
    folders = []
    for name, hyps in (("a", a), ("b", b)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "hyp.test.beam4.de").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        (folder / "ref.test.de").write_text("\n".join(refs) + "\n", encoding="utf-8")
        folders.append(folder)
    base, system = sacrebleu_paired_bs(refs, a, b)
    assert 0.01 < system.p_value < 0.9
    ours = E.paired_bootstrap(folders[0], folders[1], "test", n_samples=N)
    assert ours["identical"] is False
    assert ours["p_value"] == pytest.approx(system.p_value, abs=1e-12)
    assert ours["a"]["bleu"] == pytest.approx(base.score, abs=1e-9)
    assert ours["b"]["bleu"] == pytest.approx(system.score, abs=1e-9)
    assert ours["b"]["mean"] == pytest.approx(system.mean, abs=1e-9)


# ----------------------------------------------------------------------------------- NLL and ROUGE
class SumOverCount:
    """sacreBLEU's metric interface over per-sentence (sum, count) statistics: a set scores sum / count."""

    def _extract_corpus_statistics(self, hyps, refs):
        return [list(h) for h in hyps]

    def _compute_score_from_stats(self, stats):
        return SimpleNamespace(score=float(stats[0]) / float(stats[1]))

    def _aggregate_and_compute(self, stats):
        return self._compute_score_from_stats(np.asarray(stats, dtype=np.float64).sum(0))


def sacrebleu_paired_bs_sums(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> Result:
    """sacreBLEU's paired bootstrap (its resampling, its p-value) of two systems' per-sentence (sum, count)."""
    metric = SumOverCount()
    base = metric._extract_corpus_statistics(a, None)
    info = {"m": (base, Result(metric._aggregate_and_compute(base).score))}
    _, res = _paired_bs_test(info, "b", b, None, {"m": metric}, n_samples=N, seed=SEED)
    return res["m"]


def nll_systems(seed: int, n: int = 40):
    """(tokens, NLL sums of A, of B) per sentence, multiples of 1/8; B a little worse per token, noisily."""
    rng = random.Random(seed)
    tok = [rng.randint(3, 12) for _ in range(n)]
    a = [round(t * rng.uniform(1.5, 3.0) * 8) / 8 for t in tok]
    b = [round((x + t * rng.gauss(0.05, 0.4)) * 8) / 8 for x, t in zip(a, tok)]
    return tok, a, b


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_paired_nll_equals_sacrebleus_bootstrap_where_the_p_value_is_informative(seed):
    tok, a, b = nll_systems(seed)
    theirs = sacrebleu_paired_bs_sums(list(zip(a, tok)), list(zip(b, tok)))
    assert 0.01 < theirs.p_value < 0.9, theirs.p_value
    ours = paired_nll([a], [tok], [b], [tok], N)
    assert ours["diff"] == pytest.approx(sum(a) / sum(tok) - sum(b) / sum(tok), abs=1e-12)
    assert ours["p_value"] == pytest.approx(theirs.p_value, abs=1e-12)


def rouge_systems(seed: int, n: int = 30):
    """Per summary [ROUGE-1, ROUGE-2, ROUGE-L] F1 of A and B (only ROUGE-L is tested), multiples of 1/8."""
    rng = random.Random(seed)
    a = [[0.0, 0.0, rng.randint(2, 7) / 8] for _ in range(n)]
    b = [[0.0, 0.0, min(1.0, max(0.0, r[2] + rng.choice([-2, -1, 0, 0, 1, 1]) / 8))] for r in a]
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_rouge_equals_sacrebleus_bootstrap_where_the_p_value_is_informative(seed):
    a, b = rouge_systems(seed)
    theirs = sacrebleu_paired_bs_sums([(r[2] * 100, 1) for r in a], [(r[2] * 100, 1) for r in b])
    assert 0.01 < theirs.p_value < 0.9, theirs.p_value
    ours = paired_rouge([a], [b], N)
    assert ours["diff"] == pytest.approx(100 * (np.mean([r[2] for r in a]) - np.mean([r[2] for r in b])), abs=1e-9)
    assert ours["p_value"] == pytest.approx(theirs.p_value, abs=1e-12)


# ------------------------------------------------------------------------------------- several seeds
def test_two_level_bootstrap_by_hand_where_the_p_value_is_informative():
    """Seeds drawn with replacement per row after sacreBLEU's sentence draw, as bench.report.quality describes."""
    tok, a1, b1 = nll_systems(0)
    _, a2, b2 = nll_systems(1)
    tok2 = nll_systems(1)[0]
    assert tok2 != tok  # different sentences: give the second seed the first one's token counts
    a2 = [round(x / t2 * t * 8) / 8 for x, t2, t in zip(a2, tok2, tok)]
    b2 = [round(x / t2 * t * 8) / 8 for x, t2, t in zip(b2, tok2, tok)]
    na, nb, t = np.array([a1, a2]), np.array([b1, b2]), np.array(tok, dtype=float)
    rng = np.random.default_rng(SEED)
    idx = rng.choice(len(tok), size=(N, len(tok)), replace=True)
    seeds_a, seeds_b = rng.choice(2, size=(N, 2), replace=True), rng.choice(2, size=(N, 2), replace=True)
    ra = np.array([np.mean([na[k][idx[i]].sum() / t[idx[i]].sum() for k in seeds_a[i]]) for i in range(N)])
    rb = np.array([np.mean([nb[k][idx[i]].sum() / t[idx[i]].sum() for k in seeds_b[i]]) for i in range(N)])
    observed = float(np.mean(na.sum(1) / t.sum()) - np.mean(nb.sum(1) / t.sum()))
    diffs = np.abs(ra - rb)
    expected = _compute_p_value(diffs - diffs.mean(), abs(observed))
    assert 0.01 < expected < 0.9, expected
    ours = paired_nll(na, [tok, tok], nb, [tok, tok], N)
    assert ours["diff"] == pytest.approx(observed, abs=1e-12)
    assert ours["p_value"] == pytest.approx(expected, abs=1e-12)
    assert ours["ci95"] == pytest.approx(list(np.percentile(ra - rb, [2.5, 97.5])), abs=1e-12)


# ------------------------------------------------------------------------------------ no difference
def test_identical_systems_do_not_differ():
    """sacreBLEU gives a system against itself its floor p-value, 1/(n+1) ("significant"); no difference is
    p = 1."""
    refs, a, _ = bleu_systems(0)
    assert sacrebleu_paired_bs(refs, a, a)[1].p_value == pytest.approx(1 / (N + 1))  # what we do not copy
    stats = np.array(bleu_sentence_stats(a, refs))
    same = paired_bleu([stats], [stats], N)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_value"] == 1.0
    tok, nll, _ = nll_systems(0)
    assert paired_nll([nll], [tok], [nll], [tok], N)["p_value"] == 1.0
    r, _ = rouge_systems(0)
    assert paired_rouge([r], [r], N)["p_value"] == 1.0
