"""The sweep runner (``bench run``) on the toy corpus, a tiny budget of two models and the ``quick`` schedule:
a second run skips every finished stage, ``force`` re-runs them, a changed config or schedule gets a new run
folder, a stage killed by SIGKILL leaves no record and runs again, and ``bench report`` rebuilds the
leaderboard from the records the runner wrote.

One real sweep (every stage really run; latency in-process instead of one child process per setting, to
save the interpreter start-ups) is shared by the tests; each test that runs stages again works on a copy."""

from __future__ import annotations

import collections
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.latency
import bench.latency.compare as compare
import bench.sweep.runner as runner
from bench.sweep.runner import Sweep, SweepOptions
from bench.sweep.side_by_side import compare_stages
from tests.toy_corpus import write_corpus

REPO = Path(__file__).resolve().parents[2]
MODELS = ("lite_transformer", "transformer")
BUDGET = """\
name: tiny
target_macs: 1_000_000
tolerance: 0.1
protocol: {{batch: 1, src_tokens: 30, tgt_tokens: 30, counter: flop_counter}}
models:
  transformer:
    fixed: {{heads: 4, encoder_attention_heads: 4, dropout: {dropout}, vocab_size: 60}}
    mt: {{encoder_layers: 1, decoder_layers: 1}}
    vary: {{key: d_model, step: 8, min: 16, max: 64}}
    fine: {{key: ffn_dim, step: 8}}
  lite_transformer:
    fixed: {{conv: dynamic, glu: true, heads: 4, conv_heads: 4, encoder_attention_heads: 4, vocab_size: 60,
            kernel_sizes: [3, 5]}}
    mt: {{encoder_layers: 1, decoder_layers: 1}}
    vary: {{key: d_model, step: 8, min: 16, max: 64}}
    fine: {{key: ffn_dim, step: 8}}
"""
STAGES = ("profile", "latency", "train", "evaluate")
# records per model: profile, latency forward + translate at 1 thread, train and eval of seed 1
RECORDS = {"profile.json", "latency-cpu-t1-forward.json", "latency-cpu-t1-translate.json", "train-s1.json",
           "eval-s1.json"}
# and of both models side by side, in runs/_compare-<hash>/
COMPARE_RECORDS = {"latency_compare-cpu-t1-forward.json", "latency_compare-cpu-t1-translate.json"}


def options(root: Path, budget: Path, corpus: Path, **kw) -> SweepOptions:
    log = kw.pop("log", None)
    return SweepOptions(budget=str(budget), quick=True, corpus=str(corpus), results_root=root / "results",
                        cache_root=root / "cache", threads=[1], log=log if log is not None else (lambda m: None),
                        **kw)


def latency_in_process(model: str, config: dict, *, timeout_s: float = 3600, **kwargs) -> dict:
    """What ``measure_in_subprocess`` runs in its child, run in this process: the same record, no start-up."""
    from bench.latency.record import measure_model

    return json.loads(json.dumps(measure_model(model, config, **kwargs), default=str))


def compare_in_process(members: list, *, timeout_s: float = 3600, **kwargs) -> dict:
    """What ``compare_in_subprocess`` runs in its child, run in this process (few rounds)."""
    from bench.latency.compare import compare_latency

    return json.loads(json.dumps(compare_latency(members, **{**kwargs, "rounds": 4, "warmup": 2}), default=str))


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweep")
    budget = root / "tiny.yaml"
    budget.write_text(BUDGET.format(dropout=0.1))
    return {"root": root, "budget": budget, "corpus": write_corpus(root / "toy")}


@pytest.fixture(scope="module")
def swept(toy) -> Path:
    """A whole sweep (every stage, then the report) in <root>/done: results/ and cache/."""
    done = toy["root"] / "done"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench.latency, "measure_in_subprocess", latency_in_process)
        mp.setattr(compare, "compare_in_subprocess", compare_in_process)
        Sweep(options(done, toy["budget"], toy["corpus"])).run()
    return done


def copy_of(swept: Path, tmp_path: Path) -> Path:
    shutil.copytree(swept, tmp_path / "copy")
    return tmp_path / "copy"


def snapshot(results: Path) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted((results / "runs").glob("*/*.json"))}


def count_stages(monkeypatch, forbid: bool = False) -> collections.Counter:
    """Replace every stage function of Sweep by a counter that returns a stub record (or, with ``forbid``,
    fails the test at the first call)."""
    calls: collections.Counter = collections.Counter()

    def stub(stage):
        def fn(self, run, *args, **kwargs):
            calls[stage, run.model] += 1
            assert not forbid, f"{stage} {args[:3]} of {run.model} ran again"
            rec = {"stub": f"{stage} {args[:3]}"}  # and what a record of the stage must carry
            if stage == "profile":
                rec.update(params=1, macs=1)
            elif stage == "latency":
                rec.update(device=args[0], threads=args[1], workload=args[2], p50_ms=1.0)
            else:
                rec["seed"] = args[0]
            return rec

        return fn

    for stage in STAGES:
        monkeypatch.setattr(Sweep, stage, stub(stage))

    def compare_stub(members, *, workload, threads, device, **kwargs):
        calls["latency_compare", "+".join(m[0] for m in members)] += 1
        assert not forbid, f"paired latency {workload} ran again"
        return {"stub": "latency_compare", "workload": workload, "threads": threads, "device": device,
                "reference": members[0][0], "ratios": {m[0]: {"ratio": 1.0, "ci95": [1.0, 1.0]} for m in members}}

    monkeypatch.setattr(compare, "compare_in_subprocess", compare_stub)
    return calls


def model_folders(results: Path) -> list[Path]:
    return sorted(p for p in (results / "runs").iterdir() if not p.name.startswith("_compare-"))


def test_the_sweep_wrote_every_record(swept):
    runs = swept / "results" / "tiny-quick" / "runs"
    folders = model_folders(runs.parent)
    assert [f.name.rsplit("-", 1)[0] for f in folders] == list(MODELS)
    for folder in folders:
        assert {p.name for p in folder.glob("*.json")} == RECORDS
        assert all(json.loads(p.read_text())["config_hash"] == folder.name.rsplit("-", 1)[1]
                   for p in folder.glob("*.json"))
    (paired,) = runs.glob("_compare-*")  # both models side by side, the Transformer as the reference
    assert {p.name for p in paired.glob("*.json")} == COMPARE_RECORDS
    hashes = {f.name.rsplit("-", 1)[0]: f.name.rsplit("-", 1)[1] for f in folders}
    for path in paired.glob("*.json"):
        rec = json.loads(path.read_text())
        assert rec["stage"] == "latency_compare" and rec["reference"] == "transformer"
        assert rec["models"] == ["transformer", "lite_transformer"] and rec["threads"] == 1
        assert {m["name"]: m["config_hash"] for m in rec["members"]} == hashes
        assert rec["ratios"]["transformer"] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
        lo, hi = rec["ratios"]["lite_transformer"]["ci95"]
        assert lo <= rec["ratios"]["lite_transformer"]["ratio"] <= hi


def test_the_transformer_is_the_reference_whatever_the_order(toy):
    from bench.sweep.side_by_side import compare_group

    def group(models):
        return compare_group(Sweep(options(toy["root"] / "order", toy["budget"], toy["corpus"], models=models)))

    lite_first = group(["lite_transformer", "transformer"])
    assert lite_first.names == ["transformer", "lite_transformer"]
    assert lite_first.folder == group(["transformer", "lite_transformer"]).folder  # the same comparison
    assert group(["transformer"]) is None  # nothing to compare


def test_every_stage_record_carries_its_span_and_lock(swept):
    """Every record says when its stage ran and how it held the machine lock: latency stages exclusively,
    the others shared."""
    for path in (swept / "results" / "tiny-quick" / "runs").glob("*/*.json"):
        rec = json.loads(path.read_text())
        assert rec["started"] <= rec["finished"], path.name
        assert rec["lock_mode"] == ("exclusive" if rec["stage"].startswith("latency") else "shared"), path.name
        assert rec["lock_wait_s"] >= 0


def test_second_run_skips_every_finished_stage(swept, toy, tmp_path, monkeypatch):
    root = copy_of(swept, tmp_path)
    results = root / "results" / "tiny-quick"
    before = snapshot(results)
    calls = count_stages(monkeypatch, forbid=True)
    log: list[str] = []
    Sweep(options(root, toy["budget"], toy["corpus"], log=log.append)).run()
    assert calls == {}
    assert snapshot(results) == before
    assert sum("done before, skipped" in line for line in log) == len(before) == 2 * len(RECORDS) + len(COMPARE_RECORDS)


def test_force_reruns_every_stage(swept, toy, tmp_path, monkeypatch):
    root = copy_of(swept, tmp_path)
    results = root / "results" / "tiny-quick"
    before = snapshot(results)
    calls = count_stages(monkeypatch)
    sweep = Sweep(options(root, toy["budget"], toy["corpus"], force=True))
    compare_stages(sweep)
    for model in MODELS:
        sweep.run_model(model)
    per_model = {"profile": 1, "latency": 2, "train": 1, "evaluate": 1}  # latency: forward and translate
    paired = {("latency_compare", "transformer+lite_transformer"): 2}
    assert calls == {**{(stage, m): n for stage, n in per_model.items() for m in MODELS}, **paired}
    after = snapshot(results)
    assert after.keys() == before.keys()  # the same run folders, every record rewritten by the new run
    assert all(json.loads(after[name])["stub"] for name in after)


@pytest.mark.parametrize("change", ["config", "schedule"])
def test_changed_config_or_schedule_makes_a_new_run_folder(swept, toy, tmp_path, monkeypatch, change):
    root = copy_of(swept, tmp_path)
    results = root / "results" / "tiny-quick"
    before = snapshot(results)
    old_folders = {p.name for p in (results / "runs").iterdir()}
    budget = toy["budget"]
    if change == "config":  # the transformer's dropout only: lite_transformer keeps its folder and records
        budget = tmp_path / "tiny.yaml"
        budget.write_text(BUDGET.format(dropout=0.2))
        rerun = ["transformer"]
    else:  # the quick preset changes (here: its step count) for every model
        real = runner.get_schedule
        monkeypatch.setattr(runner, "get_schedule", lambda name, **kw: real(name, **{**kw, "max_steps": 30}))
        rerun = list(MODELS)
    calls = count_stages(monkeypatch)
    sweep = Sweep(options(root, budget, toy["corpus"]))
    for model in MODELS:
        sweep.run_model(model)
    assert set(calls) == {(stage, m) for stage in STAGES for m in rerun}  # nothing of the rerun ones reused
    new_folders = {p.name for p in (results / "runs").iterdir()} - old_folders
    assert sorted(f.rsplit("-", 1)[0] for f in new_folders) == rerun
    for folder in new_folders:
        key = folder.rsplit("-", 1)[1]
        records = [json.loads(p.read_text()) for p in (results / "runs" / folder).glob("*.json")]
        assert {r["config_hash"] for r in records} == {key} and len(records) == len(RECORDS)
        if change == "config":
            assert {r["config"]["dropout"] for r in records} == {0.2}
    assert {k: v for k, v in snapshot(results).items() if k in before} == before  # old records untouched


CHILD = """
import json, os, pathlib, sys, time
from bench.sweep.runner import Sweep, SweepOptions

args = json.loads(sys.argv[1])
marker = pathlib.Path(args["marker"])

def hang():
    marker.write_text("started")
    time.sleep(600)

if args["where"] == "stage":
    Sweep.profile = lambda self, run: hang()
else:  # the stage finishes; the kill comes halfway through writing its record
    real_write_text = pathlib.Path.write_text

    def half_then_hang(self, data, *a, **k):
        if "profile.json" in self.name:
            with open(self, "w", encoding="utf-8") as fh:
                fh.write(data[: len(data) // 2])
            hang()
        return real_write_text(self, data, *a, **k)

    pathlib.Path.write_text = half_then_hang
opts = SweepOptions(budget=args["budget"], quick=True, corpus=args["corpus"], threads=[1], stages=("profile",),
                    results_root=pathlib.Path(args["results"]), cache_root=pathlib.Path(args["cache"]),
                    log=lambda m: None)
Sweep(opts).run_model("transformer")
"""


@pytest.mark.parametrize("where", ["stage", "record"])
def test_stage_killed_midway_leaves_no_record_and_is_rerun(toy, tmp_path, monkeypatch, where):
    marker = tmp_path / "started"
    args = {"where": where, "marker": str(marker), "budget": str(toy["budget"]), "corpus": str(toy["corpus"]),
            "results": str(tmp_path / "results"), "cache": str(tmp_path / "cache")}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, f"the child ended before the stage began: {child.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the child never reached the stage"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    (folder,) = (tmp_path / "results" / "tiny-quick" / "runs").iterdir()
    assert not (folder / "profile.json").exists()  # nothing a later run could take for a finished stage

    calls: collections.Counter = collections.Counter()
    real_profile = Sweep.profile

    def counted(self, run):
        calls[run.model] += 1
        return real_profile(self, run)

    monkeypatch.setattr(Sweep, "profile", counted)
    opts = options(tmp_path, toy["budget"], toy["corpus"], stages=("profile",))
    Sweep(opts).run_model("transformer")  # would block here if the killed run had kept the run folder's lock
    assert calls == {"transformer": 1}
    record = json.loads((folder / "profile.json").read_text())
    assert record["stage"] == "profile" and record["macs"] > 0
    Sweep(opts).run_model("transformer")
    assert calls == {"transformer": 1}  # now finished: skipped


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["model"]: row for row in csv.DictReader(fh)}


def test_report_rebuilds_the_leaderboard_from_the_runner_records(swept):
    results = swept / "results" / "tiny-quick"
    written = {name: (results / name).read_bytes() for name in ("leaderboard.csv", "leaderboard.md")}
    for name in written:
        (results / name).unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "bench", "report", "--results", str(results), "--combine"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name, content in written.items():  # the same tables the sweep wrote, from the records alone
        assert (results / name).read_bytes() == content, name
    rows = _rows(results / "leaderboard.csv")
    assert sorted(rows) == list(MODELS)
    (paired,) = (results / "runs").glob("_compare-*")
    for workload in ("forward", "translate"):
        ratios = json.loads((paired / f"latency_compare-cpu-t1-{workload}.json").read_text())["ratios"]
        for model, row in rows.items():
            assert float(row[f"latency_ratio_{workload}_t1"]) == pytest.approx(ratios[model]["ratio"], rel=1e-9)
            assert float(row[f"latency_ratio_{workload}_t1_lo"]) == pytest.approx(ratios[model]["ci95"][0], rel=1e-9)
            assert row["latency_ratio_ref"] == "transformer"
    for folder in model_folders(results):
        rec = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
        row = rows[rec["profile"]["model"]]
        assert row["config_hash"] == folder.name.rsplit("-", 1)[1]
        assert int(row["d_model"]) == rec["profile"]["config"]["d_model"]
        for column, value in [
            ("macs", rec["profile"]["macs"]),
            ("params", rec["profile"]["params"]),
            ("forward_p50_ms_t1", rec["latency-cpu-t1-forward"]["p50_ms"]),
            ("translate_p50_ms_t1", rec["latency-cpu-t1-translate"]["p50_ms"]),
            ("train_tokens", rec["train-s1"]["train_tokens"]),
            ("valid_nll", rec["eval-s1"]["valid_nll"]),
            ("bleu_test", rec["eval-s1"]["test"]["bleu"]),
            ("chrf_test", rec["eval-s1"]["test"]["chrf"]),
            ("chrf_test_clean", rec["eval-s1"]["test_clean"]["chrf"]),
        ]:
            assert float(row[column]) == pytest.approx(value, rel=1e-9), column
