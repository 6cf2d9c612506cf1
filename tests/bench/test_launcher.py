"""Child processes go through one launcher and receive decided values: the solved config and the paper's MAC
counts of the budget's protocol, never a budget to solve again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError
from bench.infra.launcher import call_in_child

ROOT = Path(__file__).resolve().parents[2]


def test_call_in_child_returns_the_result_and_reports_failures():
    assert call_in_child("bench.budget.spec:parse_target", {"spec": "1.5G"}, what="parsing") == 1_500_000_000
    with pytest.raises(BenchError, match=r"parsing failed in its own process \(exit 2\): budget 'x' is neither"):
        call_in_child("bench.budget.spec:parse_target", {"spec": "x"}, what="parsing")
    with pytest.raises(BenchError, match="target must be 'bench.<module>:<function>'"):
        call_in_child("os:getcwd", {}, what="escaping")


def test_sweep_latency_children_get_the_solved_config_and_the_profiles_macs(tmp_path, monkeypatch):
    import bench.latency as latency
    from bench.sweep.runner import Sweep, SweepOptions

    calls = []

    def fake(model, config, **kwargs):
        calls.append((model, config, kwargs))
        return {"model": model, "config": config, "workload": kwargs["workload"], "device": "cpu",
                "threads": kwargs["threads"], "dtype": "fp32", "p50_ms": 1.0}

    monkeypatch.setattr(latency, "measure_in_subprocess", fake)
    opts = SweepOptions(budget="100M", models=["lite_transformer"], threads=[1], stages=("profile", "latency"),
                        results_root=tmp_path, log=lambda line: None)
    sweep = Sweep(opts)
    run = sweep.plan("lite_transformer")
    sweep.run_model("lite_transformer")
    profile = json.loads((run.folder / "profile.json").read_text())
    assert [c[2]["workload"] for c in calls] == ["forward", "translate"]
    for model, config, kwargs in calls:
        assert model == "lite_transformer" and config == run.solution.config.to_dict()
        assert "budget" not in kwargs and kwargs["paper_macs"] == (profile["macs"], profile["macs_with_output"])
    rec = json.loads((run.folder / "latency-cpu-t1-forward.json").read_text())
    assert rec["version"] == 2 and rec["p50_ms"] == 1.0 and "config_hash" in rec


def test_profile_counts_with_the_budgets_protocol(tmp_path):
    """`profile --budget FILE` and the sweep count with the file's protocol (here 20 + 20 tokens)."""
    from bench.cli.models import profile_record
    from bench.cost.analytic import Protocol, analytic_macs
    from bench.sweep.runner import Sweep, SweepOptions
    from models import resolve_config

    raw = yaml.safe_load((ROOT / "budgets" / "100M.yaml").read_text())
    raw["protocol"].update(src_tokens=20, tgt_tokens=20)
    raw["name"] = "short20"
    path = tmp_path / "short20.yaml"
    path.write_text(yaml.safe_dump(raw))
    rec = profile_record("transformer", "mt", str(path), [])
    cfg = resolve_config("transformer", **rec["config"])
    assert rec["macs"] == analytic_macs(cfg, Protocol(1, 20, 20))["macs"] != analytic_macs(cfg)["macs"]
    assert "20 source + 20 target" in rec["protocol"]
    sweep = Sweep(SweepOptions(budget=str(path), models=["transformer"], results_root=tmp_path,
                               log=lambda line: None))
    assert sweep.profile(sweep.plan("transformer"))["macs"] == rec["macs"]


def test_recipe_study_children_get_the_solved_config(monkeypatch, tmp_path):
    import bench.sweep.study as study

    seen = []
    monkeypatch.setattr(study, "call_in_child", lambda target, kwargs, **kw: seen.append((target, kwargs, kw)) or {})
    study._train("transformer", "500M", "short", 3, tmp_path / "run", None)
    target, kwargs, kw = seen[0]
    assert target == "bench.sweep.study:train_one" and kw["threads"] == 1
    assert kwargs["config"]["d_model"] == 312 and "budget" not in kwargs
    assert kwargs["overrides"]["max_tokens"] == 2_000_000  # the budget file's recipe for `short`
