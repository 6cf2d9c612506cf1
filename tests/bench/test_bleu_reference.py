"""Evaluation held against sacreBLEU itself: a few real German-English sentence pairs, "translated" by a fake
model that emits known hypotheses as subword ids, go through the project's evaluation (sentencepiece
detokenization, length-sorted batches put back in order, the test split and its test-clean subset, the
files it writes) and must give the corpus BLEU and chrF sacreBLEU computes here from the same strings. The
paired bootstrap is checked against the ``sacrebleu`` command's own ``--paired-bs`` on the same files, and
word-level perplexity against a hand computation on a toy text."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
import torch
from torch import nn

import bench.evaluation.evaluate as E
from bench.data import TokenizerConfig, get_corpus, get_tokenizer
from bench.errors import BenchError
from tests.toy_corpus import WORDS, write_lm_corpus

SOURCES = [  # German
    "Das Haus ist klein, aber gemütlich.",
    "Wir fahren morgen früh nach Berlin.",
    "Kannst du mir bitte das Salz geben?",
    "Die Sitzung wurde auf Donnerstag verschoben.",
    "Er hat seinen Schlüssel im Büro vergessen.",
    "Im Sommer ist es hier sehr heiß.",
    "Ich habe das Buch noch nicht gelesen.",
    "Öffnen Sie das Menü \"Datei\" und wählen Sie \"Speichern\".",
]
REFS = [  # English
    "The house is small, but cosy.",
    "We are driving to Berlin early tomorrow morning.",
    "Can you please pass me the salt?",
    "The meeting has been postponed to Thursday.",
    "He forgot his key at the office.",
    "In summer it is very hot here.",
    "I haven't read the book yet.",
    "Open the \"File\" menu and choose \"Save\".",
]
HYPS_A = [  # a decent system
    "The house is small but cozy.",
    "Tomorrow morning we drive to Berlin early.",
    "Can you give me the salt, please?",
    "The meeting was postponed to Thursday.",
    "He forgot his key in the office.",
    "In summer it is very hot here.",
    "I have not read the book yet.",
    "Open the \"File\" menu and select \"Save\".",
]
HYPS_B = [  # a weaker one
    "The house is little, but comfortable.",
    "We go to Berlin tomorrow.",
    "You can give me the salt?",
    "The session was moved on Thursday.",
    "He has his key forgotten in the office.",
    "It is hot here in the summer.",
    "I did not read the book.",
    "Open menu File and select Save.",
]
CLEAN_IDS = [0, 3, 4, 6]  # test-clean: these test pairs, not a prefix nor every other one


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """de -> en folder: test = the pairs above, test-clean = CLEAN_IDS; train holds every string the fake
    systems emit, so that the tokenizer covers each character and decoding restores the text exactly."""
    root = tmp_path_factory.mktemp("bleu") / "deen"
    root.mkdir()

    def write(split, de, en):
        (root / f"{split}.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (root / f"{split}.en").write_text("\n".join(en) + "\n", encoding="utf-8")

    write("train", SOURCES * 3, REFS + HYPS_A + HYPS_B)
    write("valid", SOURCES[:3], REFS[:3])
    write("test", SOURCES, REFS)
    write("test-clean", [SOURCES[i] for i in CLEAN_IDS], [REFS[i] for i in CLEAN_IDS])
    return root


@pytest.fixture(scope="module")
def tok(corpus_dir):
    return get_tokenizer(get_corpus(corpus_dir, task="mt"), TokenizerConfig(vocab_size=150))


class FakeTranslator(nn.Module):
    """Looks each source sentence up (decoded from its ids, as a real model sees only ids) and emits the
    subword ids of its hypothesis, EOS, then padding, like ``generate``. ``forward`` is a uniform
    distribution, enough for the validation NLL ``evaluate_run`` also computes."""

    def __init__(self, tok, table: dict[str, str]) -> None:
        super().__init__()
        self.tok, self.table, self.batches = tok, table, []
        self.config = SimpleNamespace(pad_id=tok.pad_id, eos_id=tok.eos_id, bos_id=tok.bos_id)

    def forward(self, src, prev):
        return torch.zeros(*prev.shape, self.tok.vocab_size)

    def generate(self, src, max_len, beam=1, length_penalty=1.0):
        rows = []
        for row in src.tolist():
            source = self.tok.decode([t for t in row if t != self.tok.pad_id])
            ids = self.tok.encode(self.table[source]) + [self.tok.eos_id]
            assert len(ids) <= max_len, "a hypothesis longer than the decoder may emit"
            rows.append(ids)
        self.batches.append(len(rows))
        out = torch.full((len(rows), max(map(len, rows)) + 2), self.tok.pad_id, dtype=torch.long)
        for i, ids in enumerate(rows):
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def score(tok, corpus_dir, hyps, out_dir=None, limit=None, model=None):
    model = model or FakeTranslator(tok, dict(zip(SOURCES, hyps)))
    splits = get_corpus(corpus_dir, task="mt").load()
    return E.score_test_splits(model, tok, splits, beam=4, length_penalty=1.0, limit=limit, batch=3,
                               out_dir=out_dir, hyp_suffix="beam4.en", tgt_lang="en")


def sacre(hyps, refs):
    return sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score


def test_tokenizer_round_trips_every_hypothesis(tok):
    """The premise of the fixture: detokenization restores each string exactly."""
    for text in SOURCES + REFS + HYPS_A + HYPS_B:
        assert tok.decode(tok.encode(text)) == text


def test_bleu_and_chrf_equal_sacrebleu_on_test_and_test_clean(tok, corpus_dir, tmp_path):
    model = FakeTranslator(tok, dict(zip(SOURCES, HYPS_A)))
    got = score(tok, corpus_dir, HYPS_A, tmp_path, model=model)
    assert len(model.batches) == 3  # 8 sentences in batches of 3, sorted by length, then put back in order
    bleu, chrf = sacre(HYPS_A, REFS)
    assert got["test"]["bleu"] == pytest.approx(bleu, abs=1e-4) and got["test"]["chrf"] == pytest.approx(chrf, abs=1e-4)
    assert got["test"]["n"] == 8
    clean_bleu, clean_chrf = sacre([HYPS_A[i] for i in CLEAN_IDS], [REFS[i] for i in CLEAN_IDS])
    assert got["test-clean"]["bleu"] == pytest.approx(clean_bleu, abs=1e-4)
    assert got["test-clean"]["chrf"] == pytest.approx(clean_chrf, abs=1e-4)
    # the fixture tells corpus BLEU from the mean of sentence BLEUs and test from test-clean
    sentence_mean = sum(sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS_A, REFS)) / len(REFS)
    assert abs(sentence_mean - bleu) > 1 and abs(clean_bleu - bleu) > 1
    # the files hold the detokenized hypotheses in test order
    assert (tmp_path / "hyp.test.beam4.en").read_text(encoding="utf-8").splitlines() == HYPS_A
    assert (tmp_path / "ref.test.en").read_text(encoding="utf-8").splitlines() == REFS


def test_test_clean_is_the_subset_of_its_ids(tok, corpus_dir, tmp_path):
    score(tok, corpus_dir, HYPS_A, tmp_path)
    assert (tmp_path / "hyp.test-clean.beam4.en").read_text(encoding="utf-8").splitlines() == [
        HYPS_A[i] for i in CLEAN_IDS]
    assert (tmp_path / "ref.test-clean.en").read_text(encoding="utf-8").splitlines() == [REFS[i] for i in CLEAN_IDS]
    # with a sentence limit, test-clean keeps only its pairs among the scored test sentences
    got = score(tok, corpus_dir, HYPS_A, limit=5)
    kept = [i for i in CLEAN_IDS if i < 5]
    assert got["test"]["n"] == 5 and got["test-clean"]["n"] == len(kept)
    assert got["test-clean"]["bleu"] == pytest.approx(sacre([HYPS_A[i] for i in kept], [REFS[i] for i in kept])[0],
                                                      abs=1e-4)


def test_shuffled_hypotheses_score_lower(tok, corpus_dir):
    aligned = score(tok, corpus_dir, HYPS_A)["test"]
    rotated = HYPS_A[1:] + HYPS_A[:1]  # each source now gets its neighbour's translation
    shuffled = score(tok, corpus_dir, rotated)["test"]
    assert shuffled["bleu"] == pytest.approx(sacre(rotated, REFS)[0], abs=1e-4)
    assert shuffled["bleu"] < aligned["bleu"] - 20 and shuffled["chrf"] < aligned["chrf"] - 20


def _evaluated_run(run_dir: Path, tok, corpus_dir: Path, hyps, monkeypatch) -> Path:
    """``evaluate_run`` on a run folder whose model is the fake translator emitting ``hyps``."""
    run_dir.mkdir()
    spec = {"model": "fake", "seed": 1, "task": "mt", "corpus": str(corpus_dir),
            "schedule": {"eval_beam": 4, "eval_sentences": None}}
    monkeypatch.setattr(E, "load_run", lambda _: (FakeTranslator(tok, dict(zip(SOURCES, hyps))), spec, tok))
    res = E.evaluate_run(run_dir)
    assert res["test"]["bleu"] == pytest.approx(sacre(hyps, REFS)[0], abs=1e-4)
    assert res["test_clean"]["n"] == len(CLEAN_IDS)
    assert json.loads((run_dir / "eval.json").read_text())["test"] == res["test"]
    return run_dir


def test_paired_bootstrap_matches_sacrebleu_paired_bs(tok, corpus_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # both sides use sacreBLEU's default seed, 12345
    run_a = _evaluated_run(tmp_path / "a", tok, corpus_dir, HYPS_A, monkeypatch)
    run_b = _evaluated_run(tmp_path / "b", tok, corpus_dir, HYPS_B, monkeypatch)
    ours = E.paired_bootstrap(run_a, run_b, "test", n_samples=500)
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_SEED"}
    cmd = [sys.executable, "-m", "sacrebleu", str(run_a / "ref.test.en"), "-i", str(run_a / "hyp.test.beam4.en"),
           str(run_b / "hyp.test.beam4.en"), "--paired-bs", "--paired-bs-n", "500", "-m", "bleu", "-f", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    base, system = [row["BLEU"] for row in json.loads(out)]
    assert ours["n_samples"] == 500
    for mine, theirs in ((ours["a"], base), (ours["b"], system)):
        assert mine["bleu"] == pytest.approx(theirs["score"], abs=1e-9)
        assert mine["mean"] == pytest.approx(theirs["mean"], abs=1e-9)
        low, high = mine["ci95"]  # sacreBLEU's mean +- its 95% half-width
        assert (low, high) == pytest.approx((theirs["mean"] - theirs["ci"], theirs["mean"] + theirs["ci"]), abs=1e-9)
        assert high > low
    assert ours["p_value"] == pytest.approx(system["p_value"], abs=1e-12)
    assert ours["a"]["bleu"] > ours["b"]["bleu"]
    # not for summaries or language models (BLEU would mean nothing there), nor with two beams' hypotheses
    (run_b / "run.json").write_text(json.dumps({"task": "sum"}))
    with pytest.raises(BenchError, match="is a sum run: this test compares translations' BLEU"):
        E.paired_bootstrap(run_a, run_b, "test")
    (run_a / "hyp.test.beam1.en").write_text((run_a / "hyp.test.beam4.en").read_text())
    with pytest.raises(BenchError, match="hypotheses from several beams"):
        E.paired_bootstrap(run_a, run_a, "test")


# ------------------------------------------------------------------------------------- word perplexity
LM_TEST = ["the cat sees a dog", "big red car runs fast", "the old bird sings"]
LM_TEST_WORDS = (5 + 1) + (5 + 1) + (4 + 1)  # counted by hand: whitespace words plus one end-of-line per line


class BigramLM(nn.Module):
    """Next-token logits from a fixed random table indexed by the current token."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def forward(self, inputs):
        return self.table[inputs].float()


def test_word_perplexity_by_hand(tmp_path, monkeypatch):
    assert all(w in WORDS for line in LM_TEST for w in line.split())
    root = write_lm_corpus(tmp_path / "lm")
    (root / "test.txt").write_text("\n".join(LM_TEST) + "\n")
    tok = get_tokenizer(get_corpus(root, task="lm"), TokenizerConfig(vocab_size=40))
    stream = []
    for line in LM_TEST:
        stream += tok.encode(line) + [tok.eos_id]
    n = len(stream) - 1  # predicted tokens: every one but the first
    block = next(b for b in range(4, n + 1) if n % b == 0)  # blocks that cover the whole text
    model = BigramLM(tok.vocab_size)
    total = 0.0
    for cur, nxt in zip(stream, stream[1:]):
        row = model.table[cur].tolist()
        total += math.log(sum(math.exp(v) for v in row)) - row[nxt]
    spec = {"model": "fake", "task": "lm", "corpus": str(root), "schedule": {"lm_block": block}}
    monkeypatch.setattr(E, "load_run", lambda _: (model, spec, tok))
    run = tmp_path / "run"
    run.mkdir()
    res = E.evaluate_run(run)
    assert res["test_tokens"] == n
    assert res["test_nll"] == pytest.approx(total / n, rel=1e-5)
    assert res["ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert res["ppl_word"] == pytest.approx(math.exp(total / LM_TEST_WORDS), rel=1e-5)
