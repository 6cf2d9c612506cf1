"""Bad input a new user meets, each one clear line on stderr with exit code 2 and nothing written; and the
inputs that used to fail for no good reason (a small corpus, a failing cross-check counter) now work."""

from __future__ import annotations

import io
import json
import os
import random
import re
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from tests.toy_corpus import write_corpus

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_bad_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------ compare
def _evaluated_run(folder: Path, hyps: list[str], refs: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "hyp.test.beam4.de").write_text("\n".join(hyps) + "\n")
    (folder / "ref.test.de").write_text("\n".join(refs) + "\n")
    return folder


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    words = "der die das haus baum katze hund rot blau gross klein alt neu sieht rennt".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(60)]

    def noisy(p: float) -> list[str]:
        return [" ".join(w if rng.random() > p else rng.choice(words) for w in r.split()) for r in refs]

    return _evaluated_run(tmp_path / "a", noisy(0.2), refs), _evaluated_run(tmp_path / "b", noisy(0.5), refs)


def test_compare_prints_and_carries_the_intervals(two_runs):
    a, b = two_runs
    code, out, err = cli("compare", str(a), str(b), "--samples", "200", "--json")
    assert code == 0, err
    res = json.loads(out)
    for side in ("a", "b"):
        low, high = res[side]["ci95"]
        assert isinstance(low, float) and isinstance(high, float) and 0 <= low < high <= 100
        assert low - 10 < res[side]["bleu"] < high + 10
    code, out, _ = cli("compare", str(a), str(b), "--samples", "200")
    assert code == 0 and out.count("95% CI") == 2 and "null" not in out and "not available" not in out


def test_compare_bad_input(two_runs, tmp_path):
    a, _ = two_runs
    assert "does not exist" in one_bad_line(*cli("compare", str(a), str(tmp_path / "nope")))
    assert "--samples must be an integer >= 1" in one_bad_line(*cli("compare", str(a), str(a), "--samples", "0"))


# ------------------------------------------------------------------------------------------ budget files
def _budget_file(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "budgets" / "100M.yaml").read_text())
    edit(raw)
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "edit, names",
    [
        (lambda r: r.update(tolerence=r.pop("tolerance")), ["tolerence", "valid:", "tolerance", "target_macs"]),
        (lambda r: r["protocol"].update(src_token=30), ["src_token", "'protocol'", "src_tokens"]),
        (lambda r: r["models"]["transformer"].update(fixd={}), ["fixd", "'transformer'", "fixed"]),
        (lambda r: r["models"]["transformer"]["vary"].update(maximum=9), ["maximum", "'vary'", "max"]),
        (lambda r: r["train"].update(shortt={}), ["shortt", "schedule names", "short"]),
        (lambda r: r["train"]["short"].update(max_token=5), ["max_token", "'train: short'", "max_tokens"]),
    ],
)
def test_budget_file_with_a_misspelled_key_is_rejected(tmp_path, edit, names):
    path = _budget_file(tmp_path, edit)
    err = one_bad_line(*cli("solve", "transformer", "--budget", str(path)))
    assert str(path) in err and all(n in err for n in names), err


def test_budget_files_of_the_project_have_only_known_keys():
    for name in ("100M", "500M"):
        code, out, err = cli("solve", "lite_transformer", "--budget", name)
        assert code == 0 and "MACs" in out, err


# ------------------------------------------------------------------------------------------ corpora
def test_misaligned_corpus_fails_first_naming_both_files(tmp_path):
    corpus = write_corpus(tmp_path / "c", n_train=3000)
    lines = (corpus / "train.en").read_text().splitlines()
    (corpus / "train.en").write_text("\n".join(lines[:-1]) + "\n")
    out = tmp_path / "run"
    err = one_bad_line(*cli("train", "transformer", "--corpus", str(corpus), "--out", str(out), "--max-steps", "1"))
    assert "train.de has 3000 lines" in err and "train.en has 2999" in err, err
    assert not out.exists() and not list(corpus.glob("spm-*"))


TINY = ["--set", "d_model=32", "--set", "heads=4", "--set", "encoder_attention_heads=4", "--set", "encoder_layers=1",
        "--set", "decoder_layers=1", "--schedule", "quick", "--quiet"]


def fd_cli(capfd, *argv: str) -> tuple[int, str, str]:
    """``cli`` for commands whose libraries need real file descriptors (sentencepiece logs to fd 2)."""
    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def test_small_corpus_trains_with_a_capped_vocabulary(tmp_path, capfd):
    corpus = write_corpus(tmp_path / "c", n_train=300)
    out = tmp_path / "run"
    code, stdout, err = fd_cli(capfd, "train", "transformer", *TINY, "--corpus", str(corpus), "--out", str(out),
                                "--max-steps", "2", "--json")
    assert code == 0, err
    note = re.search(r"note: corpus \S+: vocabulary capped at (\d+) subwords \(asked for 8000\)", err)
    assert note, err
    cap = int(note.group(1))
    summary = json.loads(stdout)
    assert summary["vocab_size"] == cap and "capped" in summary["vocab_note"]
    assert json.loads((out / "train.json").read_text())["vocab_note"] == summary["vocab_note"]
    assert json.loads((out / "run.json").read_text())["vocab_size"] == cap


def test_vocab_size_option(tmp_path, capfd):
    corpus = write_corpus(tmp_path / "c", n_train=300)
    out = tmp_path / "run"
    code, _, err = fd_cli(capfd, "train", "transformer", *TINY, "--corpus", str(corpus), "--out", str(out),
                           "--max-steps", "1", "--vocab-size", "40")
    assert code == 0 and "capped" not in err, err
    assert json.loads((out / "run.json").read_text())["vocab_size"] == 40
    for argv in (["train", "transformer", "--out", str(tmp_path / "x"), "--vocab-size", "0"],
                 ["run", "--budget", "100M", "--vocab-size", "many"]):
        assert "--vocab-size must be an integer >= 5" in one_bad_line(*cli(*argv))
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ counters
@pytest.fixture
def fvcore_fails(monkeypatch):
    import bench.cost.counting as counting

    def broken(*args, **kwargs):
        raise RuntimeError("torch.jit.trace is deprecated and failed\nsecond line")

    monkeypatch.setitem(counting.RUNNERS, "fvcore", broken)


def test_a_failing_cross_check_counter_leaves_its_column_empty(fvcore_fails, tmp_path):
    from bench.report.leaderboard import build_leaderboard
    from bench.sweep.runner import Sweep, SweepOptions

    code, out, err = cli("profile", "transformer", "--budget", "100M", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert "fvcore" not in rec["macs_by_counter"] and rec["macs"] == rec["macs_by_counter"]["analytic"]
    assert "warning: transformer: fvcore failed (RuntimeError: torch.jit.trace is deprecated and failed)" in err

    logs: list[str] = []
    opts = SweepOptions(budget="100M", models=["transformer"], stages=("profile",), results_root=tmp_path,
                        log=logs.append)
    Sweep(opts).run_model("transformer")
    assert any("fvcore failed" in line for line in logs)
    df = build_leaderboard(tmp_path / "100M")
    assert df["macs_fvcore"].isna().all() and df["macs_flop_counter"].notna().all()
    assert df["macs_analytic"].iloc[0] == df["macs"].iloc[0]


def test_the_primary_counter_failing_is_still_an_error(monkeypatch):
    import bench.cost.counting as counting
    from models import create_model

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(counting.RUNNERS, "flop_counter", broken)
    with pytest.raises(RuntimeError, match="boom"):
        counting.count_macs(create_model("transformer", d_model=32, heads=4, encoder_attention_heads=4))


# ------------------------------------------------------------------------------------------ files and locks
def test_result_files_are_readable_by_others(tmp_path):
    from bench.infra.atomic import save_torch, write_json, write_text

    before = os.umask(0o077)
    try:
        paths = [write_text(tmp_path / "a.md", "x"), write_json(tmp_path / "b.json", {"a": 1}),
                 save_torch({"w": 1}, tmp_path / "c.pt")]
    finally:
        os.umask(before)
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == [oct(0o644)] * 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("which", ["run folder", "corpus build"])
def test_locks_exclude_each_other(tmp_path, which):
    from bench.data.manifest import build_lock
    from bench.infra.stage_lock import locked

    def lock():
        return locked(tmp_path / "run") if which == "run folder" else build_lock(tmp_path / "corpus")

    events: list[str] = []

    def holder():
        with lock():
            events.append("a in")
            time.sleep(0.3)
            events.append("a out")

    t = threading.Thread(target=holder)
    t.start()
    while not events:
        time.sleep(0.01)
    with lock():
        events.append("b in")
    t.join()
    assert events == ["a in", "a out", "b in"]
