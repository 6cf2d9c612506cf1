"""results/tasks.md (bench.report.tasks): the families' order across tasks, on synthetic records whose
per-sentence validation NLLs put the pairs in a known order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli.sweep import cmd_report
from bench.report.tasks import _pair_diff, _separation, task_folders, tasks_summary, verdict
from tests.bench.test_report import _parse, make_results

SENTENCES = 60


def _with_sentences(folder: Path, level: dict[str, float], noise: float = 0.05) -> None:
    """Give every eval record per-sentence NLLs: ``level[model]`` nats per token plus seeded noise."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 20, SENTENCES)
    for path in sorted(folder.glob("runs/*/eval-s*.json")):
        rec = json.loads(path.read_text())
        per_token = level[rec["model"]] + noise * rng.standard_normal(SENTENCES)
        rec["valid_sentence_nll"] = (per_token * tokens).tolist()
        rec["valid_sentence_tokens"] = tokens.tolist()
        path.write_text(json.dumps(rec))


def test_separation_and_verdict_by_hand():
    assert _separation({"diff": -0.2, "ci95": [-0.3, -0.1], "p_value": 0.001}) == -1
    assert _separation({"diff": 0.2, "ci95": [0.1, 0.3], "p_value": 0.001}) == 1
    assert _separation({"diff": -0.2, "ci95": [-0.3, 0.01], "p_value": 0.001}) == 0  # interval holds 0
    assert _separation({"diff": -0.2, "ci95": [-0.3, -0.1], "p_value": 0.06}) == 0  # p too large
    assert _separation(None) == 0
    assert _separation({"diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": float("nan")}) == 0
    assert verdict({"t": -1, "s": -1}, "A", "B") == "A ahead in every task"
    assert verdict({"t": 1, "s": 0}, "A", "B") == "B ahead in t; not separated in s"
    assert verdict({"t": -1, "s": None}, "A", "B") == "A ahead in t; no interval in s"
    assert verdict({"t": -1, "s": 0, "l": None}, "A", "B") == "A ahead in t; not separated in s; no interval in l"
    assert verdict({"t": -1, "s": 1, "l": 0}, "A", "B") == "reverses: A ahead in t, B in s"
    assert verdict({"t": 0, "s": 0}, "A", "B") == "not separated in t, s"
    assert verdict({"t": 0, "s": None}, "A", "B") == "not separated in t; no interval in s"
    assert verdict({"t": None}, "A", "B") == "no interval"
    rows = [{"a": "x", "b": "y", "valid_nll": {"diff": 0.5, "ci95": [0.2, 0.7], "p_value": 0.01}}]
    assert _pair_diff(rows, "y", "x") == {"diff": -0.5, "ci95": [-0.7, -0.2], "p_value": 0.01}
    assert _pair_diff(rows, "x", "z") is None


def test_the_summary_names_a_reversal_and_a_held_order(tmp_path):
    # 100M: translation has Lite ahead by 0.15 nats, language modelling the Transformer ahead: a reversal.
    # 500M: both tasks put Lite ahead: the order holds. A lone 200M translation folder is not summarised.
    _with_sentences(make_results(tmp_path, "100M"), {"transformer": 2.10, "lite_transformer": 1.95})
    _with_sentences(make_results(tmp_path, "100M-lm", task="lm"), {"transformer": 3.0, "lite_transformer": 3.2})
    _with_sentences(make_results(tmp_path, "500M", scale=5), {"transformer": 2.0, "lite_transformer": 1.8})
    _with_sentences(make_results(tmp_path, "500M-lm", task="lm", scale=5), {"transformer": 3.1,
                                                                            "lite_transformer": 2.9})
    make_results(tmp_path, "200M", scale=2)
    make_results(tmp_path, "100M-quick")
    assert {b: sorted(f) for b, f in task_folders(tmp_path).items()} == {
        "100M": ["lm", "mt"], "200M": ["mt"], "500M": ["lm", "mt"]}
    text = tasks_summary(tmp_path)
    assert "## 100M" in text and "## 500M" in text and "## 200M" not in text
    assert text.index("## 100M") < text.index("## 500M")
    m100 = text[text.index("## 100M"):text.index("## 500M")]
    m500 = text[text.index("## 500M"):]
    row = next(line for line in m100.splitlines() if line.startswith("| Lite Transformer | Transformer |"))
    assert "reverses: Lite Transformer ahead in translation, Transformer in language modelling" in row
    assert "**The order changes across tasks** at 100M: Lite Transformer vs Transformer" in m100
    cells = [c.strip() for c in row.strip("|").split("|")]
    mt_diff = float(cells[2].split(" ")[0])  # translation first, as TASKS orders them
    assert mt_diff == pytest.approx(-0.15, abs=0.02) and float(cells[3].split(" ")[0]) == pytest.approx(0.2,
                                                                                                        abs=0.02)
    assert "Lite Transformer ahead in every task" in m500 and "No pair reverses across tasks at 500M" in m500
    # each task's own quality figure sits beside its NLL; the untrained family has no numbers
    assert "BLEU 22.45 ± 0.64" in m100 and "perplexity " in m100
    assert "| Evolved Transformer |" not in m100


def test_the_report_writes_tasks_md_only_when_a_budget_has_two_tasks(tmp_path):
    root = tmp_path / "results"
    make_results(root, "100M")
    assert cmd_report(_parse(["--budget", "100M", "--results", str(root)])) == 0
    assert not (root / "tasks.md").exists()
    make_results(root, "100M-lm", task="lm")
    assert cmd_report(_parse(["--budget", "100M", "--task", "lm", "--results", str(root)])) == 0
    text = (root / "tasks.md").read_text()
    # no per-sentence data in these records: the pair has no interval, said so rather than guessed
    assert "## 100M" in text and "| Lite Transformer | Transformer | – | – | no interval |" in text
    assert "**Cannot tell at 100M**: no pair of families has an interval in two tasks." in text

    # a broken record in another task's folder costs the summary, not the report of this budget
    (tasks := root / "tasks.md").unlink()
    next((root / "100M-lm" / "runs").glob("*/profile.json")).write_text("{")
    assert cmd_report(_parse(["--budget", "100M", "--results", str(root)])) == 0
    assert (root / "100M" / "leaderboard.md").exists() and not tasks.exists()
