"""Latency budgets (bench.budget.latency_solve) against a deterministic fake timer: a latency that grows with the
model's MACs, so the right grid point is known by hand, and the solver must land on it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.budget.latency_solve import CONFIRMS, solve_latency
from bench.budget.mac_solver import grid_widths
from bench.budget.solve import solve_model
from bench.budget.spec import load_budget
from bench.cost.analytic import analytic_macs, has_formula
from bench.cost.counting import search_macs
from bench.errors import BenchError
from models import create_model, resolve_config


def macs_of(model: str, cfg: Any, protocol: Any) -> int:
    """The hand formula's MACs, or for a family without one the primary counter's (shapes only; each config
    counted once: a fake machine is asked about the same widths many times)."""
    if has_formula(cfg):
        return analytic_macs(cfg, protocol)["macs"]
    key = (model, json.dumps(cfg.to_dict(), sort_keys=True, default=str), repr(protocol))
    if key not in _COUNTED:
        _COUNTED[key] = search_macs(lambda: create_model(model, **cfg.to_dict()), protocol)
    return _COUNTED[key]


_COUNTED: dict[tuple[str, str, str], int] = {}


def fake_timer(model: str, budget: Any, per_gmac_ms: float = 40.0, overhead_ms: float = 1.5) -> Any:
    """A monotone latency: overhead + MACs x rate (ms), recorded call by call."""
    calls: list[dict[str, Any]] = []

    def measure(config: dict[str, Any]) -> dict[str, Any]:
        cfg = resolve_config(model, config["task"], **{k: v for k, v in config.items() if k != "task"})
        calls.append(config)
        return {"p50_ms": overhead_ms + per_gmac_ms * macs_of(model, cfg, budget.protocol) / 1e9,
                "cv": 0.01, "latency_status": "ok"}

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def fake_set(budget: Any) -> Any:
    """The families timed together (bench.budget.latency_together) on the same fake machine, beside a 6 ms reference."""
    def measure(configs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        p50 = {row: fake_timer(fam, budget)(cfg)["p50_ms"] for row, (fam, cfg) in configs.items()}
        return {"ratios": {row: v / 6.0 for row, v in p50.items()}, "ref_p50_ms": 6.0}

    return measure


def by_hand(budget: Any, model: str, per_gmac_ms: float = 40.0, overhead_ms: float = 1.5) -> list[tuple[int, float]]:
    """(width, fake latency) of every grid width with the family's own ffn rule."""
    base = budget.base_config(model)
    return [(d, overhead_ms + per_gmac_ms * macs / 1e9) for d, _, macs in grid_widths(budget, model, base)]


@pytest.mark.parametrize("model", ["transformer", "evolved_transformer", "lite_transformer"])
def test_a_target_on_a_grid_point_lands_on_it(model: str, tmp_path: Path) -> None:
    budget = load_budget("6ms")
    widths = by_hand(budget, model)
    d_want, t_want = next((d, t) for d, t in widths if t > 6.0)  # the first width over 6 ms (fake)
    budget = load_budget(f"{t_want!r}ms")
    measure = fake_timer(model, budget)
    sol = solve_latency(budget, model, measure=measure, cache_dir=tmp_path, log=lambda _: None)
    assert sol.config.d_model == d_want
    assert sol.config.ffn_dim == resolve_config(model, "mt", **{**budget.base_config(model), "d_model": d_want}).ffn_dim
    assert sol.latency["p50_ms"] == pytest.approx(t_want, rel=1e-4)
    assert len(measure.calls) <= 14  # a bracket and a bisection, not a walk over the grid
    if sol.analytic_macs is not None:  # a family without a hand formula has none
        assert sol.macs == sol.analytic_macs or abs(sol.macs / sol.analytic_macs - 1) < 0.01


def test_between_grid_points_the_fine_knob_lands_within_tolerance(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    widths = by_hand(budget, "transformer")
    below = max((d, t) for d, t in widths if t <= 6.0)
    above = min((d, t) for d, t in widths if t > 6.0)
    assert abs(below[1] / 6 - 1) > 0.03 or abs(above[1] / 6 - 1) > 0.03  # the family rule alone misses
    measure = fake_timer("transformer", budget)
    sol = solve_latency(budget, "transformer", measure=measure, cache_dir=tmp_path, log=lambda _: None)
    nearer = min((below, above), key=lambda w: abs(math.log(w[1] / 6)))
    assert sol.config.d_model == nearer[0]
    assert abs(sol.latency["p50_ms"] / 6 - 1) <= 0.03
    assert sol.latency["setting"] == {"device": "cpu", "threads": 1, "workload": "forward", "dtype": "fp32",
                                      "backend": "eager"}
    # the confirmation is a measurement of its own, in the book
    book = json.loads((tmp_path / "transformer.json").read_text())
    assert [r["purpose"] for r in book["measurements"]].count("confirm") >= 1


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_a_solved_budget_is_read_back_without_measuring_and_a_partial_one_resumes(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    first = fake_timer("lite_transformer", budget)
    sol = solve_latency(budget, "lite_transformer", measure=first, cache_dir=tmp_path, log=lambda _: None)
    again = fake_timer("lite_transformer", budget)
    sol2 = solve_latency(budget, "lite_transformer", measure=again, cache_dir=tmp_path, log=lambda _: None)
    assert again.calls == [] and sol2.config == sol.config
    # drop the solution and the last two measurements: the solve resumes from the rest
    path = tmp_path / "lite_transformer.json"
    book = json.loads(path.read_text())
    book["solution"], book["measurements"] = None, book["measurements"][:-2]
    path.write_text(json.dumps(book))
    resumed = fake_timer("lite_transformer", budget)
    sol3 = solve_latency(budget, "lite_transformer", measure=resumed, cache_dir=tmp_path, log=lambda _: None)
    assert sol3.config == sol.config and 1 <= len(resumed.calls) <= CONFIRMS + 1  # the confirmations again
    # another setting (2 threads) does not reuse the 1-thread measurements
    other = load_budget(_file(tmp_path, "target_latency_ms: 6\nlatency: {threads: 2}\n"))
    fresh = fake_timer("lite_transformer", other)
    solve_latency(other, "lite_transformer", measure=fresh, cache_dir=tmp_path, log=lambda _: None)
    assert len(fresh.calls) >= 3


def test_an_unreachable_target_fails_in_one_line(tmp_path: Path) -> None:
    budget = load_budget("0.01ms")
    with pytest.raises(BenchError, match=r"infeasible for transformer: its smallest config") as err:
        solve_latency(budget, "transformer", measure=fake_timer("transformer", budget), cache_dir=tmp_path,
                      log=lambda _: None)
    assert "\n" not in str(err.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no book left for a target nothing meets
    huge = load_budget("1e9ms")
    with pytest.raises(BenchError, match="beyond transformer's grid"):
        solve_latency(huge, "transformer", measure=fake_timer("transformer", huge), cache_dir=tmp_path / "b",
                      log=lambda _: None)


def test_a_target_between_steps_the_grid_cannot_take_fails_naming_the_nearest(tmp_path: Path) -> None:
    budget = load_budget("5.5ms")
    calls = []

    def step(config: dict[str, Any]) -> dict[str, Any]:  # 5 ms up to d=120, 6 ms above, whatever the ffn
        calls.append(config)
        return {"p50_ms": 5.0 if config["d_model"] <= 120 else 6.0}

    with pytest.raises(BenchError, match=r"no transformer config confirmed within \+-3% of 5.5 ms .* the nearest "
                                         r"measured, d_model=1[23][0-9] ffn_dim=\d+, takes [56].000 ms") as err:
        solve_latency(budget, "transformer", measure=step, cache_dir=tmp_path, log=lambda _: None)
    assert "\n" not in str(err.value) and len(calls) < 40


def test_noise_is_outvoted_by_the_median_of_fresh_measurements(tmp_path: Path) -> None:
    budget = load_budget("6ms")
    clean = fake_timer("transformer", budget)
    state = {"n": 0}

    def noisy(config: dict[str, Any]) -> dict[str, Any]:  # every third measurement 6% slow
        state["n"] += 1
        got = clean(config)
        return {**got, "p50_ms": got["p50_ms"] * (1.06 if state["n"] % 3 == 0 else 1.0)}

    sol = solve_latency(budget, "transformer", measure=noisy, cache_dir=tmp_path, log=lambda _: None)
    assert abs(sol.latency["p50_ms"] / 6 - 1) <= 0.03
    book = json.loads((tmp_path / "transformer.json").read_text())
    chosen = [r for r in book["measurements"] if (r["width"], r["fine"]) == (sol.config.d_model, sol.config.ffn_dim)]
    assert sum(r["purpose"] == "confirm" for r in chosen) >= 2


def test_noise_common_to_a_process_cancels_in_the_ratio_to_the_reference(tmp_path: Path) -> None:
    """A third of the processes run 10% fast or slow as a whole (both models): the candidate's own figure
    moves, its ratio to the reference does not, and the solver lands where the noiseless timer would."""
    budget = load_budget("6ms")
    clean = fake_timer("lite_transformer", budget)
    ref_ms, state = 5.0, {"n": 0}

    def paired(config: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        weather = (1.0, 1.0, 1.1, 1.0, 1.0, 0.9)[state["n"] % 6]
        true = clean(config)["p50_ms"]
        return {"p50_ms": true * weather, "ratio": true / ref_ms, "ref_p50_ms": ref_ms * weather}

    sol = solve_latency(budget, "lite_transformer", measure=paired, cache_dir=tmp_path, log=lambda _: None)
    again = solve_latency(budget, "lite_transformer", measure=fake_timer("lite_transformer", budget),
                          cache_dir=tmp_path / "clean", log=lambda _: None)
    assert sol.config == again.config and abs(sol.latency["p50_ms"] / 6 - 1) <= 0.03
    book = json.loads((tmp_path / "lite_transformer.json").read_text())
    assert all(r["ratio"] is not None and r["ref_p50_ms"] is not None for r in book["measurements"])


def test_every_family_of_a_folder_scales_by_one_reference_level(tmp_path: Path) -> None:
    from bench.budget.latency_solve import MeasurementLog

    budget = load_budget("6ms")

    def paired(model: str, ref_ms: float) -> Any:
        clean = fake_timer(model, budget)
        return lambda config: {"p50_ms": clean(config)["p50_ms"], "ratio": clean(config)["p50_ms"] / 5.0,
                               "ref_p50_ms": ref_ms}

    solve_latency(budget, "transformer", measure=paired("transformer", 5.0), cache_dir=tmp_path, log=lambda _: None)
    n_first = len(json.loads((tmp_path / "transformer.json").read_text())["measurements"])
    solve_latency(budget, "evolved_transformer", measure=paired("evolved_transformer", 5.2), cache_dir=tmp_path,
                  log=lambda _: None)
    et = json.loads((tmp_path / "evolved_transformer.json").read_text())
    book = MeasurementLog(tmp_path / "evolved_transformer.json", {**et["key"]})
    levels = sorted([5.0] * n_first + [5.2] * len(et["measurements"]))
    assert book.reference_level() == pytest.approx(levels[len(levels) // 2] if len(levels) % 2 else
                                                   (levels[len(levels) // 2 - 1] + levels[len(levels) // 2]) / 2)
    assert book.shared == [5.0] * n_first  # the Transformer's reference figures count for ET too
    other = MeasurementLog(tmp_path / "evolved_transformer.json", {**et["key"], "cpu": "another"})
    assert other.shared == []  # another machine's measurements do not


def test_a_solve_survives_a_change_of_dropout_but_not_of_a_timed_knob(tmp_path: Path) -> None:
    """Dropouts are no-ops at inference: a budget that changes its regularisation times the same models, so its
    solve is reused (nothing measured again); a knob that changes the model (heads) starts a new solve."""
    from dataclasses import replace

    budget = load_budget("6ms")
    first = solve_latency(budget, "transformer", measure=fake_timer("transformer", budget), cache_dir=tmp_path,
                          log=lambda _: None)

    def never(config: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("measured again")

    for knobs in ({"dropout": 0.2}, {"dropout": 0.3, "attention_dropout": 0.2, "activation_dropout": 0.1}):
        other = replace(budget, shared={**budget.shared, **knobs})
        assert other.base_config("transformer") != budget.base_config("transformer")
        again = solve_latency(other, "transformer", measure=never, cache_dir=tmp_path, log=lambda _: None)
        assert again.config.to_dict() == {**first.config.to_dict(), **knobs}
    heads = replace(budget, shared={**budget.shared, "heads": 4})
    with pytest.raises(AssertionError, match="measured again"):
        solve_latency(heads, "transformer", measure=never, cache_dir=tmp_path, log=lambda _: None)


def test_the_reference_is_the_transformer_at_the_mac_anchor() -> None:
    from bench.budget.latency_solve import reference_config

    family, config = reference_config(load_budget("6ms"))
    assert family == "transformer" and (config["d_model"], config["ffn_dim"]) == (136, 560)


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lat.yaml"
    template = (Path(__file__).resolve().parents[2] / "budgets" / "100M.yaml").read_text()
    body = "\n".join(line for line in template.splitlines() if not line.startswith(("name:", "target_macs:")))
    path.write_text(f"name: lat\n{text}{body}\n")
    return str(path)


def test_latency_budget_specs_and_files(tmp_path: Path) -> None:
    b = load_budget("5.6ms")
    assert (b.name, b.latency.target_ms, b.latency.tolerance, b.tuned_from) == ("5.6ms", 5.6, 0.03, "100M")
    assert b.variants == {} and b.rows() == list(load_budget("100M").models)  # the template's families
    assert b.results_name() == "5.6ms" and load_budget("100M").latency is None
    f = load_budget(_file(tmp_path, "target_latency_ms: 4.5\nlatency: {threads: 2, workload: translate}\n"))
    assert (f.latency.target_ms, f.latency.threads, f.latency.workload, f.target_macs) == (4.5, 2, "translate",
                                                                                          100_000_000)
    for text, match in [("target_latency_ms: 4\nlatency: {backend: tensorrt}\n", "unknown latency backend"),
                        ("target_latency_ms: 4\nlatency: {thread: 2}\n", "unknown key"),
                        ("target_latency_ms: -1\n", "must be positive"),
                        ("latency: {threads: 2}\n", "needs 'target_latency_ms'")]:
        with pytest.raises(BenchError, match=match):
            load_budget(_file(tmp_path, text))
    for bad in ("0ms", "fast ms"):
        with pytest.raises(BenchError):
            load_budget(bad)


def test_solve_model_dispatches_a_latency_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.budget.latency_solve as ls
    import bench.budget.latency_together as lt

    budget = load_budget("6ms")
    monkeypatch.setattr(ls, "measure_in_child", lambda b, m, ref=None: fake_timer(m, b))
    monkeypatch.setattr(lt, "measure_set_in_child", lambda b, ref=None: fake_set(b))
    sol = solve_model(budget, "evolved_transformer", cache_dir=tmp_path)
    assert sol.latency is not None and abs(sol.latency["rel_error"]) <= 0.03
    assert sol.to_dict()["latency"]["target_ms"] == 6.0


def test_the_median_of_processes_by_hand() -> None:
    from bench.latency import median_of_processes

    recs = [{"p50_ms": 5.0, "cv": 0.1}, {"p50_ms": 3.0, "cv": 0.2}, {"p50_ms": 4.0, "cv": 0.3}]
    got = median_of_processes(recs)
    assert (got["p50_ms"], got["cv"], got["processes"], got["process_p50_ms"]) == (4.0, 0.3, 3, [5.0, 3.0, 4.0])
    assert median_of_processes(recs[:1]) is recs[0]
    with pytest.raises(BenchError, match="odd number"):
        median_of_processes(recs[:2])


def test_a_latency_budgets_own_setting_is_the_median_of_five_processes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's lone figure in the budget's own setting (forward, 1 thread, fp32, eager) is what the
    tolerance is checked against: five fresh processes, their median; any other setting is timed once."""
    import bench.budget.latency_solve as ls
    import bench.budget.latency_together as lt
    import bench.latency
    from bench.sweep.runner import Sweep, SweepOptions

    monkeypatch.setattr(ls, "measure_in_child", lambda b, m, ref=None: fake_timer(m, b))
    monkeypatch.setattr(lt, "measure_set_in_child", lambda b, ref=None: fake_set(b))
    figures = iter([6.9, 5.1, 6.0, 5.9, 6.2, 40.0])  # five forward processes, then the translate one
    calls: list[str] = []

    def fake(model: str, config: dict[str, Any], *, workload: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(workload)
        return {"p50_ms": next(figures), "cv": 0.01, "latency_status": "ok", "workload": workload, "device": "cpu",
                "threads": kwargs["threads"], "dtype": "fp32"}

    monkeypatch.setattr(bench.latency, "measure_in_subprocess", fake)
    Sweep(SweepOptions(budget="6ms", models=["transformer"], threads=[1], stages=("latency",),
                       results_root=tmp_path / "results", cache_root=tmp_path / "cache", log=lambda m: None)).run()
    (run,) = (tmp_path / "results" / "6ms" / "runs").glob("transformer-*")
    fwd = json.loads((run / "latency-cpu-t1-forward.json").read_text())
    dec = json.loads((run / "latency-cpu-t1-translate.json").read_text())
    assert calls == ["forward"] * 5 + ["translate"]
    assert fwd["p50_ms"] == 6.0 and fwd["process_p50_ms"] == [6.9, 5.1, 6.0, 5.9, 6.2] and fwd["processes"] == 5
    assert dec["p50_ms"] == 40.0 and "processes" not in dec


def test_a_latency_budgets_leaderboard_states_each_familys_departure_from_the_target() -> None:
    """On the committed latency-budget folder: the note's figures are the records' p50 over the target."""
    from bench.report.leaderboard import build_leaderboard, display_name
    from bench.report.render import render_markdown

    folder = Path(__file__).resolve().parents[2] / "results" / "5.4ms"
    df = build_leaderboard(folder)
    md = render_markdown(df)
    assert "Against the 5.4 ms target, forward p50 at 1 thread" in md
    measured = [r for _, r in df.iterrows() if isinstance(r["forward_p50_ms_t1"], float)
                and not math.isnan(r["forward_p50_ms_t1"])]
    for r in measured:
        dev = (r["forward_p50_ms_t1"] / 5.4 - 1) * 100
        assert f"{display_name(r['model'])} {r['forward_p50_ms_t1']:.2f} ms ({dev:+.1f}%)" in md
    assert measured or "not measured" in md


def test_the_fine_knob_aims_at_the_inner_half_of_the_tolerance(tmp_path: Path) -> None:
    """A width whose family-rule config is 2.5% off (inside the 3% tolerance) is still stepped toward the
    target, so that families confirmed within the tolerance end near one another, not up to 6% apart."""
    budget = load_budget("6ms")
    d, t = next((d, t) for d, t in by_hand(budget, "transformer") if t > 6.0)
    budget = load_budget(f"{t / 1.025!r}ms")
    sol = solve_latency(budget, "transformer", measure=fake_timer("transformer", budget), cache_dir=tmp_path,
                        log=lambda _: None)
    rule = resolve_config("transformer", "mt", **{**budget.base_config("transformer"), "d_model": d}).ffn_dim
    assert abs(sol.latency["rel_error"]) <= 0.015 and (sol.config.d_model, sol.config.ffn_dim) != (d, rule)


def test_a_reference_level_that_drifts_during_the_confirmation_is_stepped_after(tmp_path: Path) -> None:
    """The machine slows while the chosen config is confirmed: the reference level (the median of every
    reference figure) rises, the estimate leaves the inner half of the tolerance, and the knob steps again."""
    budget = load_budget("6ms")
    clean = fake_timer("transformer", budget)
    state = {"n": 0}

    def paired(config: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        ref = 5.0 if state["n"] <= 6 else 5.12  # +2.4% from the seventh process on
        true = clean(config)["p50_ms"]
        return {"p50_ms": true * ref / 5.0, "ratio": true / 5.0, "ref_p50_ms": ref}

    sol = solve_latency(budget, "transformer", measure=paired, cache_dir=tmp_path, log=lambda _: None)
    assert abs(sol.latency["rel_error"]) <= 0.015  # confirmed at +2.4% first (within 3%), then stepped
    assert state["n"] > 14


@pytest.mark.parametrize("model", ["transformer", "evolved_transformer", "lite_transformer"])
def test_the_lazily_counted_grid_answers_as_the_whole_counted_grid(model: str) -> None:
    # the latency solver bisects the grid on MACs instead of counting every width; its answers are the ones a
    # walk over the whole counted grid gives (the first at or above, the last at or below, the nearest)
    from bench.budget.mac_solver import LazyGrid

    budget = load_budget("6ms")
    base = budget.base_config(model)
    full = [w[2] for w in grid_widths(budget, model, base)]
    for x in [0, full[0], 3.3e7, 1e8, full[len(full) // 2] + 1, 2.5e9, full[-1], full[-1] + 1]:
        grid = LazyGrid(budget, model, base)
        assert grid.first_at_least(x) == next((i for i, m in enumerate(full) if m >= x), None), x
        assert grid.last_at_most(x) == max((i for i, m in enumerate(full) if m <= x), default=None), x
        assert grid.nearest(x) == min(range(len(full)), key=lambda i: abs(full[i] - x)), x
        lo = len(full) // 3
        assert grid.first_at_least(x, lo=lo) == next((i for i in range(lo, len(full)) if full[i] >= x), None)
        assert grid.last_at_most(x, hi=lo) == max((i for i in range(lo + 1) if full[i] <= x), default=None)
        assert grid.counted <= 6 * math.ceil(math.log2(len(full)))  # bisections, not the whole grid
    assert [grid.macs(i) for i in range(len(full))] == full
