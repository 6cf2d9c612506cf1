"""End to end on a real (one-node) Slurm cluster: `make test-slurm`, never part of `make test`.

Starts the cluster (scripts/slurm-local.sh: Debian's slurm-wlm and munge; needs root), runs the quick 100M sweep
with ``--executor slurm`` into a fresh folder, cancels one training job with ``scancel`` once it has written a
checkpoint, and checks: every file of the local quick sweep is there, every record names the Slurm job that
wrote it, latency jobs held their node alone while training jobs of different models ran at the same time, and
the failed job is named with its log. Then the same command again submits only the cancelled job, which resumes
from its checkpoint; no other record changes. Stops the cluster if this test started it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.budget.spec import load_budget

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
ROWS = tuple(load_budget("100M").rows())  # the families and their post-norm variants
VICTIM = "lite_transformer"  # the slowest to train: the widest window between its checkpoint and its end
FILES = ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "RUNS.md", "figures/quality_vs_macs.png",
         "figures/latency_vs_macs.png", "figures/quality_vs_latency.png")  # what CI checks of the local quick sweep
TIMEOUT_S = 3 * 3600


def _records(cores: int) -> set[str]:
    threads = sorted({1, cores})
    return {"profile.json", "train-s1.json", "eval-s1.json"} | {
        f"latency-cpu-t{t}-{w}.json" for t in threads for w in ("forward", "translate")}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (scripts/slurm-local.sh)")
    was_up = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    start = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, start.stdout + start.stderr
    yield
    if not was_up:
        stop = subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 3


def _sweep(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--budget", "100M", "--quick", "--executor", "slurm",
            "--slurm-cpus", "1", "--slurm-time", "60", "--results", str(tmp / "results"), "--cache", str(tmp / "cache")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _snapshot(runs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(runs)): p.read_bytes() for p in sorted(runs.glob("*/*.json"))}


def _folder(runs: Path, row: str) -> Path:
    (folder,) = [f for f in runs.iterdir() if f.name.rsplit("-", 1)[0] == row]
    return folder


def _span(rec: dict) -> tuple[str, str]:
    return rec["started"], rec["created"]


def _overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_quick_sweep_on_slurm_then_scancel_and_resubmit(cluster, tmp_path):
    cores = os.cpu_count() or 1
    results = tmp_path / "results" / "100M-quick"
    runs = results / "runs"

    # 1. the sweep; once the victim's training has checkpointed, scancel its job
    proc = subprocess.Popen(_sweep(tmp_path), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    victim_job, resumed_at_least = None, None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while victim_job is None or resumed_at_least is None:
            assert proc.poll() is None, "the sweep ended before the victim was cancelled:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no checkpoint of the victim's training:\n" + "".join(lines)
            for line in list(lines):
                m = re.match(rf"  job (\d+_\d+): training of {VICTIM}, seed 1$", line.rstrip())
                victim_job = m.group(1) if m else victim_job
            for ck in tmp_path.glob(f"cache/100M-quick/{VICTIM}-*/train-s1/checkpoint.pt"):
                log = [json.loads(x) for x in (ck.parent / "train.jsonl").read_text().splitlines() if x.strip()]
                resumed_at_least = max(e["step"] for e in log)
            time.sleep(0.2)
        assert not list(runs.glob(f"{VICTIM}-*/train-s1.json")), "the victim finished before it could be cancelled"
        subprocess.run(["scancel", victim_job], check=True, timeout=60)
        proc.wait(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    err = "".join(lines)
    print(err)

    # the cancelled job is named with its log; the report was built from the rest; exit 1
    assert proc.returncode == 1, err
    m = re.search(rf"error: 1 job\(s\) failed: training of {VICTIM}, seed 1 \(job {victim_job}, CANCELLED\); "
                  r"log (\S+)\. ", err)
    assert m and Path(m.group(1)).exists(), err
    for name in FILES:
        assert (results / name).stat().st_size > 0, name
    submitted = set(re.findall(r"^  job (\d+_\d+): ", err, re.MULTILINE))
    # one latency job and one training job per row, and one job for the paired latency of all rows
    assert len(submitted) == 2 * len(ROWS) + 1
    assert re.search(r"^  job \d+_\d+: paired latency$", err, re.MULTILINE), err

    # every record names its Slurm job; latency held the node alone; training of different models overlapped
    spans: dict[str, list[tuple[str, str]]] = {"latency": [], "train": []}
    train_by_row = {}
    for row in ROWS:
        folder = _folder(runs, row)
        expect = _records(cores) - ({"train-s1.json", "eval-s1.json"} if row == VICTIM else set())
        assert {p.name for p in folder.glob("*.json")} == expect, row
        recs = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
        for name, rec in recs.items():
            assert rec["job_executor"] == "slurm" and rec["job_id"] in submitted, (row, name)
            measuring = rec["stage"] in ("profile", "latency")
            assert rec["job_exclusive"] is measuring and rec["job_cpus"] == (cores if measuring else 1), (row, name)
            if rec["stage"] == "latency":
                spans["latency"].append(_span(rec))
        if row != VICTIM:
            train_by_row[row] = _span(recs["train-s1.json"])
            spans["train"].append(train_by_row[row])
            assert recs["train-s1.json"]["job_id"] == recs["eval-s1.json"]["job_id"] != recs["profile.json"]["job_id"]
    assert any(_overlap(train_by_row[a], train_by_row[b]) for a in train_by_row for b in train_by_row if a < b), \
        train_by_row
    paired = [json.loads(p.read_text()) for p in runs.glob("_compare-*/latency_compare-*.json")]
    assert paired, "no paired latency record"
    for rec in paired:
        assert rec["job_executor"] == "slurm" and rec["job_id"] in submitted and rec["job_exclusive"] is True
        spans["latency"].append(_span(rec))
    assert not any(_overlap(lat, tr) for lat in spans["latency"] for tr in spans["train"]), spans

    # 2. the same command again: only the cancelled job, resumed from its checkpoint; nothing else changes
    before = _snapshot(runs)
    again = subprocess.run(_sweep(tmp_path), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    print(again.stderr)
    assert again.returncode == 0, again.stderr
    jobs = re.findall(r"^  job (\d+_\d+|\d+): (.*)$", again.stderr, re.MULTILINE)
    assert [unit for _, unit in jobs] == [f"training of {VICTIM}, seed 1"], again.stderr
    after = _snapshot(runs)
    assert {k: v for k, v in after.items() if k in before} == before
    victim = _folder(runs, VICTIM)
    assert sorted(set(after) - set(before)) == [f"{victim.name}/eval-s1.json", f"{victim.name}/train-s1.json"]
    train = json.loads((victim / "train-s1.json").read_text())
    assert train["resumed_from_step"] >= resumed_at_least > 0 and train["stop"] in ("max_steps", "max_tokens")
    assert train["job_id"] == jobs[0][0] and train["job_id"] not in submitted
