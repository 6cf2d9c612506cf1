"""Latency that other work cannot contaminate, without a timed assertion: the quiet-machine wait on synthetic
probes, re-measuring on a synthetic noisy timer, paired ratios on a synthetic clock, the ``--compare`` command
and its bad input, and the span check on synthetic records."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import bench.latency.compare as compare
from bench.cli import main
from bench.errors import BenchError
from bench.latency import measure_latency
from bench.latency.quiet import LoadSample, QuietPolicy, cpu_jiffies, running_threads, wait_for_quiet
from bench.latency.timing import Measurement, measure_steady, tries_from_env
from bench.records.spans import Span, latency_overlaps, stage_runs, stage_spans
from tests.conftest import small_model

FAST = dict(gemm=False, memory=False, warmup=1, min_runs=30, min_time_s=0.0)


# ============================================================================================ quiet machine
PROC_STAT = """cpu  1000 50 300 8000 100 10 40 500 0 0
cpu0 500 25 150 4000 50 5 20 250 0 0
intr 12345
"""


def test_proc_stat_and_thread_states_are_read(tmp_path):
    busy, steal, total = cpu_jiffies(PROC_STAT)
    assert (busy, steal, total) == (1000 + 50 + 300 + 10 + 40, 500, 1400 + 8000 + 100 + 500)
    with pytest.raises(ValueError):
        cpu_jiffies("intr 1\n")
    for tid, state in ((1, "R"), (2, "S"), (3, "R"), (4, "D")):
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "stat").write_text(f"{tid} (python (x)) {state} 1 2 3\n")
    assert running_threads(tmp_path) == 2
    assert running_threads(tmp_path / "absent") == 0


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_wait_for_quiet_waits_until_the_others_load_is_gone():
    t = FakeTime()
    samples = iter([LoadSample(2.9, 1, 1.9, 1.95, 0.0)] * 3 + [LoadSample(1.2, 1, 0.2, 0.05, 0.01)])

    def probe(window: float) -> LoadSample:
        t.now += window
        return next(samples)

    said: list[str] = []
    res = wait_for_quiet(QuietPolicy(max_wait_s=60, window_s=0.5), probe=probe, clock=t.clock, sleep=t.sleep,
                         log=said.append)
    assert res["quiet"] is True and res["probes"] == 4 and res["not_quiet"] is None
    assert res["load"]["foreign_load_1m"] == 0.2 and len(t.slept) == 3 and len(said) == 1
    assert res["quiet_wait_s"] == pytest.approx(4 * 0.5 + sum(t.slept))


@pytest.mark.parametrize("sample, why", [
    (LoadSample(2.9, 1, 1.9, 0.1, 0.0), "load average 2.90 (1.90 not ours) > 0.5"),
    (LoadSample(0.2, 1, 0.0, 1.4, 0.0), "other processes kept 1.40 cores busy > 0.5"),
    (LoadSample(0.2, 1, 0.0, 0.1, 0.2), "CPU steal 20.0% > 5%"),
])
def test_wait_for_quiet_is_bounded_and_says_why(sample, why):
    t = FakeTime()

    def probe(window: float) -> LoadSample:
        t.now += window
        return sample

    res = wait_for_quiet(QuietPolicy(max_wait_s=10, window_s=0.5), probe=probe, clock=t.clock, sleep=t.sleep)
    assert res["quiet"] is False and res["not_quiet"] == why
    assert 10 <= res["quiet_wait_s"] <= 11.5  # the fake clock's seconds: bounded by max_wait_s


def test_probe_leaves_out_this_process_own_load(monkeypatch):
    import bench.latency.quiet as quiet

    class Clock:
        now = 100.0

        def monotonic(self) -> float:
            return self.now

        def sleep(self, s: float) -> None:
            self.now += s

    stats = iter([(1000, 10, 5000), (1000 + 150, 10 + 5, 5000 + 200)])  # 1.5 s of busy jiffies, 5 of steal
    own = iter([20.0, 20.5])  # of which 0.5 s were ours
    monkeypatch.setattr(quiet, "time", Clock())
    monkeypatch.setattr(quiet, "_read_stat", lambda: next(stats))
    monkeypatch.setattr(quiet, "_own_cpu_s", lambda: next(own))
    monkeypatch.setattr(quiet.os, "getloadavg", lambda: (2.25, 1.0, 1.0))
    monkeypatch.setattr(quiet.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(quiet, "running_threads", lambda: 1)
    sample = quiet.probe(1.0)
    assert sample.foreign_load_1m == pytest.approx(1.25)  # 2.25 minus our one running thread
    assert sample.foreign_busy == pytest.approx(1.0)  # (150 jiffies / 100 Hz - 0.5 s ours) over 1 s
    assert sample.steal == pytest.approx(5 / 200)


def test_all_attempts_of_a_figure_share_the_quiet_wait(monkeypatch):
    from bench.latency import record

    given: list[float] = []

    def fake_wait(policy):
        given.append(policy.max_wait_s)
        return {"quiet": False, "quiet_wait_s": 25.0, "not_quiet": "busy", "load": {}, "probes": 1}

    monkeypatch.setattr(record, "wait_for_quiet", fake_wait)
    rec = measure_latency(small_model("transformer"), tries=3, clock=SyntheticTimer(noisy(0.10)),
                          quiet=QuietPolicy(max_wait_s=60), **FAST)
    assert given == [60, 35, 10]  # one budget of 60 s for the figure, not 60 s per attempt
    assert rec.to_dict()["quiet_wait_s"] == 75 and rec.to_dict()["machine_quiet"] is False


def test_quiet_policy_from_the_environment_and_bad_values(monkeypatch):
    monkeypatch.setenv("LITEBENCH_QUIET_WAIT", "30")
    monkeypatch.setenv("LITEBENCH_QUIET_STEAL", "0.1")
    assert QuietPolicy.from_env() == QuietPolicy(max_wait_s=30, max_load=0.5, max_steal=0.1, window_s=0.01)
    assert QuietPolicy.from_env(max_wait_s=5).max_wait_s == 5  # the command line wins
    monkeypatch.setenv("LITEBENCH_QUIET_LOAD", "-1")
    with pytest.raises(BenchError, match="LITEBENCH_QUIET_LOAD must be a number >= 0, got '-1'"):
        QuietPolicy.from_env()


# ============================================================================================ noisy figures
class SyntheticTimer:
    """A ``perf_counter_ns`` stand-in: each timed call lasts the next duration (ms) of ``durations``."""

    def __init__(self, durations) -> None:
        self.durations = iter(durations)
        self.t = 0
        self.ticks = itertools.count()

    def __call__(self) -> int:
        if next(self.ticks) % 2:  # the second reading of a call: it lasted the next duration
            self.t += int(next(self.durations) * 1e6)
        return self.t


def noisy(cv: float, n: int = 10_000) -> list[float]:
    """Durations around 10 ms alternating +- 10 * cv ms: CV = cv (up to n / (n - 1))."""
    return [10 + (10 * cv if i % 2 else -10 * cv) for i in range(n)]


def test_a_noisy_figure_is_measured_again_and_marked_noisy():
    rec = measure_latency(small_model("transformer"), tries=3, clock=SyntheticTimer(noisy(0.10)), **FAST)
    iso, d = rec.isolation, rec.to_dict()
    assert [a["attempt"] for a in iso.attempts] == [1, 2, 3]  # measured again, every attempt kept
    assert all(a["cv"] == pytest.approx(0.10, rel=0.02) and len(a["samples_ms"]) == 30 for a in iso.attempts)
    assert iso.status == d["latency_status"] == "noisy" and "still noisy after 3 attempts" in d["warning"]
    assert d["tries"] == 3 and len(d["attempts"]) == 3 and d["cv"] == pytest.approx(0.10, rel=0.02)


def test_a_figure_that_settles_keeps_every_attempt_and_is_ok():
    durations = noisy(0.10, 30) + noisy(0.01)
    rec = measure_latency(small_model("transformer"), tries=3, clock=SyntheticTimer(durations), **FAST)
    d = rec.to_dict()
    assert d["latency_status"] == "ok" and len(d["attempts"]) == 2 and d["chosen_attempt"] == 2
    assert d["attempts"][0]["cv"] == pytest.approx(0.10, rel=0.02) and d["cv"] == pytest.approx(0.01, rel=0.02)
    assert d["samples_ms"] == d["attempts"][1]["samples_ms"]
    assert "noisy" not in (d["warning"] or "")


def test_re_measuring_rules():
    def once(cv):
        return lambda: Measurement(noisy(cv, 30))

    assert measure_steady(once(0.02), tries=3).status == "ok"
    steady = measure_steady(once(0.08), tries=2, before=lambda: {"quiet": True})
    assert steady.status == "noisy" and len(steady.attempts) == 2 and steady.attempts[0]["quiet"] is True
    with pytest.raises(BenchError, match="tries must be a positive integer"):
        measure_steady(once(0.02), tries=0)


def test_tries_from_the_environment(monkeypatch):
    monkeypatch.delenv("LITEBENCH_LATENCY_TRIES")
    assert tries_from_env() == 3
    monkeypatch.setenv("LITEBENCH_LATENCY_TRIES", "many")
    with pytest.raises(BenchError, match="LITEBENCH_LATENCY_TRIES must be a positive integer"):
        tries_from_env()


# ============================================================================================ paired ratios
def test_rounds_rotate_the_order():
    assert compare.rotations(3, 4) == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_paired_ratios_on_known_rounds():
    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0, 0.3, 40))  # the machine's speed moves between rounds, the same for all models
    rounds = np.column_stack([10 * drift, 15 * drift, 20 * drift * np.exp(rng.normal(0, 0.02, 40))])
    out = compare.paired_ratios(rounds)
    assert out[0] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
    assert out[1]["ratio"] == pytest.approx(1.5) and out[1]["ci95"] == pytest.approx([1.5, 1.5])
    lo, hi = out[2]["ci95"]
    assert lo < out[2]["ratio"] < hi and lo < 2.0 < hi and hi - lo < 0.05


def test_compare_times_interleaved_and_reports_ratios_with_intervals(monkeypatch):
    """Each model's calls last a known time on a synthetic clock: model B twice model A's, C 3x with noise."""
    current: list[str] = []
    real = compare.make_workload

    def tagged(model, workload, **kw):
        fn = real(model, workload, **kw)
        tag = model.config.d_model

        def call():
            current.append(tag)
            return fn()

        return call

    per_model = {32: 5.0, 40: 10.0, 48: 15.0}
    noise = itertools.cycle([0.99, 1.01, 1.0])
    ticks = itertools.count()
    t = [0]

    def clock() -> int:
        if next(ticks) % 2:
            t[0] += int(per_model[current[-1]] * (next(noise) if current[-1] == 48 else 1) * 1e6)
        return t[0]

    monkeypatch.setattr(compare, "make_workload", tagged)
    tiny = dict(heads=4, encoder_attention_heads=4, encoder_layers=1, decoder_layers=1, vocab_size=50)
    members = [(f"m{d}", "transformer", dict(tiny, d_model=d)) for d in (32, 40, 48)]
    res = compare.compare_latency(members, rounds=6, warmup=2, clock=clock)
    order = [current[i] for i in range(len(current)) if i == 0 or current[i] != current[i - 1]]
    assert order[3:3 + 9] == [32, 40, 48, 40, 48, 32, 48, 32, 40]  # after the warm-up: rotating rounds
    assert res["models"] == ["m32", "m40", "m48"] and res["reference"] == "m32" and res["rounds"] == 6
    assert res["p50_ms"] == {"m32": 5.0, "m40": 10.0, "m48": pytest.approx(15.0)}
    assert res["ratios"]["m32"] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
    assert res["ratios"]["m40"]["ratio"] == pytest.approx(2.0) and res["ratios"]["m40"]["ci95"] == pytest.approx([2, 2])
    lo, hi = res["ratios"]["m48"]["ci95"]
    assert lo <= res["ratios"]["m48"]["ratio"] <= hi and lo < 3.0 < hi
    assert res["lock_mode"] == "exclusive" and set(res["calls"]) == set(res["models"])
    json.dumps(res)  # strict JSON


@pytest.mark.slow  # end to end through real processes: make test-slow (the default run stays under 15 min)
def test_latency_compare_command_prints_json_with_ratios(capsys):
    rc = main(["latency", "--compare", "transformer,lite_transformer", "--budget", "100M", "--rounds", "2",
               "--warmup", "1", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    res = json.loads(out.out)
    assert res["models"] == ["transformer", "lite_transformer"] and res["threads"] == 1
    assert res["workload"] == "forward" and res["configs"]["transformer"]["d_model"] == 136  # solved at 100M
    for model in res["models"]:
        lo, hi = res["ratios"][model]["ci95"]
        assert lo <= res["ratios"][model]["ratio"] <= hi


@pytest.mark.parametrize("argv, says", [
    (["latency"], "give one MODEL, or --compare"),
    (["latency", "transformer", "--compare", "transformer,lite_transformer"], "give one MODEL, or --compare"),
    (["latency", "--compare", "transformer"], "--compare needs two or more different models"),
    (["latency", "--compare", "transformer,transformer"], "--compare needs two or more different models"),
    (["latency", "--compare", "transformer,nope"], "unknown model 'nope'"),
    (["latency", "--compare", "transformer,lite_transformer", "--set", "d_model=64"], "--set applies to one model"),
    (["latency", "--compare", "transformer,lite_transformer", "--rounds", "1"], "--rounds must be an integer >= 2"),
    (["latency", "--compare", "transformer,lite_transformer", "--workload", "decode"], "unknown workload 'decode'"),
    (["latency", "transformer", "--tries", "0"], "--tries must be an integer >= 1"),
    (["latency", "transformer", "--quiet-wait", "-3"], "--quiet-wait must be a number >= 0"),
])
def test_latency_bad_input_is_one_line_exit_2_nothing_written(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and says in out.err and out.err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


# ============================================================================================ spans
def _span(stage: str, start: int, end: int) -> Span:
    t0 = datetime(2026, 1, 1)
    return Span(f"{stage}-{start}", stage, t0 + timedelta(seconds=start), t0 + timedelta(seconds=end))


def test_latency_spans_may_touch_but_not_overlap():
    spans = [_span("train", 0, 10), _span("latency", 10, 12), _span("eval", 12, 20), _span("profile", 1, 3)]
    assert latency_overlaps(spans) == []
    bad = _span("latency_compare", 19, 21)
    assert latency_overlaps([*spans, bad]) == [(bad, spans[2])]
    two = [_span("latency", 0, 5), _span("latency", 4, 6)]
    assert latency_overlaps(two) == [(two[0], two[1])]
    assert latency_overlaps([_span("train", 0, 9), _span("eval", 1, 5)]) == []  # compute beside compute: fine


def test_interleaved_lone_records_share_one_span_without_overlapping():
    """A latency budget's lone figures measured in interleaved rounds: one stage, one span for all its
    records; anything else inside that span, or a record that does not name the others, still overlaps."""
    t0, t1 = datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 1)
    names = ["transformer", "lite_transformer", "evolved_transformer"]

    def lone(model: str, others: tuple[str, ...]) -> Span:
        return Span(f"5.4ms/runs/{model}-abc/latency-cpu-t1-forward.json", "latency", t0, t1, others)

    together = [lone(m, tuple(o for o in names if o != m)) for m in names]
    assert latency_overlaps(together) == []
    train = Span("5.4ms/runs/transformer-abc/train-s1.json", "train", t0 + timedelta(seconds=5), t1)
    assert latency_overlaps([*together, train]) == [(s, train) for s in together]
    stranger = lone("transformer_b", ())
    assert len(latency_overlaps([*together, stranger])) == 3


def test_spans_are_read_from_records(tmp_path):
    run = tmp_path / "100M" / "runs" / "transformer-abc"
    run.mkdir(parents=True)
    base = {"stage": "profile", "model": "transformer", "params": 1, "macs": 1, "version": 2}
    (run / "profile.json").write_text(json.dumps({**base, "started": "2026-01-01T00:00:00.000+00:00",
                                                  "finished": "2026-01-01T00:00:01.500+00:00"}))
    (run / "profile-old.json").write_text(json.dumps(base))
    spans, without = stage_spans([tmp_path / "100M"])
    assert [(s.stage, (s.end - s.start).total_seconds()) for s in spans] == [("profile", 1.5)]
    assert [Path(p).name for p in without] == ["profile-old.json"]


def test_a_sweep_log_says_which_stages_ran_and_which_were_done():
    log = """paired latency of transformer, lite_transformer (reference transformer):
  latency_compare-cpu-t1-forward: 3.2 s
  latency_compare-cpu-t1-translate: done before, skipped (runs/_compare-x/latency_compare-cpu-t1-translate.json)
lite_transformer at 100M (mt):
  solved: d_model=208, ffn_dim=216, 98,931,200 MACs (-1.07%); records in x
waiting for the machine lock /tmp/litebench-locks/machine.lock: profile needs it shared, and a latency ...
  profile: 0.4 s
  train-s1: done before, skipped (runs/lite_transformer-x/train-s1.json)
  compress-s1: 12.0 s (int8, int8+prune0.30)
"""
    paired = "paired latency of transformer, lite_transformer"
    assert stage_runs(log) == {(paired, "latency_compare-cpu-t1-forward", "ran"): 1,
                               (paired, "latency_compare-cpu-t1-translate", "skipped"): 1,
                               ("lite_transformer", "profile", "ran"): 1,
                               ("lite_transformer", "train-s1", "skipped"): 1,
                               ("lite_transformer", "compress-s1", "ran"): 1}
