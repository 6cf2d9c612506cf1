"""scripts/park-runs.sh: an unfinished run crosses to a fresh clone through the repository and resumes there to the
uninterrupted run's weights; finished runs are never parked; nothing is overwritten."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tests.bench.test_train import corpus, trainer  # noqa: F401  (the toy corpus fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "park-runs.sh"
RUN = Path("100M-x16") / "transformer-0123456789" / "train-s1"


def park(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=root, capture_output=True, text=True, timeout=60)


def test_a_parked_run_resumes_on_a_fresh_clone_to_the_uninterrupted_weights(corpus, tmp_path):  # noqa: F811
    full = trainer(corpus, tmp_path / "full")
    full.run(resume=False)
    old, new = tmp_path / "old-machine", tmp_path / "fresh-clone"
    assert trainer(corpus, old / ".cache" / "runs" / RUN).run(resume=False, stop_at_step=5)["stop"] == "interrupted"
    (old / "results").mkdir(parents=True)
    out = park(old, "save")
    assert out.returncode == 0 and f"parked {RUN}" in out.stdout, out.stderr
    # the fresh clone: what was committed (parked/ and results/), no .cache
    shutil.copytree(old / "parked", new / "parked")
    (new / "results").mkdir()
    out = park(new, "restore")
    assert out.returncode == 0 and f"restored {RUN}" in out.stdout, out.stderr
    again = trainer(corpus, new / ".cache" / "runs" / RUN)
    summary = again.run(resume=True)
    assert summary["resumed_from_steps"] == [5] and again.state.step == full.state.step
    for (name, p), (_, q) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p, q), name


def write_run(root: Path, run: Path, step: int, done: bool = False) -> None:
    folder = root / ".cache" / "runs" / run
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint.pt").write_bytes(b"checkpoint %d" % step)
    (folder / "train.jsonl").write_text(f'{{"step": {step}, "tokens": 1}}\n')
    (folder / "run.json").write_text("{}")
    if done:  # the trainer writes train.json at the end of the schedule only
        (folder / "train.json").write_text("{}")


def test_only_unfinished_runs_are_parked_restore_never_overwrites_and_drop_follows_the_records(tmp_path):
    (tmp_path / "results").mkdir()
    done = Path("100M-x4") / "lite_transformer-abcdef0123" / "train-s2"
    record_done = Path("500M") / "transformer-0c87f46dc3" / "train-s1"  # its record moved aside: train.json says
    ablation = Path("100M-ablations") / "lite-kernel1-0123456789" / "train-s1"
    write_run(tmp_path, RUN, 900)
    write_run(tmp_path, done, 8000)
    write_run(tmp_path, record_done, 2000, done=True)
    write_run(tmp_path, ablation, 2100)
    for rec in (tmp_path / "results" / "100M-x4" / "runs" / "lite_transformer-abcdef0123" / "train-s2.json",
                tmp_path / "results" / "100M" / "ablations" / "runs" / "lite-kernel1-0123456789" / "train-s1.json"):
        rec.parent.mkdir(parents=True)
        rec.write_text("{}")
    out = park(tmp_path, "save")
    assert out.returncode == 0 and "1 unfinished run(s) parked" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "parked" / RUN / "checkpoint.pt").read_bytes() == b"checkpoint 900"
    assert sorted(p.parent.relative_to(tmp_path / "parked").as_posix()
                  for p in (tmp_path / "parked").rglob("checkpoint.pt")) == [RUN.as_posix()]
    out = park(tmp_path, "list")
    assert out.returncode == 0 and "log to update 900" in out.stdout and "1 run(s) parked" in out.stdout
    # restore next to a newer local checkpoint keeps the local one
    write_run(tmp_path, RUN, 950)
    out = park(tmp_path, "restore")
    assert out.returncode == 0 and "already holds a checkpoint" in out.stdout
    assert "0 parked run(s) restored" in out.stdout
    assert (tmp_path / ".cache" / "runs" / RUN / "checkpoint.pt").read_bytes() == b"checkpoint 950"
    # a fresh clone that forgot to restore and started the run again: its save keeps the parked copy further along
    (tmp_path / "parked" / RUN / "train.jsonl").write_text('{"step": 12000, "tokens": 1}\n')
    out = park(tmp_path, "save")
    assert out.returncode == 0 and "it is further along (update 12000 > 950" in out.stdout
    assert (tmp_path / "parked" / RUN / "checkpoint.pt").read_bytes() == b"checkpoint 900"
    # the run lands: drop removes it and the emptied folders
    landed = tmp_path / "results" / RUN.parts[0] / "runs" / RUN.parts[1] / "train-s1.json"
    landed.parent.mkdir(parents=True)
    landed.write_text("{}")
    out = park(tmp_path, "drop")
    assert out.returncode == 0 and f"dropped {RUN}" in out.stdout and "1 parked run(s) dropped" in out.stdout
    assert not (tmp_path / "parked").exists()


@pytest.mark.parametrize("args", [[], ["keep"], ["save", "restore"]])
def test_a_wrong_action_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "results").mkdir()
    out = park(tmp_path, *args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "usage" in out.stderr


@pytest.mark.parametrize("action", ["save", "restore", "drop", "list"])
def test_outside_the_repository_root_it_says_so_instead_of_finding_nothing(tmp_path, action):
    """From a subfolder, "0 runs parked" would read as nothing to park, and the runs would go with the machine."""
    write_run(tmp_path, RUN, 900)
    out = park(tmp_path / ".cache", action)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "repository root" in out.stderr
    assert not (tmp_path / ".cache" / "parked").exists() and not (tmp_path / "parked").exists()
