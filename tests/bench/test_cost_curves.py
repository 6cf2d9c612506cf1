"""Cost curves (bench.sweep.cost_curves) with a fake side-by-side timer: the records, the CSV, the rankings and where
they change, the figures, resuming, and the command line's bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

import bench.latency.compare as compare
from bench.budget.spec import load_budget
from bench.cli import main
from bench.sweep.cost_curves import CurveOptions, run_curves

# a fake runtime: per-call overhead by family (operators per layer), plus MACs at a fixed rate; the overheads
# make Lite and ET slower at small budgets, the rates make the Transformer slower at large ones
OVERHEAD_MS = {"transformer": 1.0, "evolved_transformer": 1.6, "lite_transformer": 1.8}
MS_PER_GMAC = {"transformer": 30.0, "evolved_transformer": 24.0, "lite_transformer": 20.0}


def fake_compare(calls: list[dict[str, Any]]) -> Any:
    def run(members: list[tuple[str, str, dict[str, Any]]], **kw: Any) -> dict[str, Any]:
        from bench.budget.spec import load_budget
        from models import resolve_config
        from tests.bench.test_latency_solve import macs_of

        calls.append({"members": [m[0] for m in members], **kw})
        proto = load_budget("100M").protocol
        p50 = {}
        for name, model, config in members:
            cfg = resolve_config(model, "mt", **{k: v for k, v in config.items() if k != "task"})
            # a family the table does not name (one added in a single file) gets middling figures
            p50[name] = OVERHEAD_MS.get(name, 1.5) + MS_PER_GMAC.get(name, 25.0) * macs_of(model, cfg, proto) / 1e9
        ref = p50[members[0][0]]
        return {"models": [m[0] for m in members], "workload": kw.get("workload", "forward"),
                "threads": kw.get("threads", 1), "p50_ms": p50, "cv": {n: 0.01 for n in p50},
                "ratios": {n: {"ratio": v / ref, "ci95": [v / ref * 0.98, v / ref * 1.02]} for n, v in p50.items()},
                "machine_quiet": True, "device_model": "fake", "torch_version": "fake",
                "backend_version": None if kw.get("backend", "eager") == "eager" else "fake-rt 1.0"}

    return run


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_curves_write_records_csv_rankings_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(compare, "compare_in_subprocess", fake_compare(calls))
    opts = CurveOptions(budgets=["25M", "100M", "2G"], backends=["eager", "onnxruntime"], results=tmp_path,
                        log=lambda _: None)
    res = run_curves(opts)
    assert res["records"] == 6 and res["failed"] == [] and len(calls) == 6
    assert {c.get("backend", "eager") for c in calls} == {"eager", "onnxruntime"}
    rows = list(csv.DictReader(open(tmp_path / "curves.csv")))
    assert len(rows) == 3 * len(load_budget("100M").models) * 2  # budgets x the default families x backends
    by = {(r["budget"], r["backend"], r["family"]): r for r in rows}
    # the reference's ratio is 1; a family's ratio is its p50 over the Transformer's of the same record
    small = by[("25M", "eager", "lite_transformer")]
    assert float(by[("25M", "eager", "transformer")]["ratio_vs_transformer"]) == 1.0
    assert float(small["ratio_vs_transformer"]) == pytest.approx(
        float(small["p50_ms"]) / float(by[("25M", "eager", "transformer")]["p50_ms"]), rel=1e-5)
    # MACs near the budget, parameters counted from the built model
    assert abs(float(by[("2G", "eager", "transformer")]["macs"]) / 2e9 - 1) <= 0.02
    assert int(by[("100M", "eager", "lite_transformer")]["params"]) > 0
    # the fake makes the Transformer fastest at 25M and slowest at 2G: the summary says where it changes
    assert by[("25M", "eager", "transformer")]["rank"] == "1" and by[("2G", "eager", "transformer")]["rank"] == "3"
    md = (tmp_path / "curves.md").read_text()
    assert "between 100M and 2G" in md or "between 25M and 100M" in md
    for stem in ("latency_vs_macs", "ratio_vs_macs", "params_vs_macs"):
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 1000
    # a re-run measures nothing; --force everything
    calls.clear()
    run_curves(opts)
    assert calls == []
    opts.force = True
    run_curves(opts)
    assert len(calls) == 6


def test_a_failing_backend_is_listed_and_the_rest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.errors import BenchError

    good = fake_compare([])

    def flaky(members: Any, **kw: Any) -> dict[str, Any]:
        if kw.get("backend") == "onnxruntime":
            raise BenchError("paired latency failed in its own process (exit 2): export failed")
        return good(members, **kw)

    monkeypatch.setattr(compare, "compare_in_subprocess", flaky)
    res = run_curves(CurveOptions(budgets=["50M"], backends=["eager", "onnxruntime"], results=tmp_path,
                                  log=lambda _: None))
    assert res["records"] == 1 and len(res["failed"]) == 1
    assert "export failed" in (tmp_path / "curves.md").read_text()
    assert not list((tmp_path / "records").glob("*onnxruntime*"))  # a failure is not a record: it runs again


@pytest.mark.parametrize("argv, msg", [
    (["curves", "--budgets", "6ms"], "neither a MAC count"),
    (["curves", "--backends", "tensorrt"], "unknown --backends"),
    (["curves", "--threads", "0"], "--threads"),
    (["curves", "--rounds", "1"], "--rounds"),
])
def test_curves_bad_input_is_one_line_and_exit_2(argv: list[str], msg: str, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    assert main([*argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_records_carry_what_a_reader_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare, "compare_in_subprocess", fake_compare([]))
    run_curves(CurveOptions(budgets=["50M"], backends=["eager"], results=tmp_path, log=lambda _: None))
    rec = json.loads((tmp_path / "records" / "50M-eager-t1-forward.json").read_text())
    assert {"points", "compare", "env", "command", "started", "created"} <= set(rec)
    assert [p["family"] for p in rec["points"]] == list(load_budget("100M").models)  # the default families


def test_a_swap_within_overlapping_intervals_is_called_a_tie() -> None:
    import pandas as pd

    from bench.sweep.cost_curves import rankings

    def rows(budget: str, macs: float, lite: tuple[float, float, float], et: tuple[float, float, float]) -> list:
        base = {"budget": budget, "target_macs": macs, "backend": "eager", "threads": 1, "workload": "forward"}
        return [{**base, "family": "transformer", "p50_ms": 1.0, "ratio_vs_transformer": 1.0, "ratio_ci_low": 1.0,
                 "ratio_ci_high": 1.0},
                {**base, "family": "lite_transformer", "p50_ms": lite[0], "ratio_vs_transformer": lite[0],
                 "ratio_ci_low": lite[1], "ratio_ci_high": lite[2]},
                {**base, "family": "evolved_transformer", "p50_ms": et[0], "ratio_vs_transformer": et[0],
                 "ratio_ci_low": et[1], "ratio_ci_high": et[2]}]

    clear = pd.DataFrame(rows("A", 1, (1.2, 1.19, 1.21), (1.4, 1.39, 1.41)) + rows("B", 2, (1.5, 1.49, 1.51),
                                                                                    (1.3, 1.29, 1.31)))
    text = "\n".join(rankings(clear))
    assert "between A and B: transformer < lite_transformer < evolved_transformer -> transformer < " \
           "evolved_transformer < lite_transformer." in text
    tie = pd.DataFrame(rows("A", 1, (1.20, 1.15, 1.25), (1.21, 1.16, 1.26)) + rows("B", 2, (1.22, 1.17, 1.27),
                                                                                  (1.21, 1.16, 1.26)))
    assert "intervals overlap: a tie" in "\n".join(rankings(tie))
