"""A latency budget's families confirmed together (bench.budget.latency_together), against deterministic fake timers:
each family's own solve sees a latency that is off by a family-specific factor (the machine state of its own
minutes), the set timed together sees the true one, and the step must move the fine knobs until the
families, timed together, are within the tolerance of the target and of one another."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.budget.latency_together import JOINT_PROCESSES, TOGETHER_FILE, solve_latency_budget
from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.errors import BenchError
from models import resolve_config
from tests.bench.test_latency_solve import macs_of

FAMILIES = tuple(load_budget("100M").models)  # the template file's families: a latency budget's rows
REF_MS = 6.0  # the reference's figure in every fake process


def true_ms(model: str, config: dict[str, Any], budget: Any) -> float:
    """The fake machine: 1.5 ms + 40 ms per GMAC (monotone in width and in ffn_dim)."""
    cfg = resolve_config(model, config["task"], **{k: v for k, v in config.items() if k != "task"})
    return 1.5 + 40.0 * macs_of(model, cfg, budget.protocol) / 1e9


def own_timers(budget: Any, bias: dict[str, float]) -> dict[str, Any]:
    """Each family's own solve: the true latency times its bias."""
    def timer(model: str) -> Any:
        def measure(config: dict[str, Any]) -> dict[str, Any]:
            return {"p50_ms": true_ms(model, config, budget) * bias.get(model, 1.0), "cv": 0.01,
                    "latency_status": "ok"}
        return measure
    return {m: timer(m) for m in FAMILIES}


def set_timer(budget: Any, bias: dict[str, float] | None = None) -> Any:
    """The set timed together: the true latencies (times ``bias``), as ratios to a 6 ms reference."""
    calls: list[dict[str, Any]] = []

    def measure(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        calls.append(configs)
        p50 = {row: true_ms(fam, cfg, budget) * (bias or {}).get(row, 1.0) for row, (fam, cfg) in configs.items()}
        return {"ratios": {row: v / REF_MS for row, v in p50.items()}, "ref_p50_ms": REF_MS, "p50_ms": p50}

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def test_families_off_on_their_own_are_moved_until_together_they_match(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    lat = budget.latency
    own = own_timers(budget, {"lite_transformer": 1.06, "evolved_transformer": 0.97})
    together = set_timer(budget)
    sols = {m: solve_latency_budget(budget, m, cache_dir=tmp_path, measures=own, measure_set=together,
                                    log=lambda _: None) for m in FAMILIES}
    # by hand: each family's config, timed on the true machine, within 3% of 6 ms and of one another
    truth = {m: true_ms(m, s.config.to_dict(), budget) for m, s in sols.items()}
    assert all(abs(t / 6.0 - 1) <= lat.tolerance for t in truth.values()), truth
    assert max(truth.values()) / min(truth.values()) - 1 <= lat.tolerance, truth
    # Lite's own solve (6% slow) chose a config 6% fast on the true machine: the step moved its fine knob up
    book = json.loads((tmp_path / "lite_transformer.json").read_text())["solution"]
    lite = sols["lite_transformer"]
    assert (lite.config.d_model, lite.config.ffn_dim) != (book["width"], book["fine"])
    assert true_ms("lite_transformer", resolve_config("lite_transformer", "mt", **{
        **budget.base_config("lite_transformer"), "d_model": book["width"], "ffn_dim": book["fine"]}).to_dict(),
        budget) < 6.0 * (1 - lat.tolerance)
    # the solution states the estimate from the shared processes, which is the true latency here
    assert lite.latency["p50_ms"] == pytest.approx(truth["lite_transformer"], rel=1e-3)
    assert lite.latency["together"]["spread"] <= lat.tolerance
    # every set measured in JOINT_PROCESSES processes; the first one is the families' own solutions
    record = json.loads((tmp_path / TOGETHER_FILE).read_text())
    assert len(together.calls) == len(record["measurements"]) and len(together.calls) % JOINT_PROCESSES == 0
    assert record["measurements"][0]["configs"]["lite_transformer"] == [book["width"], book["fine"]]
    assert record["solution"]["lite_transformer"] == [lite.config.d_model, lite.config.ffn_dim]


def test_a_confirmed_set_is_read_back_without_measuring_and_an_interrupted_one_resumes(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    own = own_timers(budget, {"lite_transformer": 1.06})
    first = set_timer(budget)
    sol = solve_latency_budget(budget, "transformer", cache_dir=tmp_path, measures=own, measure_set=first,
                               log=lambda _: None)
    again = set_timer(budget)
    for m in FAMILIES:
        got = solve_latency_budget(budget, m, cache_dir=tmp_path, measures=own, measure_set=again,
                                   log=lambda _: None)
        assert got.config == (sol.config if m == "transformer" else got.config)
    assert again.calls == []
    # drop the solution and the last process: only that process is measured again
    path = tmp_path / TOGETHER_FILE
    record = json.loads(path.read_text())
    n = len(record["measurements"])
    record["solution"], record["measurements"] = None, record["measurements"][:-1]
    path.write_text(json.dumps(record))
    resumed = set_timer(budget)
    solve_latency_budget(budget, "lite_transformer", cache_dir=tmp_path, measures=own, measure_set=resumed,
                         log=lambda _: None)
    assert len(resumed.calls) == 1 and len(json.loads(path.read_text())["measurements"]) == n


def test_a_family_no_knob_can_bring_to_the_others_fails_in_one_line(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    own = own_timers(budget, {})

    def stuck(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        # Lite timed together is 10% over the target whatever its config
        p50 = {row: 6.6 if row == "lite_transformer" else true_ms(fam, cfg, budget)
               for row, (fam, cfg) in configs.items()}
        return {"ratios": {row: v / REF_MS for row, v in p50.items()}, "ref_p50_ms": REF_MS}

    with pytest.raises(BenchError) as err:
        solve_latency_budget(budget, "evolved_transformer", cache_dir=tmp_path, measures=own, measure_set=stuck,
                             log=lambda _: None)
    msg = str(err.value)
    assert "\n" not in msg and "confirmed together" in msg and "lite_transformer 6.600 ms" in msg
    assert TOGETHER_FILE in msg  # the record, so that a re-run goes on from it


def test_a_variant_keeps_its_own_solve(tmp_path: Path) -> None:
    # a latency budget file with the 100M file's rows, its post-norm variants among them
    template = (Path(__file__).resolve().parents[2] / "budgets" / "100M.yaml").read_text()
    body = "\n".join(line for line in template.splitlines() if not line.startswith(("name:", "target_macs:")))
    (tmp_path / "lat.yaml").write_text(f"name: lat\ntarget_latency_ms: 6\n{body}\n")
    budget = load_budget(str(tmp_path / "lat.yaml"))
    variant = "lite_transformer-postnorm"
    assert variant in budget.variants

    def never(configs: Any) -> dict[str, Any]:
        raise AssertionError("a variant is not timed together")

    family = budget.family_of(variant)
    own = {variant: own_timers(budget, {})[family]}
    sol = solve_latency_budget(budget, variant, cache_dir=tmp_path, measures=own, measure_set=never,
                               log=lambda _: None)
    assert abs(sol.latency["rel_error"]) <= budget.latency.tolerance and "together" not in sol.latency


def test_solve_model_confirms_a_latency_budgets_families_together(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.budget.latency_solve as ls
    import bench.budget.latency_together as lt

    budget = load_budget("6ms")
    monkeypatch.setattr(ls, "measure_in_child", lambda b, m, ref=None: own_timers(b, {})[m])
    monkeypatch.setattr(lt, "measure_set_in_child", lambda b, ref=None: set_timer(b))
    sol = solve_model(budget, "lite_transformer", cache_dir=tmp_path)
    assert sol.latency["together"]["spread"] <= 0.03
    assert set(sol.latency["together"]["p50_ms"]) == set(FAMILIES)
    assert all(math.isfinite(v) for v in sol.latency["together"]["p50_ms"].values())


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_a_sweeps_own_setting_figures_are_measured_in_interleaved_rounds(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The lone forward figures of a latency budget's families come from fresh processes in rotating rounds
    (T L, L T, T L, ...), each family's record the median of its own five; --force measures them once."""
    import bench.budget.latency_solve as ls
    import bench.budget.latency_together as lt
    import bench.latency
    import bench.sweep.side_by_side
    from bench.sweep.runner import Sweep, SweepOptions

    monkeypatch.setattr(ls, "measure_in_child", lambda b, m, ref=None: own_timers(b, {})[m])
    monkeypatch.setattr(lt, "measure_set_in_child", lambda b, ref=None: set_timer(b))
    monkeypatch.setattr(bench.sweep.side_by_side, "compare_stages", lambda sweep: [])
    figures = {"transformer": iter([6.0, 6.3, 5.7, 6.1, 5.9] * 2),
               "lite_transformer": iter([5.0, 5.4, 4.6, 5.2, 4.8] * 2)}
    calls: list[tuple[str, str]] = []

    def fake(model: str, config: dict[str, Any], *, workload: str, **kwargs: Any) -> dict[str, Any]:
        calls.append((model, workload))
        p50 = next(figures[model]) if workload == "forward" else 40.0
        return {"p50_ms": p50, "cv": 0.01, "latency_status": "ok", "workload": workload, "device": "cpu",
                "threads": kwargs["threads"], "dtype": "fp32"}

    monkeypatch.setattr(bench.latency, "measure_in_subprocess", fake)

    def sweep(force: bool) -> None:
        Sweep(SweepOptions(budget="6ms", models=["transformer", "lite_transformer"], threads=[1],
                           stages=("latency",), force=force, results_root=tmp_path / "results",
                           cache_root=tmp_path / "cache", log=lambda m: None)).run()

    sweep(False)
    forward = [m for m, w in calls if w == "forward"]
    assert forward == ["transformer", "lite_transformer", "lite_transformer", "transformer"] * 2 + [
        "transformer", "lite_transformer"]
    assert [w for _, w in calls[10:]] == ["translate", "translate"]  # the other settings, per model, after
    for model, want in (("transformer", [6.0, 6.3, 5.7, 6.1, 5.9]), ("lite_transformer", [5.0, 5.4, 4.6, 5.2, 4.8])):
        (run,) = (tmp_path / "results" / "6ms" / "runs").glob(f"{model}-*")
        rec = json.loads((run / "latency-cpu-t1-forward.json").read_text())
        assert rec["process_p50_ms"] == want and rec["p50_ms"] == sorted(want)[2]
        assert rec["interleaved_with"] == [m for m in ("transformer", "lite_transformer") if m != model]
    from bench.records.spans import latency_overlaps, stage_spans

    spans, _ = stage_spans([tmp_path / "results" / "6ms"])  # one stage for both: no overlap between them
    assert len({(s.start, s.end) for s in spans if s.stage == "latency" and s.interleaved}) == 1
    assert latency_overlaps(spans) == []
    calls.clear()
    sweep(True)  # measured again, once: interleaved, then not again by the per-model stage
    assert [w for _, w in calls] == ["forward"] * 10 + ["translate"] * 2


def test_the_reference_level_spans_the_own_solves_so_a_faster_minute_moves_no_knob(tmp_path: Path) -> None:
    """Timed beside a 6 ms reference in the own solves, then the machine runs 10% faster while the set is
    timed (the reference at 5.4 ms there, every ratio unchanged): the level is the median over all those
    processes, 6 ms, so the own solutions are confirmed as they are instead of every knob chasing the minute."""
    budget = load_budget("6ms")

    def paired(model: str) -> Any:
        def measure(config: dict[str, Any]) -> dict[str, Any]:
            t = true_ms(model, config, budget)
            return {"p50_ms": t, "ratio": t / REF_MS, "ref_p50_ms": REF_MS, "cv": 0.01, "latency_status": "ok"}
        return measure

    calls: list[Any] = []

    def faster(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        calls.append(configs)
        return {"ratios": {row: true_ms(fam, cfg, budget) / REF_MS for row, (fam, cfg) in configs.items()},
                "ref_p50_ms": 0.9 * REF_MS}

    own = {m: paired(m) for m in FAMILIES}
    sol = solve_latency_budget(budget, "lite_transformer", cache_dir=tmp_path, measures=own, measure_set=faster,
                               log=lambda _: None)
    record = json.loads((tmp_path / TOGETHER_FILE).read_text())
    assert len(calls) == JOINT_PROCESSES and record["solution"] == record["key"]["own"]
    assert sol.latency["p50_ms"] == pytest.approx(true_ms("lite_transformer", sol.config.to_dict(), budget), rel=1e-3)
