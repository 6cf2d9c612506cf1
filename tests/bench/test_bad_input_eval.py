"""Bad input to evaluation, compression and compare: one clear line on stderr, exit 2, and nothing lost.

A sentence limit below 1 is refused before anything runs (``--max-sentences 0`` used to empty the run's
hypothesis and reference files, ``-1`` to score all but one sentence); evaluation and compression write their
outputs together once everything succeeded (a failure replaces none of the files already there); ``compress
--out`` refuses a run folder, a folder holding an evaluation, and another run's compression; a run compared with
itself does not differ (p = 1); a cut-off or corrupt ``run.json`` or hypothesis file is named, with what is wrong.

One tiny Transformer (d=16, 1+1 layers) trained for 4 steps on the synthetic corpus of tests/toy_corpus.py and
evaluated greedily: its BLEU is near 0, which is all these tests need."""

from __future__ import annotations

import io
import json
import random
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import bench.compress.pipeline as pipeline
import bench.evaluation.evaluate as E
from bench.cli import main
from bench.compress import compress_run
from bench.errors import BenchError
from bench.train.schedules import get_schedule
from bench.train.trainer import Trainer, load_task_data
from tests.toy_corpus import write_corpus

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = dict(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, dropout=0.1)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_bad_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "internal failure" not in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes): what a refused or failed command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A trained run folder (checkpoint.pt, run.json, ...), evaluated once: hyp.test.beam1.*, ref.test.*,
    eval.json. Tests copy it before they change anything."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("badeval")
    corpus = write_corpus(root / "toy")
    sched = get_schedule("quick", max_steps=4, batch_tokens=256, warmup_steps=1, valid_every=4, valid_sentences=None,
                         checkpoint_every=100, log_every=2, precision="fp32", max_len=64, eval_beam=1,
                         eval_sentences=None, lr=3e-3)
    data = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    Trainer("transformer", TINY, data, sched, 3, root / "run", progress=False).run(resume=False)
    E.evaluate_run(root / "run")
    return root / "run"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the evaluated run this test may change."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_the_fixture_is_an_evaluated_run(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"checkpoint.pt", "run.json", "eval.json", "hyp.test.beam1.en", "ref.test.en"} <= names
    assert len((trained / "ref.test.en").read_text().splitlines()) == 20  # the toy corpus's test split


# ------------------------------------------------------------------------------------- sentence limits
@pytest.mark.parametrize("argv", [["--max-sentences", "0"], ["--max-sentences=-1"], ["--max-sentences", "-3"]])
def test_evaluate_refuses_a_sentence_limit_below_one_and_loses_nothing(run, argv):
    before = snapshot(run)
    err = one_bad_line(*cli("evaluate", run, *argv))
    assert "--max-sentences must be an integer >= 1" in err
    assert snapshot(run) == before  # 0 used to empty hyp.test.* and ref.test.*; -1 scored all but one sentence


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
def test_a_sentence_limit_below_one_is_refused_before_anything_runs(run, monkeypatch, bad):
    monkeypatch.setattr(E, "load_run", lambda _: pytest.fail("the limit must be checked before the run is loaded"))
    with pytest.raises(BenchError, match="must be an integer >= 1") as exc:
        E.evaluate_run(run, max_sentences=bad)
    assert "\n" not in str(exc.value)


def test_the_schedules_sentence_limit_is_checked_too():
    for bad in (0, -1):
        with pytest.raises(BenchError, match="the run's schedule's eval_sentences must be an integer >= 1"):
            E.eval_settings({"schedule": {"eval_sentences": bad}})
    assert E.eval_settings({"schedule": {"eval_sentences": 5}})[2] == 5
    assert E.eval_settings({"schedule": {"eval_sentences": None}}, max_sentences=3)[2] == 3


def test_a_valid_limit_scores_that_many_sentences(run):
    res = E.evaluate_run(run, max_sentences=3)
    assert res["test"]["n"] == 3 and len(res["test"]["hypotheses"]) == 3
    assert len((run / "ref.test.en").read_text().splitlines()) == 3
    assert json.loads((run / "eval.json").read_text())["test"]["n"] == 3


# --------------------------------------------------------------------------------- all or nothing
def test_an_evaluation_that_fails_replaces_none_of_the_files(run, monkeypatch):
    """The per-sentence NLL comes after the test split is scored: a failure there used to leave the hypotheses
    and references of the new (here: 5-sentence) evaluation beside the old eval.json."""
    before = snapshot(run)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure after scoring")

    monkeypatch.setattr(E, "sentence_nll", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        E.evaluate_run(run, max_sentences=5)
    assert snapshot(run) == before
    assert not [p.name for p in run.iterdir() if p.suffix == ".tmp"]  # no temporary file left behind


def test_a_compression_that_fails_replaces_none_of_the_files(trained, tmp_path, monkeypatch):
    out = tmp_path / "c"
    compress_run(trained, quantize="int8", out_dir=out, latency=False)
    before = snapshot(out)
    assert len((out / "ref.test.en").read_text().splitlines()) == 20

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the int8 stage")

    monkeypatch.setattr(pipeline, "quantize_int8", broken)
    with pytest.raises(RuntimeError, match="simulated"):  # the fp32 stage ran; its 5-line refs must not land
        compress_run(trained, quantize="int8", out_dir=out, latency=False, max_sentences=5)
    assert snapshot(out) == before
    assert not [p.name for p in out.iterdir() if p.suffix in (".tmp", ".staged")]  # nor a staged model


# ---------------------------------------------------------------------------------- compress --out
def test_compress_refuses_to_write_over_the_runs_own_evaluation(run):
    before = snapshot(run)
    err = one_bad_line(*cli("compress", run, "--quantize", "int8", "--out", run, "--max-sentences", "5",
                            "--no-latency"))
    assert f"--out {run} is a run folder" in err
    assert snapshot(run) == before
    code, out, err = cli("compare", run, run, "--samples", "50", "--json")  # used to fail: a 5-line reference file
    assert code == 0, err


def test_compress_refuses_a_folder_holding_an_evaluation_or_another_runs_compression(trained, tmp_path):
    evaluation = tmp_path / "evaluation"  # an evaluation's files without the run's checkpoint
    evaluation.mkdir()
    for name in ("eval.json", "hyp.test.beam1.en", "ref.test.en"):
        shutil.copy(trained / name, evaluation / name)
    before = snapshot(evaluation)
    err = one_bad_line(*cli("compress", trained, "--quantize", "int8", "--out", evaluation, "--no-latency"))
    assert "holds an evaluation (eval.json, hyp.test.beam1.en)" in err
    assert snapshot(evaluation) == before

    other = tmp_path / "other"  # another run's compression
    other.mkdir()
    (other / "compress.json").write_text(json.dumps({"run_dir": str(tmp_path / "elsewhere"), "model": "transformer",
                                                     "seed": 3, "stages": []}))
    (other / "ref.test.en").write_text("another run's reference\n")
    before = snapshot(other)
    err = one_bad_line(*cli("compress", trained, "--quantize", "int8", "--out", other, "--no-latency"))
    assert "holds the compression of another run" in err and "elsewhere" in err
    assert snapshot(other) == before

    afile = tmp_path / "a-file"
    afile.write_text("not a folder\n")
    assert "is a file, not a folder" in one_bad_line(*cli("compress", trained, "--quantize", "int8", "--out", afile,
                                                          "--no-latency"))

    (other / "compress.json").write_text('{"run_dir": "')  # cut off: named, not replaced
    err = one_bad_line(*cli("compress", trained, "--quantize", "int8", "--out", other, "--no-latency"))
    assert str(other / "compress.json") in err

    # the same run's own earlier compression folder is replaced (compress again with other settings)
    mine = tmp_path / "mine"
    compress_run(trained, quantize="int8", out_dir=mine, latency=False)
    res = compress_run(trained, quantize="int8", out_dir=mine, latency=False, max_sentences=4)
    assert res["stages"][0]["test"]["n"] == 4 and len((mine / "ref.test.en").read_text().splitlines()) == 4
    assert json.loads((mine / "compress.json").read_text())["settings"]["test_sentences"] == 4


def test_compress_refuses_a_sentence_limit_below_one(trained, tmp_path):
    for bad in (0, -1):
        with pytest.raises(BenchError, match="must be an integer >= 1"):
            compress_run(trained, quantize="int8", out_dir=tmp_path / "x", latency=False, max_sentences=bad)
        with pytest.raises(BenchError, match="must be an integer >= 1"):
            compress_run(trained, quantize="int8", out_dir=tmp_path / "x", latency=False, choose_sentences=bad)
    assert not (tmp_path / "x").exists()
    err = one_bad_line(*cli("compress", trained, "--quantize", "int8", "--max-sentences", "0", "--no-latency"))
    assert "--max-sentences must be an integer >= 1" in err


# -------------------------------------------------------------------------------------------- compare
def _evaluated(folder: Path, hyps: list[str], refs: list[str], run_json: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "hyp.test.beam4.de").write_text("\n".join(hyps) + "\n")
    (folder / "ref.test.de").write_text("\n".join(refs) + "\n")
    if run_json is not None:
        (folder / "run.json").write_text(run_json)
    return folder


@pytest.fixture
def texts() -> tuple[list[str], list[str]]:
    rng = random.Random(0)
    words = "der die das haus baum katze hund rot blau gross klein alt neu sieht rennt".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(30)]
    hyps = [" ".join(w if rng.random() > 0.3 else rng.choice(words) for w in r.split()) for r in refs]
    return refs, hyps


def test_a_run_compared_with_itself_does_not_differ(texts, tmp_path, trained):
    refs, hyps = texts
    a = _evaluated(tmp_path / "a", hyps, refs)
    b = _evaluated(tmp_path / "b", hyps, refs)  # another folder, the same hypotheses
    for x, y in ((a, a), (a, b)):
        code, out, err = cli("compare", x, y, "--samples", "200", "--json")
        assert code == 0, err
        res = json.loads(out)
        assert res["a"]["bleu"] == res["b"]["bleu"] > 10
        assert res["p_value"] == 1.0 and res["identical"] is True  # used to be 1/201: "significantly different"
    code, out, _ = cli("compare", a, a, "--samples", "200")
    assert code == 0 and "p = 1.0000" in out and "no difference" in out
    # the trained run with itself, as the user ran it
    code, out, err = cli("compare", trained, trained, "--json")
    assert code == 0, err
    assert json.loads(out)["p_value"] == 1.0
    # a different system still gets sacreBLEU's p-value
    worse = _evaluated(tmp_path / "w", hyps[1:] + hyps[:1], refs)
    res = E.paired_bootstrap(a, worse, n_samples=200)
    assert res["identical"] is False and res["p_value"] < 0.05


@pytest.mark.parametrize("content, what", [
    ('{"task": "mt", "mod', "is not valid JSON"),  # cut off
    ("", "is not valid JSON"),  # empty
    ("[1, 2]", "holds a JSON list"),
    (b'{"task": "m\xc3', "is not UTF-8 text"),  # cut off inside a character
])
def test_compare_names_a_run_json_that_does_not_parse(texts, tmp_path, content, what):
    refs, hyps = texts
    a = _evaluated(tmp_path / "a", hyps, refs)
    b = _evaluated(tmp_path / "b", hyps[::-1], refs)
    spec = b / "run.json"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode())
    err = one_bad_line(*cli("compare", a, b))  # used to be "internal failure: JSONDecodeError ..." (exit 1)
    assert str(spec) in err and what in err


def test_compare_names_a_cut_off_or_corrupt_hypothesis_file(texts, tmp_path):
    refs, hyps = texts
    a = _evaluated(tmp_path / "a", hyps, refs)
    b = _evaluated(tmp_path / "b", hyps[::-1], refs)
    hyp = b / "hyp.test.beam4.de"
    full = hyp.read_bytes()
    hyp.write_bytes(full[: len(full) // 2])  # cut off at a line: used to be scored as if complete
    err = one_bad_line(*cli("compare", a, b))
    assert str(hyp) in err and "cut off" in err and str(b / "ref.test.de") in err
    hyp.write_bytes(full[:20] + b"\xc3")  # cut off inside a character
    err = one_bad_line(*cli("compare", a, b))
    assert str(hyp) in err and "is not UTF-8 text" in err
    hyp.write_bytes(full)
    (b / "ref.test.de").write_bytes(b"")
    (b / "hyp.test.beam4.de").write_bytes(b"")
    err = one_bad_line(*cli("compare", a, b))
    assert str(b / "ref.test.de") in err and "empty" in err


def test_hypothesis_and_reference_files_split_at_newline_alone(tmp_path):
    """A sentence holding U+2028 or a form feed (the corpus reader keeps them) stays one sentence when the
    evaluation reads its files back, so hypotheses and references stay paired."""
    from bench.evaluation.evaluate import _read_lines

    path = tmp_path / "ref.test.en"
    path.write_text("one\u2028still one\nform\x0cfeed\r\nthree\n", encoding="utf-8")
    assert _read_lines(path) == ["one\u2028still one", "form\x0cfeed", "three"]
