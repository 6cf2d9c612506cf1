"""The sweep and the tuning as cluster jobs (``--executor slurm|submitit-local``): which units are submitted
(only those without records; a model's latency as a whole-node job), what the records of a job say about it,
and a real sweep through submitit's local executor. The same on a real Slurm: `make test-slurm`."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

import bench.sweep.jobs as sweep_jobs
import bench.train.trials as trials
import bench.train.tune as tune
from bench.infra.cluster import JobsFailed, Outcome
from bench.sweep.runner import Sweep
from tests.bench.test_sweep_resume import BUDGET, count_stages, options
from tests.toy_corpus import write_corpus

SLURM_ENV = ("SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_ON_NODE",
             "SLURMD_NODENAME", "SLURM_CPUS_PER_TASK", "SLURM_JOB_PARTITION")


@pytest.fixture(autouse=True)
def torch_threads():
    """A job sets torch's threads to its CPUs; jobs run in this process here, so the tests put them back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jobs")
    budget = root / "tiny.yaml"
    budget.write_text(BUDGET.format(dropout=0.1))
    return {"budget": budget, "corpus": write_corpus(root / "toy")}


class FakeCluster:
    """run_units as Slurm would run it, in this process: array 9, task i, a whole node (2 CPUs) for an
    exclusive unit, 1 CPU otherwise; ``fail`` names units whose job Slurm cancels before they start."""

    def __init__(self, monkeypatch, fail: tuple[str, ...] = ()) -> None:
        self.mp, self.fail, self.submitted = monkeypatch, fail, []

    def __call__(self, units, executor, folder, resources, log, poll_s=10.0):
        self.submitted.append([(u.name, u.kind, u.exclusive) for u in units])
        out = []
        for i, u in enumerate(units):
            if u.name in self.fail:
                out.append(Outcome(u, f"9_{i}", "failed", "CANCELLED", Path(folder) / f"9_{i}_0_log.err"))
                continue
            env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": str(100 + i), "SLURM_ARRAY_JOB_ID": "9",
                   "SLURM_ARRAY_TASK_ID": str(i), "SLURM_CPUS_ON_NODE": "2" if u.exclusive else "1",
                   "SLURMD_NODENAME": "node1", "SLURM_CPUS_PER_TASK": "1", "SLURM_JOB_PARTITION": "cpu"}
            for k, v in env.items():
                self.mp.setenv(k, v)
            try:
                out.append(Outcome(u, f"9_{i}", "done", "COMPLETED", result=u.fn(*u.args)))
            finally:
                for k in SLURM_ENV:
                    self.mp.delenv(k, raising=False)
        return out


def test_units_without_records_are_submitted_and_their_records_name_the_job(toy, tmp_path, monkeypatch):
    fake = FakeCluster(monkeypatch)
    monkeypatch.setattr(sweep_jobs, "run_units", fake)
    calls = count_stages(monkeypatch)
    opts = options(tmp_path, toy["budget"], toy["corpus"], seeds=[1, 2], executor="slurm")
    monkeypatch.setattr(sweep_jobs, "check_cluster", lambda partition: None)
    sweep = Sweep(opts)
    sweep.run_model = None  # the submitting process runs no stage itself
    sweep.run()
    assert fake.submitted == [[
        ("latency of transformer", "latency", True), ("training of transformer, seed 1", "train", False),
        ("training of transformer, seed 2", "train", False), ("latency of lite_transformer", "latency", True),
        ("training of lite_transformer, seed 1", "train", False),
        ("training of lite_transformer, seed 2", "train", False),
        ("paired latency", "latency", True)]]  # every model timed side by side: one more exclusive job
    assert calls == {**{(s, m): n for m in ("lite_transformer", "transformer")
                        for s, n in (("profile", 1), ("latency", 2), ("train", 2), ("evaluate", 2))},
                     ("latency_compare", "transformer+lite_transformer"): 2}
    runs = tmp_path / "results" / "tiny-quick" / "runs"
    for folder in runs.iterdir():
        if folder.name.startswith("_compare"):  # the paired comparison: its own exclusive job, the last one
            for path in folder.glob("*.json"):
                rec = json.loads(path.read_text())
                assert rec["job_id"] == "9_6" and rec["job_exclusive"] is True, path
            continue
        job_of = {"transformer": {"latency": 0, "train-s1": 1, "train-s2": 2},
                  "lite_transformer": {"latency": 3, "train-s1": 4, "train-s2": 5}}[folder.name.rsplit("-", 1)[0]]
        for path in folder.glob("*.json"):
            rec = json.loads(path.read_text())
            unit = "latency" if rec["stage"] in ("profile", "latency") else f"train-s{rec['seed']}"
            assert rec["job_id"] == f"9_{job_of[unit]}" and rec["job_executor"] == "slurm", path
            assert rec["job_exclusive"] is (unit == "latency") and rec["job_cpus"] == (2 if unit == "latency" else 1)
            assert rec["job_node"] == "node1" and rec["started"] <= rec["created"]
            assert rec["command"] == sweep.command  # the sweep's command line, not the job's
    assert (tmp_path / "results" / "tiny-quick" / "leaderboard.csv").exists()

    # the same sweep again: every unit has its records, nothing is submitted
    again = Sweep(options(tmp_path, toy["budget"], toy["corpus"], seeds=[1, 2], executor="slurm"))
    again.run()
    assert len(fake.submitted) == 1 and again.failed == []

    # one training record lost (a job killed before it wrote it): that unit alone, and in it that stage alone
    (lost,) = runs.glob("transformer-*/train-s2.json")
    lost.unlink()
    calls.clear()
    Sweep(options(tmp_path, toy["budget"], toy["corpus"], seeds=[1, 2], executor="slurm")).run()
    assert fake.submitted[-1] == [("training of transformer, seed 2", "train", False)]
    assert calls == {("train", "transformer"): 1}
    assert json.loads(lost.read_text())["job_id"] == "9_0"

    # --force submits every unit again
    Sweep(options(tmp_path, toy["budget"], toy["corpus"], seeds=[1, 2], executor="slurm", force=True)).run()
    assert len(fake.submitted[-1]) == 7  # six per-model units and the paired comparison


def test_a_cancelled_job_leaves_the_sweep_failed_and_the_others_written(toy, tmp_path, monkeypatch):
    fake = FakeCluster(monkeypatch, fail=("training of transformer, seed 1",))
    monkeypatch.setattr(sweep_jobs, "run_units", fake)
    monkeypatch.setattr(sweep_jobs, "check_cluster", lambda partition: None)
    count_stages(monkeypatch)
    sweep = Sweep(options(tmp_path, toy["budget"], toy["corpus"], executor="slurm"))
    sweep.run()
    assert [o.unit.name for o in sweep.failed] == ["training of transformer, seed 1"]
    runs = tmp_path / "results" / "tiny-quick" / "runs"
    assert len(list(runs.glob("lite_transformer-*/train-s1.json"))) == 1
    assert list(runs.glob("transformer-*/train-s1.json")) == []
    message = str(sweep_jobs.failure_message(sweep.failed))
    assert message.startswith("1 job(s) failed: training of transformer, seed 1 (job 9_1, CANCELLED); log ")
    assert "9_1_0_log.err" in message


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_a_sweep_through_submitits_local_executor(toy, tmp_path):
    """Real stages in real job processes: the records say which job wrote them, the report is built."""
    opts = options(tmp_path, toy["budget"], toy["corpus"], executor="submitit-local", models=["transformer"],
                   stages=("profile", "train", "evaluate"), poll_s=0.5)
    log: list[str] = []
    opts.log = log.append
    sweep = Sweep(opts)
    written = sweep.run()
    assert sweep.failed == []
    results = tmp_path / "results" / "tiny-quick"
    assert results / "leaderboard.csv" in written and (results / "RUNS.md").exists()
    ids = {line.split()[1].rstrip(":"): line.split(": ", 1)[1] for line in log if line.startswith("  job ")}
    assert sorted(ids.values()) == ["profile of transformer", "training of transformer, seed 1"]
    by_unit = {v: k for k, v in ids.items()}
    (folder,) = (results / "runs").iterdir()
    records = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert set(records) == {"profile.json", "train-s1.json", "eval-s1.json"}
    assert records["profile.json"]["job_id"] == by_unit["profile of transformer"]
    assert records["train-s1.json"]["job_id"] == records["eval-s1.json"]["job_id"] == \
        by_unit["training of transformer, seed 1"]
    assert {r["job_executor"] for r in records.values()} == {"submitit-local"}
    assert all(r["started"] <= r["created"] for r in records.values())
    progress = [line for line in log if line.startswith("jobs: ")]
    assert (results / "submitit").is_dir() and progress[-1] == "jobs: 0 pending, 0 running, 2 done, 0 failed (of 2)"


def test_tuning_trials_are_jobs_of_one_array(toy, tmp_path, monkeypatch):
    fake = FakeCluster(monkeypatch)
    monkeypatch.setattr(trials, "run_units", fake)
    trained = collections.Counter()

    def fake_train(family, config, schedule, task, corpus, seed, out):
        trained[schedule["lr"]] += 1
        return {"valid_nll": 5.0 - 1000 * schedule["lr"], "train_tokens": schedule["max_tokens"], "stop": "max_tokens"}

    monkeypatch.setattr(tune, "train_trial", fake_train)
    kwargs = dict(task="mt", grid=(1e-3, 2e-3), models=["transformer"], tokens_per_trial=500, corpus=str(toy["corpus"]),
                  results_root=tmp_path / "results", cache_root=tmp_path / "cache", executor="submitit-local",
                  log=lambda m: None)
    res = tune.tune(str(toy["budget"]), **kwargs)
    assert res["chosen"]["transformer"]["lr"] == 2e-3 and trained == {1e-3: 1, 2e-3: 1}
    assert [[(name.split("-lr")[0], kind) for name, kind, _ in units] for units in fake.submitted] == \
        [[("tuning trial transformer", "tune")] * 2]
    records = sorted((tmp_path / "results" / "tiny" / "tuning").glob("transformer-*.json"))
    assert [json.loads(p.read_text())["job_id"] for p in records] == ["9_0", "9_1"]
    assert all(json.loads(p.read_text())["threads"] == 1 for p in records)
    records[1].unlink()
    tune.tune(str(toy["budget"]), **kwargs)
    assert len(fake.submitted[-1]) == 1 and trained == {1e-3: 1, 2e-3: 2}

    records[1].unlink()
    monkeypatch.setattr(trials, "run_units", FakeCluster(monkeypatch, fail=(fake.submitted[-1][0][0],)))
    with pytest.raises(JobsFailed, match=r"1 tuning trial\(s\) failed: tuning trial transformer-lr0.002-"):
        tune.tune(str(toy["budget"]), **kwargs)
