"""Nothing silently wrong under bad input: schedules, latency threads, run records, Ctrl-C, budget files and run
folders. Each test reproduces a defect a user met (the old code trained, measured, printed or crashed where it
now refuses with one line and exit code 2, or stops with the resume line and exit code 130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.train.run_folder import load_checkpoint
from bench.train.schedules import get_schedule
from bench.train.trainer import Trainer, load_task_data
from tests.toy_corpus import write_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(d_model=32, heads=4, encoder_layers=1, decoder_layers=1, ffn_dim=64)
TINY_SETS = [w for k, v in TINY.items() for w in ("--set", f"{k}={v}")]


from tests.bench.test_inputs import cli, one_bad_line  # noqa: E402 (the command-line helpers, shared)


def toy_corpus(folder: Path) -> Path:
    """The toy corpus with its 60-subword tokenizer trained (sentencepiece cannot train under cli()'s redirected
    stderr)."""
    corpus = write_corpus(folder)
    load_task_data(str(corpus), "mt", get_schedule("quick"), vocab_size=60)
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return toy_corpus(tmp_path_factory.mktemp("corpus") / "toy")


def train_argv(corpus: Path, out: Path, *extra: str) -> list[str]:
    """A tiny Transformer on the toy corpus, a few updates: seconds."""
    return ["train", "transformer", "--schedule", "quick", "--corpus", str(corpus), "--vocab-size", "60",
            *TINY_SETS, "--out", str(out), "--quiet", "--precision", "fp32",
            "--schedule-set", "batch_tokens=256", "--schedule-set", "valid_sentences=none",
            "--schedule-set", "valid_every=1000000", "--schedule-set", "eval_sentences=4", *extra]


# ------------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize(
    "sets, says",
    [
        (["warmup_steps=-5"], "warmup_steps=-5"),
        (["label_smoothing=1.5"], "label_smoothing=1.5"),
        (["lr=1e-3", "min_lr=2e-3"], "min_lr=0.002"),
        (["decay=inverse_sqrt", "warmup_steps=0"], "warmup_steps=0"),  # trained at rate 0 for the whole run
        (["decay=inverse_sqrt", "warmup_steps=-5"], "warmup_steps=-5"),  # math domain error, run.json left behind
        (["lr=0"], "lr=0"),
        (["batch_tokens=0"], "batch_tokens=0"),
        (["valid_every=0"], "valid_every=0"),
        (["checkpoint_every=0"], "checkpoint_every=0"),
        (["log_every=0"], "log_every=0"),
        (["clip_norm=-1"], "clip_norm=-1"),
    ],
)
def test_a_bad_schedule_value_is_refused_before_anything_is_written(corpus, tmp_path, sets, says):
    out = tmp_path / "run"
    argv = train_argv(corpus, out, "--max-steps", "2")
    for item in sets:
        argv += ["--schedule-set", item]
    err = one_bad_line(*cli(*argv))
    assert says in err
    assert not out.exists()


def test_every_path_that_builds_a_schedule_checks_it(corpus, tmp_path):
    with pytest.raises(BenchError, match="label_smoothing"):
        get_schedule("short", label_smoothing=1.0)
    # a schedule adjusted after get_schedule (a tuned peak rate, a trial's) is checked again before training
    bad = get_schedule("quick", max_steps=2, batch_tokens=256, precision="fp32").with_overrides(min_lr=1.0)
    data = load_task_data(str(corpus), "mt", bad, vocab_size=60)
    with pytest.raises(BenchError, match="min_lr"):
        Trainer("transformer", dict(TINY), data, bad, 1, tmp_path / "run", progress=False).run()
    assert not (tmp_path / "run").exists()
    # a budget file's train: section reaches `run` and `tune` too: refused before either writes a file
    text = (ROOT / "budgets" / "100M.yaml").read_text(encoding="utf-8")
    budget = tmp_path / "bad.yaml"
    budget.write_text(text.replace("warmup_steps: 500", "warmup_steps: -5"), encoding="utf-8")
    assert "warmup_steps: -5" in budget.read_text(encoding="utf-8")
    results = tmp_path / "results"
    err = one_bad_line(*cli("run", "--budget", str(budget), "--results", str(results), "--stages", "profile",
                            "--models", "transformer"))
    assert "warmup_steps=-5" in err
    err = one_bad_line(*cli("tune", "--budget", str(budget), "--results", str(results), "--models", "transformer"))
    assert "warmup_steps=-5" in err
    assert not results.exists()


# -------------------------------------------------------------------------------------------------- latency
def test_latency_refuses_more_threads_than_cores():
    from bench.cli.args import latency_threads
    from bench.latency.machine import all_cores

    cores = all_cores()
    assert latency_threads("--threads", "all") == cores and latency_threads("--threads", str(cores)) == cores
    for many in (str(cores + 1), "999"):
        err = one_bad_line(*cli("latency", "transformer", *TINY_SETS, "--threads", many, "--min-time", "0.01"))
        assert "--threads" in err and f"{cores} core" in err


# -------------------------------------------------------------------------------------------------- records
@pytest.mark.parametrize("key, value, says", [("valid_nll", "2.1", "'valid_nll' is '2.1'"),
                                              ("train_steps", -3, "'train_steps' is -3"),
                                              ("train_steps", 2.5, "'train_steps' is 2.5"),
                                              ("valid_nll", float("nan"), "'valid_nll' is nan")])
def test_report_names_a_record_with_a_value_of_the_wrong_type_or_range(tmp_path, key, value, says):
    from bench.records.schema import read_record
    from tests.bench.test_report import make_results

    results = make_results(tmp_path)
    bad = results / "runs" / "transformer-c0ffee" / "train-s1.json"
    raw = json.loads(bad.read_text())
    raw[key] = value
    bad.write_text(json.dumps(raw))
    with pytest.raises(BenchError) as info:
        read_record(bad)
    assert str(bad) in str(info.value) and says in str(info.value)
    err = one_bad_line(*cli("report", "--results", str(results), "--combine"))
    assert str(bad) in err and says in err
    assert not (results / "leaderboard.csv").exists()


def test_nested_quality_values_are_checked_too(tmp_path):
    from bench.records.schema import read_record
    from tests.bench.test_report import make_results

    results = make_results(tmp_path)
    bad = results / "runs" / "transformer-c0ffee" / "eval-s1.json"
    raw = json.loads(bad.read_text())
    raw["test"]["bleu"] = 140.0
    bad.write_text(json.dumps(raw))
    with pytest.raises(BenchError, match=r"'test\.bleu' is 140\.0, expected a finite number in \[0, 100\]"):
        read_record(bad)


def test_the_records_in_the_repository_pass_the_schema():
    from bench.records.schema import is_record_file, read_record

    files = [p for p in sorted(ROOT.glob("results/*/runs/*/*.json")) if is_record_file(p)]
    for path in files:
        read_record(path)


# --------------------------------------------------------------------------------------------- budget file
def test_a_budget_file_of_binary_junk_is_named(tmp_path, corpus):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(bytes(range(256)) * 4)
    err = one_bad_line(*cli("solve", "transformer", "--budget", str(junk)))
    assert str(junk) in err and "UTF-8" in err and "internal failure" not in err
    err = one_bad_line(*cli(*train_argv(corpus, tmp_path / "run", "--budget", str(junk))))
    assert str(junk) in err and not (tmp_path / "run").exists()
    bad_date = tmp_path / "date.yaml"
    bad_date.write_text("target_macs: 100M\nwhen: 2024-13-45\n", encoding="utf-8")
    err = one_bad_line(*cli("solve", "transformer", "--budget", str(bad_date)))
    assert str(bad_date) in err and "YAML" in err


# ---------------------------------------------------------------------------------------------- run folders
def test_a_run_folder_of_another_corpus_content_is_refused_and_fresh_starts_it_anew(tmp_path):
    corpus = toy_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    argv = train_argv(corpus, out, "--max-steps", "3")
    code, _, err = cli(*argv)
    assert code == 0, err
    first = load_checkpoint(out / "checkpoint.pt")["spec"]
    assert first["corpus_sha256"] and first["tokenizer_sha256"]
    # the same folder, the same path, other test sentences (the training side, hence the tokenizer, unchanged)
    lines = (corpus / "test.de").read_text().splitlines()
    (corpus / "test.de").write_text("\n".join(["rot"] + lines[1:]) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    err = one_bad_line(*cli(*argv))
    assert "corpus content" in err and "--fresh" in err and "tokenizer" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched
    code, _, err = cli(*argv, "--fresh")
    assert code == 0, err
    assert "afresh" in err and "checkpoint.pt" in err and "update 3" in err  # never silently
    again = load_checkpoint(out / "checkpoint.pt")
    assert again["state"]["step"] == 3 and again["spec"]["corpus_sha256"] != first["corpus_sha256"]
    assert "resumed_from_steps" not in json.loads((out / "train.json").read_text())
    code, _, err = cli(*argv)  # and now it is this run: continued (it is finished), not refused
    assert code == 0, err


def test_a_run_folder_of_another_tokenizer_is_refused_and_an_old_checkpoint_still_resumes(corpus, tmp_path):
    import torch

    sched = get_schedule("quick", max_steps=4, batch_tokens=256, precision="fp32", valid_every=2,
                         checkpoint_every=2, valid_sentences=None)
    data = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    out = tmp_path / "run"
    Trainer("transformer", dict(TINY), data, sched, 1, out, progress=False).run(stop_at_step=2)
    # a tokenizer of the same size learnt from other text (every word reversed)
    other = tmp_path / "other"
    other.mkdir()
    for f in corpus.glob("*.*"):
        if f.suffix in (".en", ".de"):
            (other / f.name).write_text("\n".join(" ".join(w[::-1] for w in line.split())
                                                  for line in f.read_text().splitlines()) + "\n")
    swapped = load_task_data(str(corpus), "mt", sched, vocab_size=60)
    swapped.tokenizer = load_task_data(str(other), "mt", sched, vocab_size=60).tokenizer
    assert swapped.tokenizer.vocab_size == data.tokenizer.vocab_size
    with pytest.raises(BenchError, match=r"\(tokenizer differ\)"):
        Trainer("transformer", dict(TINY), swapped, sched, 1, out, progress=False).run()
    # a checkpoint written before the digests existed: continued as before (nothing to compare them with)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    for key in ("corpus_sha256", "tokenizer_sha256"):
        del ck["spec"][key]
    torch.save(ck, out / "checkpoint.pt")
    t = Trainer("transformer", dict(TINY), data, sched, 1, out, progress=False)
    assert t.run()["train_steps"] == 4 and t.resumed_from_step == 2


def _bench(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def _long_run(corpus: Path, out: Path) -> list[str]:
    return train_argv(corpus, out, "--threads", "1", "--schedule-set", "max_tokens=none",
                      "--max-steps", "1000000", "--schedule-set", "checkpoint_every=2")


def _wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the training ended before writing {path}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} after {limit_s} s")
        time.sleep(0.1)


def test_ctrl_c_saves_the_checkpoint_and_says_how_to_resume(corpus, tmp_path):
    out = tmp_path / "run"
    proc = _bench(_long_run(corpus, out))
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "internal failure" not in stderr and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    step = load_checkpoint(out / "checkpoint.pt")["state"]["step"]
    assert last == f"interrupted at update {step}, checkpoint saved; run the same command to resume"
    assert stdout == "" and not (out / "train.json").exists()


def test_a_second_process_training_into_a_folder_in_use_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    first = _bench(_long_run(corpus, out))
    try:
        _wait_for(out / "checkpoint.pt", first)
        second = _bench(_long_run(corpus, out))
        try:
            stdout, stderr = second.communicate(timeout=120)
        finally:
            second.kill()
        assert second.returncode == 2 and stdout == "", stderr
        assert stderr.count("\n") == 1 and "in use" in stderr and str(out) in stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


def test_every_latency_thread_option_is_held_to_the_cores(monkeypatch):
    """run --threads, curves --threads and compress --threads time at most the cores, like latency --threads."""
    from bench.cli import args as check
    from bench.errors import BenchError

    monkeypatch.setattr("bench.latency.machine.all_cores", lambda: 2)
    assert check.thread_list("--threads", "1,2", latency=True) == [1, 2]
    with pytest.raises(BenchError, match="may use 2 core"):
        check.thread_list("--threads", "1,999", latency=True)
    assert check.thread_list("--threads", "999") == [999]  # training threads are not held to it


def test_a_tuning_grid_rate_below_min_lr_is_refused_while_planning():
    from bench.errors import BenchError
    from bench.train.schedules import get_schedule
    from bench.train.tune import trial_schedule

    base = get_schedule("short", min_lr=1e-4)
    with pytest.raises(BenchError, match="min_lr"):
        trial_schedule(base, 5e-5, 100_000)
