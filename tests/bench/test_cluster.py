"""Work as cluster jobs (bench.infra.cluster): Slurm's time limits and job states read right, units grouped into job
arrays with the resources asked for (latency: a whole node), a job that fails named with its log while the
others finish, and the command line's Slurm flags checked before anything is written. Jobs run through
submitit's local executor (processes on this machine) or a fake one; the real cluster is `make test-slurm`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.infra.cluster as cluster
import bench.infra.launcher as launcher
from bench.errors import BenchError
from bench.infra.cluster import Outcome, Resources, SlurmStates, Unit, parse_states, parse_time, run_units

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ input
@pytest.mark.parametrize("text, minutes", [("90", 90), ("90:30", 91), ("1:30:00", 90), ("1-0", 1440),
                                            ("1-12:00", 2160), ("0-0:0:59", 1), (45, 45)])
def test_time_limits_read_as_slurm_reads_them(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "1h", "0", "0:00", "-5", "1:2:3:4"])
def test_bad_time_limits_are_one_line(text):
    with pytest.raises(BenchError, match="--slurm-time must be"):
        parse_time(text)


# ------------------------------------------------------------------------------------------------ states
def test_states_expand_array_ranges_and_skip_job_steps():
    text = "12_0|COMPLETED\n12_[3-5,7%2]|PENDING\n12_1|CANCELLED by 0\n12_1.batch|CANCELLED\n13|RUNNING\n\n"
    assert parse_states(text) == {"12_0": "COMPLETED", "12_3": "PENDING", "12_4": "PENDING", "12_5": "PENDING",
                                  "12_7": "PENDING", "12_1": "CANCELLED", "13": "RUNNING"}


def test_squeue_first_then_sacct_for_jobs_it_no_longer_lists():
    calls = []

    def fake(answers):
        def run(cmd):
            calls.append(cmd[0])
            return subprocess.CompletedProcess(cmd, *answers[cmd[0]])
        return run

    states = SlurmStates(fake({"squeue": (0, "7_0|RUNNING\n", ""), "sacct": (0, "7_1|TIMEOUT\n", "")}))
    assert states(["7_0", "7_1"]) == {"7_0": "RUNNING", "7_1": "TIMEOUT"}
    assert calls == ["squeue", "sacct"]
    calls.clear()
    states = SlurmStates(fake({"squeue": (0, "7_0|RUNNING\n", ""),
                               "sacct": (1, "", "Slurm accounting storage is disabled")}))
    assert states(["7_0", "7_1"]) == {"7_0": "RUNNING"}  # 7_1: not known yet, so still pending
    assert states(["7_0", "7_1"]) == {"7_0": "RUNNING"}
    assert calls == ["squeue", "sacct", "squeue"]  # a cluster without accounting is asked once


# ------------------------------------------------------------------------------------------------ units
def succeed(value):
    return {"value": value}


def fail_with_error(what):
    raise BenchError(f"{what} is out of range")


def die_without_result():
    os.kill(os.getpid(), signal.SIGKILL)  # what scancel or a time limit does to a job: no result file


@pytest.fixture
def by_value():
    """This module's functions travel to the job processes by value (the jobs cannot import a test module)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_failed_job_is_named_with_its_log_and_the_others_finish(tmp_path, monkeypatch, by_value):
    monkeypatch.setattr(cluster, "GRACE_S", 0.0)
    units = [Unit("first", "train", succeed, (1,)), Unit("broken", "train", fail_with_error, ("x",)),
             Unit("killed", "train", die_without_result), Unit("last", "train", succeed, (4,))]
    log: list[str] = []
    outcomes = run_units(units, "submitit-local", tmp_path / "logs", Resources(time_min=5), log.append, poll_s=0.2)
    assert [o.unit.name for o in outcomes] == ["first", "broken", "killed", "last"]
    assert [o.status for o in outcomes] == ["done", "failed", "failed", "done"]
    assert outcomes[0].result == {"value": 1} and outcomes[3].result == {"value": 4}
    broken, killed = outcomes[1], outcomes[2]
    assert broken.error == "bench.errors.BenchError: x is out of range"
    # submitit's local controller outlives the killed task and says FINISHED: no result file makes it a failure
    assert killed.state == "FINISHED" and killed.error == "ended without a result"
    for o in (broken, killed):
        assert o.log is not None and o.log.exists() and o.log.parent == tmp_path / "logs"
        assert any(line.startswith("  failed: ") and str(o.log) in line for line in log)
    assert log[-1] == "jobs: 0 pending, 0 running, 2 done, 2 failed (of 4)"


class FakeJob:
    def __init__(self, folder: Path, job_id: str) -> None:
        from submitit.core.utils import JobPaths

        self.job_id, self.paths = job_id, JobPaths(folder, job_id=job_id, task_id=0)


class FakeSlurm:
    """What run_units asks of submitit: executors for arrays (their parameters kept), jobs that write their
    result files when a test says so."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.arrays, self.next_id = folder, [], 40

    def executor(self, kind, folder, **params):
        fake = self

        class Executor:
            def batch(self):
                import contextlib

                return contextlib.nullcontext()

            def submit(self, fn, *args):
                if not fake.arrays or fake.arrays[-1]["open"] is not self:
                    fake.next_id += 1
                    fake.arrays.append({"open": self, "params": params, "units": []})
                array = fake.arrays[-1]
                job = FakeJob(Path(folder), f"{fake.next_id}_{len(array['units'])}")
                array["units"].append((fn, args, job))
                return job

        return Executor()

    def finish(self, job, outcome, value):
        from submitit.core.utils import cloudpickle_dump

        job.paths.folder.mkdir(parents=True, exist_ok=True)
        cloudpickle_dump((outcome, value), job.paths.result_pickle)


def test_latency_goes_first_as_its_own_exclusive_array_and_flags_reach_sbatch(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path)
    monkeypatch.setattr(launcher, "submitit_executor", fake.executor)
    units = [Unit("training of a", "train", succeed), Unit("latency of a", "latency", succeed, exclusive=True),
             Unit("training of b", "train", succeed), Unit("latency of b", "latency", succeed, exclusive=True)]
    polls = []

    def states(ids):  # first poll: everything pending; then each job finishes (one cancelled by Slurm)
        polls.append(sorted(ids))
        if len(polls) == 1:
            return dict.fromkeys(ids, "PENDING")
        for *_, job in (u for a in fake.arrays for u in a["units"]):
            if job.job_id in ids and job.job_id != "42_1":
                fake.finish(job, "success", "ok")
        return {"42_1": "CANCELLED"} if "42_1" in ids else {}

    monkeypatch.setattr(cluster, "SlurmStates", lambda: states)
    log: list[str] = []
    res = Resources(partition="gpu,cpu", cpus=3, time_min=90, gpus=1)
    outcomes = run_units(units, "slurm", tmp_path, res, log.append, poll_s=0)
    first, second = fake.arrays
    assert [u[2].job_id for u in first["units"]] == ["41_0", "41_1"]
    assert [u[0] for u in first["units"]] == [succeed, succeed]
    assert first["params"] == dict(partition="gpu,cpu", time_min=90, cpus=None, gpus=1, exclusive=True,
                                   name="litebench-latency")
    assert second["params"] == dict(partition="gpu,cpu", time_min=90, cpus=3, gpus=1, exclusive=False,
                                    name="litebench-train")
    assert [o.unit.name for o in outcomes] == ["training of a", "latency of a", "training of b", "latency of b"]
    assert [(o.job_id, o.status) for o in outcomes] == [("42_0", "done"), ("41_0", "done"), ("42_1", "failed"),
                                                        ("41_1", "done")]
    assert outcomes[2].describe() == f"training of b (job 42_1, CANCELLED); log {tmp_path / '42_1_0_log.err'}"
    assert log[:3] == [f"submitted 2 latency job(s) as job array 41 (a whole node each, 90 min, 1 GPU(s), partition "
                       f"gpu,cpu); logs in {tmp_path}", "  job 41_0: latency of a", "  job 41_1: latency of b"]
    assert "jobs: 4 pending, 0 running, 0 done, 0 failed (of 4)" in log


def test_the_executor_asks_slurm_for_what_each_array_needs(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun needed here
    ex = launcher.submitit_executor("slurm", tmp_path, partition="p", time_min=30, exclusive=True, name="n")
    text = ex._make_submission_file_text("cmd", "uid")
    assert "#SBATCH --exclusive" in text and "#SBATCH --partition=p" in text and "#SBATCH --time=30" in text
    assert "--cpus-per-task" not in text and "gpus" not in text
    ex = launcher.submitit_executor("slurm", tmp_path, cpus=4, gpus=2, name="n")
    text = ex._make_submission_file_text("cmd", "uid")
    assert "#SBATCH --cpus-per-task=4" in text and "#SBATCH --gpus-per-node=2" in text
    assert "exclusive" not in text and "partition" not in text


# ------------------------------------------------------------------------------------------------ command line
def _fake_slurm_commands(folder: Path, partitions: str) -> str:
    """A PATH with sbatch, squeue and sinfo that answer like a cluster with ``partitions``."""
    folder.mkdir()
    for name, body in (("sbatch", "exit 1"), ("squeue", "exit 0"), ("sinfo", f"printf '{partitions}\\n'")):
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("args, message", [
    (["--slurm-cpus", "2"], "--slurm-cpus: only with --executor slurm"),
    (["--executor", "submitit-local", "--slurm-time", "10"], "--slurm-time: only with --executor slurm"),
    (["--executor", "pbs"], "unknown --executor 'pbs'; valid: local, slurm, submitit-local"),
    (["--executor", "slurm", "--slurm-time", "soon"], "--slurm-time must be minutes or"),
    (["--executor", "slurm", "--slurm-cpus", "0"], "--slurm-cpus must be an integer >= 1, got '0'"),
    (["--executor", "slurm", "--slurm-gpus", "-1"], "--slurm-gpus must be an integer >= 0"),
    (["--executor", "slurm", "--slurm-partition", "a b"], "--slurm-partition must be partition names"),
    (["--executor", "slurm"], "--executor slurm: no sbatch/squeue here"),
    (["--executor", "slurm", "--slurm-partition", "gpu"], "--slurm-partition gpu: no partition gpu on this "
                                                          "cluster; it has: cpu, debug"),
])
def test_bad_slurm_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    path = os.environ["PATH"]
    if "--slurm-partition" in args and "gpu" in args:
        path = _fake_slurm_commands(tmp_path / "bin", "debug\\ncpu")
    elif args[-1] == "slurm":
        path = str(Path(sys.executable).parent)  # no Slurm commands on it
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bench", "run", "--budget", "100M", "--quick", "--results", str(tmp_path / "r"),
           "--cache", str(tmp_path / "c"), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_failed_jobs_end_the_run_with_exit_1_after_the_report(tmp_path, monkeypatch, capsys):
    import bench.sweep.jobs as sweep_jobs
    import bench.sweep.runner as runner
    from bench.cli import main

    report = tmp_path / "leaderboard.md"
    unit = Unit("training of transformer, seed 1", "train", succeed)
    failed = [Outcome(unit, "8_1", "failed", "TIMEOUT", tmp_path / "8_1_0_log.err")]
    monkeypatch.setattr(sweep_jobs, "run_jobs", lambda sweep: failed)
    monkeypatch.setattr(runner.Sweep, "report", lambda self: [report])
    monkeypatch.setattr(runner.Sweep, "_write_manifest", lambda self, wall: None)
    assert main(["run", "--budget", "100M", "--quick", "--executor", "submitit-local",
                 "--results", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"wrote {report}\n"
    assert err.startswith("error: 1 job(s) failed: training of transformer, seed 1 (job 8_1, TIMEOUT); log "
                          f"{tmp_path / '8_1_0_log.err'}. The report has the rest") and err.count("\n") == 1


def test_job_info_names_the_slurm_job(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert cluster.job_info() == {}
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    for key, value in {"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "50", "SLURM_ARRAY_TASK_ID": "7",
                       "SLURMD_NODENAME": "n3", "SLURM_CPUS_ON_NODE": "16", "SLURM_JOB_PARTITION": "cpu",
                       "SLURM_CPUS_PER_TASK": "4"}.items():
        monkeypatch.setenv(key, value)
    assert cluster.job_info(exclusive=True) == {"job_executor": "slurm", "job_id": "50_7", "job_node": "n3",
                                                "job_cpus": 16, "job_partition": "cpu", "job_exclusive": True}
    assert cluster.job_cpus() == 4


def test_a_slow_state_query_does_not_hide_a_result(tmp_path, monkeypatch):
    """A job whose result file is there is done, whatever the scheduler says about it yet."""
    fake = FakeSlurm(tmp_path)
    monkeypatch.setattr(launcher, "submitit_executor", fake.executor)
    polls = []

    def running(ids):
        polls.append(ids)
        assert len(polls) < 3, "still waiting for a job whose result is there"
        return dict.fromkeys(ids, "RUNNING")

    tracked = cluster.submit([Unit("u", "train", succeed)], "slurm", tmp_path, Resources(), lambda m: None)
    tracked[0].submitted = time.time()
    fake.finish(tracked[0].job, "success", 3)
    (outcome,) = cluster.wait(tracked, "slurm", lambda m: None, poll_s=0, states=running)
    assert outcome.ok and outcome.result == 3
