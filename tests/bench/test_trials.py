"""The trial runner that tuning and the shape search share (bench.train.trials): one record per trial, written
once under the trial's lock; a diverged trial is a finished one; any other failure stops the search."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import bench.train.trials as trials
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def torch_threads():
    """A job's body sets torch's threads to the job's CPUs; put them back for the tests after these."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class _Trial:
    name: str
    family: str = "transformer"
    config: dict = field(default_factory=dict)
    schedule: object = None


def _record(summary, started, threads=1):
    return {"valid_nll": summary.get("valid_nll"), "error": summary.get("error"), "threads": threads,
            "started": started.isoformat()}


def _local(folder: Path, log: list[str], train):
    def one(trial):
        return trials.local_trial(trial, folder / f"{trial.name}.json", log.append, f"  {trial.name}: training",
                                  lambda: train(trial), _record)
    return one


def test_two_searches_at_once_train_each_trial_once(tmp_path, monkeypatch):
    """Two searches over the same trials started together: each trial trains once, the other search waits for
    its lock and reads the record. A trial's training waits until the other search has reached that trial's
    lock, so the two always overlap."""
    calls: list[str] = []
    reached: dict[str, int] = {}
    real = trials.locked

    def counted(folder, stage=""):
        reached[stage] = reached.get(stage, 0) + 1
        return real(folder, stage)

    monkeypatch.setattr(trials, "locked", counted)

    def train(trial):
        calls.append(trial.name)
        deadline = time.monotonic() + 10
        while reached.get(trial.name, 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reached[trial.name] == 2, "the other search never reached the lock"
        return {"valid_nll": float(len(trial.name))}

    todo = [_Trial("a"), _Trial("bb")]
    logs: list[list[str]] = [[], []]
    out: list[list[dict]] = [[], []]

    def search(i):
        out[i] = trials.run(todo, tmp_path, executor="local", jobs=2, local=_local(tmp_path, logs[i], train),
                            job=None, job_args=None, stage="t", what="trial", logs=tmp_path / "logs", resources=None,
                            log=logs[i].append)

    threads = [threading.Thread(target=search, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == ["a", "bb"]
    assert out[0] == out[1] and [r["valid_nll"] for r in out[0]] == [1.0, 2.0]
    assert sum("done before, skipped" in m for m in logs[0] + logs[1]) == 2
    assert "  bb: valid NLL 2.000" in logs[0] + logs[1]


def test_a_diverged_trial_is_recorded_and_any_other_failure_stops(tmp_path):
    log: list[str] = []

    def diverges(trial):
        raise BenchError("training diverged at step 12 (loss nan)")

    (rec,) = trials.run([_Trial("x")], tmp_path, executor="local", jobs=1, local=_local(tmp_path, log, lambda t:
                        trials.diverged_as_error(lambda: diverges(t))), job=None, job_args=None, stage="t",
                        what="trial", logs=tmp_path, resources=None, log=log.append)
    assert rec["valid_nll"] is None and "diverged" in rec["error"]
    assert json.loads((tmp_path / "x.json").read_text()) == rec and log[-1] == f"  x: {rec['error']}"

    def breaks():
        raise BenchError("corpus: no such file")

    with pytest.raises(BenchError, match="no such file"):
        trials.diverged_as_error(breaks)
    with pytest.raises(BenchError, match="no such file"):
        trials.job_trial(tmp_path / "y.json", breaks, _record)
    assert not (tmp_path / "y.json").exists()


def test_a_job_writes_its_record_once(tmp_path):
    calls = []

    def train():
        calls.append(1)
        return {"valid_nll": 3.25}

    first = trials.job_trial(tmp_path / "z.json", train, _record)
    again = trials.job_trial(tmp_path / "z.json", train, _record)
    assert first == again and first["valid_nll"] == 3.25 and first["threads"] >= 1 and calls == [1]
