"""The report and latency that may not be trusted: a noisy figure is named in the leaderboard with its reason,
drawn hollow and left out of the latency Pareto fronts; the paired comparison becomes latency_ratio_* columns
with their intervals (a comparison of other configs is ignored). On the synthetic records of test_report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.report.figures import fig_latency_vs_macs, fig_quality_vs_latency
from bench.report.latency_trust import is_noisy
from bench.report.leaderboard import build_leaderboard
from bench.report.render import render_latex, render_markdown, write_leaderboard
from tests.bench.test_report import make_results


def _edit(path: Path, **changes) -> None:
    rec = json.loads(path.read_text())
    rec.update(changes)
    path.write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path) -> Path:
    out = make_results(tmp_path)
    # the Transformer's 1-thread forward figure (the fastest: on every front otherwise) stayed noisy
    _edit(out / "runs" / "transformer-c0ffee" / "latency-cpu-t1-forward.json", cv=0.09, latency_status="noisy",
          attempts=[{"attempt": i, "cv": 0.09} for i in (1, 2, 3)], not_quiet="load average 2.90 > 0.5")
    # a record of older code without a status, CV above 5%: noisy too; one below: ok
    _edit(out / "runs" / "lite_transformer-c0ffee" / "latency-cpu-t2-translate.json", cv=0.07)
    _edit(out / "runs" / "lite_transformer-c0ffee" / "latency-cpu-t1-forward.json", cv=0.03)
    return out


def test_noisy_figures_are_named_with_their_reason(results):
    df = build_leaderboard(results).query("compression == 'none'").set_index("model")
    assert df.loc["transformer", "latency_status"] == "noisy"
    assert df.loc["transformer", "latency_noisy"] == "forward_t1"
    assert "CV 9.0% after 3 attempts; machine not quiet: load average 2.90" in df.loc["transformer", "latency_note"]
    assert df.loc["lite_transformer", "latency_status"] == "noisy"
    assert df.loc["lite_transformer", "latency_noisy"] == "translate_t2"
    assert "in one attempt (before re-measuring)" in df.loc["lite_transformer", "latency_note"]
    assert df.loc["evolved_transformer", "latency_status"] == "ok"
    assert is_noisy(df.loc["transformer"], "forward_p50_ms_t1") and not is_noisy(df.loc["transformer"],
                                                                                  "translate_p50_ms_t1")
    md = render_markdown(build_leaderboard(results))
    assert "| 4.00 (noisy) |" in md
    assert "Noisy latency (CV above 5% after every attempt; marked (noisy), drawn hollow, left out of latency " \
           "Pareto fronts): Lite Transformer: translate t2: CV 7.0% in one attempt (before re-measuring); " \
           "Transformer: forward t1: CV 9.0% after 3 attempts; machine not quiet: load average 2.90 > 0.5." in md
    assert "noisy" in render_latex(build_leaderboard(results))


def _front_xs(fig) -> list[list[float]]:
    return [[float(x) for x in line.get_xdata()] for ax in fig.axes for line in ax.get_lines()
            if line.get_label() == "Pareto front"]


def _hollow_points(fig) -> list[tuple[float, float]]:
    out = []
    for ax in fig.axes:
        for coll in ax.collections:
            face = coll.get_facecolors()
            if len(coll.get_offsets()) and len(face) == 0 or (len(face) and np.all(face[:, 3] == 0)):
                out += [tuple(map(float, p)) for p in coll.get_offsets()]
    return out


def test_noisy_figures_are_hollow_and_off_the_latency_fronts(results):
    df = build_leaderboard(results)
    fig, _ = fig_latency_vs_macs(df)
    forward_front = _front_xs(fig)[0]
    assert 99.19296 not in [round(x, 5) for x in forward_front]  # the Transformer's MACs: not on the front
    assert (pytest.approx(99.19296), pytest.approx(4.0)) in _hollow_points(fig)
    fig, _ = fig_quality_vs_latency(df)
    assert 4.0 not in _front_xs(fig)[0] and any(p[0] == pytest.approx(4.0) for p in _hollow_points(fig))
    # the same records with the figure trusted: the Transformer leads the front
    _edit(results / "runs" / "transformer-c0ffee" / "latency-cpu-t1-forward.json", cv=0.01, latency_status="ok")
    fig, _ = fig_latency_vs_macs(build_leaderboard(results))
    assert 99.19296 in [round(x, 5) for x in _front_xs(fig)[0]] and _hollow_points(fig) == []


def _compare_record(results: Path, hashes: dict[str, str], workload: str, created: str, ratios: dict) -> Path:
    folder = results / "runs" / f"_compare-{'x'.join(hashes.values())}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"latency_compare-cpu-t1-{workload}.json"
    path.write_text(json.dumps({
        "version": 2, "stage": "latency_compare", "model": "+".join(hashes), "budget": "100M",
        "config_hash": "x", "members": [{"name": n, "model": n, "config_hash": h} for n, h in hashes.items()],
        "models": list(hashes), "reference": "transformer", "workload": workload, "device": "cpu", "threads": 1,
        "dtype": "fp32", "created": created,
        "ratios": {n: {"ratio": r, "ci95": [r - 0.02, r + 0.03]} for n, r in ratios.items()},
    }))
    return path


def test_paired_ratios_become_leaderboard_columns(results):
    current = {"transformer": "c0ffee", "lite_transformer": "c0ffee", "evolved_transformer": "c0ffee"}
    _compare_record(results, current, "forward", "2025-01-03T00:00:00+00:00",
                    {"transformer": 1.0, "lite_transformer": 1.32, "evolved_transformer": 1.41})
    _compare_record(results, current, "translate", "2025-01-03T00:00:00+00:00",
                    {"transformer": 1.0, "lite_transformer": 1.47, "evolved_transformer": 1.5})
    # a comparison of other configs (an older Lite): ignored, with a note
    _compare_record(results, {**current, "lite_transformer": "0ld"}, "forward", "2025-01-04T00:00:00+00:00",
                    {"transformer": 1.0, "lite_transformer": 9.0, "evolved_transformer": 9.0})
    df = build_leaderboard(results)
    cols = list(df.columns)
    assert cols.index("latency_ratio_forward_t1") > cols.index("translate_p90_ms_t2")  # beside the latency columns
    row = df[df["compression"] == "none"].set_index("model").loc["lite_transformer"]
    assert (row["latency_ratio_forward_t1"], row["latency_ratio_forward_t1_lo"], row["latency_ratio_forward_t1_hi"]) \
        == pytest.approx((1.32, 1.30, 1.35))
    assert row["latency_ratio_translate_t1"] == pytest.approx(1.47) and row["latency_ratio_ref"] == "transformer"
    assert any("not the reported configs, ignored" in n for n in df.attrs["notes"])
    md = render_markdown(df)
    assert "fwd ratio (1 thr, 95% CI)" in md and "| 1.32 [1.30, 1.35] |" in md and "| 1.00 [0.98, 1.03] |" in md
    # the second workload's ratio column is named as its p50 column, per task
    assert "transl. p50 ms (1 thr)" in md and "transl. ratio (1 thr, 95% CI)" in md
    assert "translate t1: " in md
    for task, name, line in (("sum", "summ.", "summarize"), ("lm", "gen.", "generate")):
        other = df.copy()
        other.attrs = df.attrs
        other["task"] = task
        head = render_markdown(other)
        assert f"{name} ratio (1 thr, 95% CI)" in head and "transl." not in head
        assert f"{line} t1: " in head and "translate t1" not in head  # the ratio line says what ran
    assert "Latency ratios vs Transformer, measured side by side" in md
    assert "forward t1: Lite Transformer 1.32 [1.30, 1.35], Evolved Transformer 1.41 [1.39, 1.44]" in md \
        or "forward t1: Evolved Transformer 1.41 [1.39, 1.44], Lite Transformer 1.32 [1.30, 1.35]" in md
    paths = write_leaderboard(results)
    assert "latency_ratio_forward_t1_hi" in paths["csv"].read_text().splitlines()[0]


def test_without_a_comparison_there_are_no_ratio_columns(results):
    df = build_leaderboard(results)
    assert not [c for c in df.columns if c.startswith("latency_ratio")]
    assert "ratio" not in render_markdown(df).split("\n")[0]
