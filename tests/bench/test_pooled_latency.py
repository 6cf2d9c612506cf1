"""Paired latency pooled over several processes (bench.latency.pooled): the interval covers a shift between
processes that one process's bootstrap cannot see."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bench.latency.compare as compare
from bench.cli import main
from bench.latency.compare import paired_ratios
from bench.latency.pooled import compare_processes, pooled_ratios, t_quantile


def process(ratio: float, rounds: int, seed: int) -> np.ndarray:
    """Round figures of one process: reference ~10 ms, the other model ``ratio`` times it, 0.5% noise."""
    rng = np.random.default_rng(seed)
    ref = 10 * (1 + 0.005 * rng.standard_normal(rounds))
    return np.stack([ref, ref * ratio * (1 + 0.005 * rng.standard_normal(rounds))], axis=1)


def test_the_pooled_interval_covers_the_processes_that_one_process_misses() -> None:
    runs = [process(r, 10, i) for i, r in enumerate((1.30, 1.35, 1.40))]
    one = paired_ratios(runs[0])[1]
    assert one["ci95"][1] < 1.32  # a single process: narrow, and blind to the others
    pooled = pooled_ratios(runs)[1]
    assert pooled["ratio"] == pytest.approx((1.30 * 1.35 * 1.40) ** (1 / 3), rel=0.01)
    lo, hi = pooled["ci95"]
    assert lo < 1.32 and hi > 1.38  # the processes' spread is inside the interval
    # identical processes: the pooled interval is as narrow as the rounds make it
    same = pooled_ratios([process(1.30, 10, i) for i in range(3)])[1]
    assert same["ci95"][1] - same["ci95"][0] < 0.02


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_table(df: int, table: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(table, abs=2e-3)


def test_the_interval_is_the_t_interval_of_the_process_means() -> None:
    runs = [process(r, 8, i) for i, r in enumerate((1.30, 1.35, 1.40, 1.33, 1.37))]
    means = np.array([np.mean(np.log(a[:, 1] / a[:, 0])) for a in runs])
    half = 2.776 * means.std(ddof=1) / np.sqrt(5)
    lo, hi = pooled_ratios(runs)[1]["ci95"]
    assert np.log(hi) - np.log(lo) == pytest.approx(2 * half, rel=1e-3)


def fake_child(calls: list[dict[str, Any]], ratios: list[float]) -> Any:
    def run(members: list, *, rounds: int, **kw: Any) -> dict[str, Any]:
        i = len(calls)
        calls.append({"rounds": rounds, **kw})
        a = process(ratios[i], rounds, i)
        names = [m[0] for m in members]
        return {"models": names, "reference": names[0], "workload": kw.get("workload", "forward"), "threads": 1,
                "rounds": rounds, "p50_ms": {n: float(np.median(a[:, j])) for j, n in enumerate(names)},
                "cv": {n: 0.01 for n in names}, "round_ms": {n: a[:, j].tolist() for j, n in enumerate(names)},
                "ratios": dict(zip(names, paired_ratios(a))), "lock_wait_s": 1.0, "quiet_wait_s": 0.5,
                "machine_quiet": i != 1, "not_quiet": None if i != 1 else ["load 1.2 > 0.5"], "lock_mode": "exclusive"}

    return run


def test_compare_processes_splits_the_rounds_and_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(compare, "compare_in_subprocess", fake_child(calls, [1.30, 1.35, 1.40]))
    members = [("transformer", "transformer", {}), ("lite_transformer", "lite_transformer", {})]
    res = compare_processes(members, processes=3, rounds=30, workload="translate", threads=1)
    assert [c["rounds"] for c in calls] == [10, 10, 10] and all(c["workload"] == "translate" for c in calls)
    assert res["processes"] == 3 and res["rounds"] == 30 and len(res["round_ms"]["lite_transformer"]) == 30
    assert res["round_process"] == [0] * 10 + [1] * 10 + [2] * 10
    assert res["process_ratios"]["lite_transformer"] == pytest.approx([1.30, 1.35, 1.40], rel=0.01)
    lo, hi = res["ratios"]["lite_transformer"]["ci95"]
    assert lo < 1.32 and hi > 1.38 and res["ratios"]["transformer"] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
    assert res["lock_wait_s"] == 3.0 and res["quiet_wait_s"] == 1.5
    assert res["machine_quiet"] is False and res["not_quiet"] == ["load 1.2 > 0.5"]  # one process was not quiet
    assert "Student t" in res["ratio_method"]
    calls.clear()
    one = compare_processes(members, processes=1, rounds=30)
    assert [c["rounds"] for c in calls] == [30] and "processes" not in one


def test_bad_processes_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["latency", "--compare", "transformer,lite_transformer", "--processes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--processes" in err and len(err.splitlines()) == 1
