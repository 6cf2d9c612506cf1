"""Paired latency: several models in one process, timed side by side, and each one's ratio to the first.

Absolute milliseconds on a shared machine move from day to day; a ratio measured side by side does not
move with them. :func:`compare_latency` builds every model (its solved config, seed 0), warms each up, waits
for a quiet machine under the exclusive machine lock, then times ``rounds`` rounds. In round r the models
take their turns in the order rotated by r (A B C, B C A, C A B, ...); a turn is ``calls`` calls of one
model (at least 3 and at least ``turn_s`` seconds, from the warm-up's speed), and the turn's median is that
model's figure for the round. A model's ``p50_ms`` is the median of all its timed calls. Its ratio to the
first model (the reference) is the geometric mean over rounds of (its round figure / the reference's figure
in the same round), so slow drift of the machine cancels within a round; the 95% interval is the percentile
bootstrap over rounds (``resamples`` resamples, seeded). Same protocol as single-model latency otherwise
(workloads, threads, dtype, batch 1, garbage collection paused while timing). ``backend``
(bench.latency.backends): every member runs on the same one, each checked against eager before any timing.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.infra.launcher import call_in_child
from bench.latency.backends import agreement_text, backend_version, check_backend
from bench.latency.lock import EXCLUSIVE, hold
from bench.latency.machine import all_cores, check_device, check_threads, device_name, num_threads, synchronize
from bench.latency.quiet import QuietPolicy, wait_for_quiet
from bench.latency.workloads import DTYPES, WORKLOADS, check_choice, make_workload, workload_shape

ROUNDS = 30
MIN_CALLS = 3
TURN_S = 0.05
WARMUP = 10
RESAMPLES = 2000


def rotations(n: int, rounds: int) -> list[list[int]]:
    """The order of the models in each round: 0 1 2, 1 2 0, 2 0 1, 0 1 2, ..."""
    return [[(r + i) % n for i in range(n)] for r in range(rounds)]


def paired_ratios(round_ms: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> list[dict[str, Any]]:
    """``round_ms``: (rounds, models) figures. Per model: the geometric mean over rounds of its figure over
    model 0's in the same round, and the 95% percentile-bootstrap interval over rounds.

    Args:
        round_ms: (rounds, models) figures in ms, model 0 the reference.
        resamples: bootstrap resamples.
        seed: the bootstrap's seed.
    """
    logs = np.log(round_ms) - np.log(round_ms[:, :1])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(logs), size=(resamples, len(logs)))
    boot = np.exp(logs[idx].mean(axis=1))  # (resamples, models)
    out = []
    for j in range(round_ms.shape[1]):
        lo, hi = np.percentile(boot[:, j], [2.5, 97.5])
        out.append({"ratio": float(np.exp(logs[:, j].mean())), "ci95": [float(lo), float(hi)]})
    return out


def _time_turn(fn: Callable[[], Any], calls: int, dev: torch.device, clock: Callable[[], int]) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = clock()
        fn()
        synchronize(dev)
        out.append((clock() - t0) / 1e6)
    return out


def compare_latency(
    members: Sequence[tuple[str, str, dict[str, Any]]],
    workload: str = "forward",
    *,
    threads: int | str | None = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    min_calls: int = MIN_CALLS,
    turn_s: float = TURN_S,
    resamples: int = RESAMPLES,
    seed: int = 0,
    quiet: QuietPolicy | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    backend: str = "eager",
    shape: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``members``: (name, registered model, solved config) of each model, the reference first. ``shape``: the
    workloads' token counts (bench.latency.workloads.workload_shape; summarization's), else the protocol's
    30 + 30; the result says what was timed (``src_len``, ``tgt_len``, ``decode_steps``). Returns the
    JSON result: ``models``, ``reference``, ``p50_ms``, ``cv``, ``calls``, ``round_ms`` and ``ratios``
    (``{name: {"ratio": r, "ci95": [low, high]}}``, the reference's 1 [1, 1]), with the setting, the
    ``backend``, its ``backend_version`` and each member's ``agreement`` with eager (None on eager).

    Args:
        members: (name, registered family, solved config) of each model, the reference first.
        workload: "forward" or "translate".
        threads: threads to time at; "all" or None: every core this process may use.
        device: "cpu" or "cuda[:n]".
        dtype: "fp32" or "bf16".
        rounds: rounds of turns (module docstring).
        warmup: warm-up calls of each model before timing.
        min_calls: the fewest calls in a turn.
        turn_s: the shortest turn, in seconds.
        resamples: bootstrap resamples of each ratio's interval.
        seed: the seed of the workloads' inputs and of the bootstrap.
        quiet: when the machine counts as quiet, and the longest wait; None: from the environment.
        clock: the timer, in ns (tests give a fake).
        backend: "eager", "compile" or "onnxruntime".
        shape: token counts (workload_shape's keys); None: the protocol's 30 + 30.
    """
    from models import create_model  # the model registry: loaded only when models are compared

    names = [m[0] for m in members]
    if len(members) < 2 or len(set(names)) != len(names):
        raise BenchError(f"--compare needs two or more different models, got {', '.join(names) or 'none'}")
    check_choice("workload", workload, WORKLOADS)
    check_choice("dtype", dtype, DTYPES)
    check_backend(backend)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise BenchError(f"--rounds must be an integer >= 2, got {rounds!r}")
    dev = check_device(device)
    n_threads = check_threads(threads)
    policy = quiet or QuietPolicy.from_env()
    with hold(EXCLUSIVE, what=f"paired latency of {', '.join(names)}") as lock, num_threads(n_threads) as applied, \
            workload_shape(**(shape or {})) as used:
        fns = []
        for _, model, config in members:
            torch.manual_seed(0)
            net = create_model(model, **config).eval().to(dev)
            fns.append(make_workload(net, workload, device=dev, dtype=dtype, seed=seed, backend=backend,
                                     threads=applied))
        calls = []
        for fn in fns:  # warm-up; its last calls say how many calls fill a turn
            times = _time_turn(fn, max(warmup, 1), dev, clock)
            est = float(np.median(times[-3:]))
            calls.append(max(min_calls, math.ceil(turn_s * 1e3 / max(est, 1e-6))))
        quiet_state = wait_for_quiet(policy)
        samples: list[list[float]] = [[] for _ in fns]
        round_ms = np.empty((rounds, len(fns)))
        gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            for r, order in enumerate(rotations(len(fns), rounds)):
                for j in order:
                    turn = _time_turn(fns[j], calls[j], dev, clock)
                    samples[j] += turn
                    round_ms[r, j] = float(np.median(turn))
        finally:
            if gc_was_enabled:
                gc.enable()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    ratios = paired_ratios(round_ms, resamples, seed)
    ratios[0] = {"ratio": 1.0, "ci95": [1.0, 1.0]}
    return {
        "models": names,
        "reference": names[0],
        "families": {name: model for name, model, _ in members},
        "workload": workload,
        "device": str(dev),
        "device_model": device_name(dev),
        "threads": applied,
        "dtype": dtype,
        "batch": 1,
        "src_len": used.src_len,
        "tgt_len": used.tgt_len if workload == "forward" and members[0][2].get("task", "mt") == "mt" else None,
        "decode_steps": used.decode_steps if workload == "translate" else None,
        "backend": backend,
        "backend_version": backend_version(backend),
        "agreement": None if backend == "eager" else {name: fn.agreement for name, fn in zip(names, fns)},
        "rounds": rounds,
        "order": "rotating",
        "warmup": warmup,
        "calls": dict(zip(names, calls)),
        "p50_ms": {n: float(np.median(s)) for n, s in zip(names, samples)},
        "cv": {n: float(np.std(s, ddof=1) / np.mean(s)) for n, s in zip(names, samples)},
        "ratios": dict(zip(names, ratios)),
        "ratio_method": "geometric mean over rounds of (round median / reference's round median); 95% "
                        f"percentile bootstrap over rounds, {resamples} resamples",
        "round_ms": {n: [float(v) for v in round_ms[:, j]] for j, n in enumerate(names)},
        **lock.record(),
        "machine_quiet": quiet_state["quiet"],
        "quiet_wait_s": quiet_state["quiet_wait_s"],
        "not_quiet": quiet_state["not_quiet"],
        "load": quiet_state["load"],
        "loadavg_1m": load,
        "cores": all_cores(),
        "torch_version": torch.__version__,
        "configs": {name: config for name, _, config in members},
    }


def compare_in_subprocess(members: Sequence[tuple[str, str, dict[str, Any]]], *, timeout_s: float = 3600,
                          backend: str = "eager", **kwargs: Any) -> dict[str, Any]:
    """:func:`compare_latency` in a fresh process (bench.infra.launcher): every model loaded in that one process,
    all on ``backend`` (checked here, before a process starts).

    Args:
        members: (name, registered family, solved config) of each model, the reference first.
        timeout_s: seconds before the child process is given up.
        backend: as for :func:`compare_latency`.
    """
    check_backend(backend)
    names = ", ".join(m[0] for m in members)
    return call_in_child("bench.latency.compare:compare_latency",
                         {"members": [list(m) for m in members], "backend": backend, **kwargs},
                         what=f"paired latency of {names}" + ("" if backend == "eager" else f" on {backend}"),
                         timeout_s=timeout_s)


def summary(res: dict[str, Any]) -> str:
    """The lines a person reads: each model's p50 and its ratio to the reference with the interval."""
    ref = res["reference"]
    runs = res.get("backend", "eager")
    runs = runs if runs == "eager" else f"{runs} [{res['backend_version']}]"
    lines = [f"paired latency, {res['workload']}, batch 1, {res['dtype']}, {runs}, {res['device']} "
             f"[{res['device_model']}], "
             f"{res['threads']} thread{'s' if res['threads'] > 1 else ''}, {res['rounds']} rounds in rotating order",
             f"  {'model':<24} {'p50 ms':>9} {'CV':>6} {'ratio vs ' + ref:>28} {'95% interval':>18}"]
    for name in res["models"]:
        r = res["ratios"][name]
        lines.append(f"  {name:<24} {res['p50_ms'][name]:>9.3f} {res['cv'][name]:>6.1%} {r['ratio']:>28.3f} "
                     f"{'[' + format(r['ci95'][0], '.3f') + ', ' + format(r['ci95'][1], '.3f') + ']':>18}")
    for name, agreement in (res.get("agreement") or {}).items():
        lines.append(f"  {name} agrees with eager: {agreement_text(agreement)}")
    lines.append(f"  ratio: {res['ratio_method']}; waited {res['lock_wait_s']:g} s for the machine lock, "
                 f"{res['quiet_wait_s']:g} s for a quiet machine" + ("" if res["machine_quiet"] else
                                                                     f" (not quiet: {res['not_quiet']})"))
    return "\n".join(lines)
