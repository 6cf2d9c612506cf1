"""Two sweeps started at once in one checkout (two `python -m bench run` processes on the toy corpus and a tiny
budget, the second with its models in the other order, so that while one trains a model the other reaches the
latency stages of the other model): every stage runs exactly once, and no latency record's span overlaps any
other stage's span of either sweep. The real-size check (100M models, the machine's own lock folder) is
scripts/check-latency-isolation.sh."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.records.spans import latency_overlaps, stage_runs, stage_spans
from tests.bench.test_sweep_resume import BUDGET, COMPARE_RECORDS, MODELS, RECORDS
from tests.toy_corpus import write_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_two_sweeps_at_once_run_each_stage_once_and_never_time_beside_compute(tmp_path):
    budget = tmp_path / "tiny.yaml"
    budget.write_text(BUDGET.format(dropout=0.1))
    corpus = write_corpus(tmp_path / "toy")
    argv = [sys.executable, "-m", "bench", "run", "--budget", str(budget), "--quick", "--corpus", str(corpus),
            "--threads", "1", "--stages", "profile,latency,train,evaluate", "--results", str(tmp_path / "results"),
            "--cache", str(tmp_path / "cache")]
    orders = [",".join(MODELS), ",".join(reversed(MODELS))]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    logs = [open(tmp_path / f"sweep{i}.log", "w") for i in (1, 2)]  # noqa: SIM115
    try:
        procs = [subprocess.Popen([*argv, "--models", order], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                  stderr=log) for order, log in zip(orders, logs)]
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for log in logs:
            log.close()
    texts = [(tmp_path / f"sweep{i}.log").read_text() for i in (1, 2)]
    assert codes == [0, 0], texts

    results = tmp_path / "results" / "tiny-quick"
    n_records = len(MODELS) * len(RECORDS) + len(COMPARE_RECORDS)
    spans, without = stage_spans([results])
    assert without == [] and len(spans) == n_records
    assert latency_overlaps(spans) == []  # the exclusive lock at work
    assert {s.stage for s in spans} == {"profile", "latency", "latency_compare", "train", "eval"}

    ran: collections.Counter = collections.Counter()
    skipped: collections.Counter = collections.Counter()
    for text in texts:
        for (section, stage, what), n in stage_runs(text).items():
            (ran if what == "ran" else skipped)[section, stage] += n
    assert sum(ran.values()) == n_records and set(ran.values()) == {1}  # each stage ran once, by one sweep
    assert skipped == ran  # and the other sweep found it done
