"""Budget files, budget specs, and clear errors on bad input from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.budget.spec import load_budget, parse_target
from bench.errors import BenchError

BUDGETS = Path(__file__).resolve().parents[2] / "budgets"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("spec,value", [("100M", 10**8), ("500M", 5 * 10**8), ("1.2G", 12 * 10**8), ("750k", 750_000)])
def test_parse_target(spec, value):
    assert parse_target(spec) == value


def test_budget_files_say_what_they_hold():
    for spec, target in (("100M", 10**8), ("500M", 5 * 10**8)):
        b = load_budget(spec)
        assert b.target_macs == target and b.tolerance == 0.02
        assert {"transformer", "evolved_transformer", "lite_transformer"} <= set(b.models)  # the paper's, and any added
        assert list(b.models) == [m for m in yaml.safe_load((BUDGETS / f"{spec}.yaml").read_text())["models"]]
        assert (b.protocol.batch, b.protocol.src_tokens, b.protocol.tgt_tokens) == (1, 30, 30)
    other = load_budget("1.2G")
    assert other.target_macs == 12 * 10**8 and other.models == load_budget("100M").models


def test_budget_file_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\ntarget_macs: 20_000_000\nmodels:\n  transformer:\n"
        "    vary: {key: d_model, step: 8, min: 16, max: 512}\n    fine: {key: ffn_dim, step: 8}\n"
    )
    b = load_budget(str(path))
    assert b.name == "tiny" and list(b.models) == ["transformer"]


@pytest.mark.parametrize(
    "content,message",
    [
        ("name: [unclosed\n", "does not parse as YAML"),
        ("- a list\n", "must be a YAML mapping"),
        ("name: x\nmodels: {}\n", "missing key 'target_macs'"),
        (
            "target_macs: 1e8\nmodels:\n  nosuch: {vary: {key: d_model, step: 8, max: 64},"
            " fine: {key: ffn_dim, step: 8}}\n",
            "unknown model 'nosuch'",
        ),
    ],
)
def test_malformed_budget_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(BenchError, match=message):
        load_budget(str(path))


@pytest.mark.parametrize(
    "args,message",
    [
        (["profile", "transformer", "--budget", "abc"], "neither a MAC count"),
        (["profile", "transformer", "--budget", "-5M"], "must be a positive number"),
        (["profile", "transformer", "--budget", "0"], "must be a positive number"),
        (["solve", "transformer", "--budget", "1K"], "is infeasible for transformer"),
        (["solve", "lite_transformer", "--budget", "1e15"], "is beyond lite_transformer's grid"),
        (["profile", "transformer", "--set", "d_model=banana"], "d_model='banana' is not a valid int"),
        (["profile", "transformer", "--set", "nonsense=1"], "unknown config key 'nonsense'"),
        (["profile", "transformr"], "unknown model 'transformr'"),
    ],
)
def test_bad_input_one_line_exit_2(args, message):
    out = bench(*args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_profile_and_solve_json_interface():
    out = bench("profile", "lite_transformer", "--budget", "100M", "--set", "dropout=0.2", "--json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    for key in ("model", "config", "params", "params_total", "macs", "macs_with_output", "macs_by_counter"):
        assert key in rec
    assert rec["config"]["dropout"] == 0.2 and abs(rec["macs"] / 1e8 - 1) <= 0.02
    assert set(rec["macs_by_counter"]) == {"flop_counter", "fvcore", "thop", "analytic"}
    sol = json.loads(bench("solve", "lite_transformer", "--budget", "100M", "--json").stdout)
    assert sol["config"]["d_model"] == rec["config"]["d_model"] and sol["macs"] == rec["macs"]


def test_a_family_without_a_hand_formula_is_solved_by_counting():
    """An engineer adds an architecture in one file, with no formula in bench/analytic.py: the solver
    counts the real model instead, and the report says the analytic cross-check is missing."""
    from dataclasses import dataclass

    from bench.budget.solve import solve_model
    from bench.cost.counting import count_macs
    from models import create_model, registry
    from models.transformer import TransformerConfig, transformer

    @dataclass
    class NarrowConfig(TransformerConfig):
        family = "narrow_transformer"

    def narrow_transformer(cfg):
        return transformer(cfg)

    registry.register_model(NarrowConfig, "test-only family")(narrow_transformer)
    try:
        from bench.budget.spec import Budget, ScalingRule

        template = load_budget("20M")
        rule = template.models["transformer"]
        narrow_rule = ScalingRule(rule.fixed, rule.task_fixed, "d_model", 8, 16, 256, "ffn_dim", 8)
        budget = Budget("20M", 20_000_000, 0.02, template.protocol, "flop_counter",
                        {"narrow_transformer": narrow_rule})
        sol = solve_model(budget, "narrow_transformer")
        assert abs(sol.macs / 20e6 - 1) <= 0.02
        report = count_macs(create_model("narrow_transformer", **sol.config.to_dict()))
        assert "analytic" not in report.macs_by_counter
        assert report.unsupported_ops["analytic"] == ["no formula for family 'narrow_transformer'"]
        assert report.macs_by_counter["fvcore"] == report.macs_by_counter["flop_counter"] == sol.macs
    finally:
        registry._REGISTRY.pop("narrow_transformer", None)
