"""One latency measurement of one model, and the record it becomes.

A :class:`LatencyRecord` is composed of four parts: the :class:`Setting` it was taken in, the
:class:`~bench.latency.timing.Measurement` (samples and statistics), the :class:`Memory` it used and its
:class:`Efficiency` (achieved MAC rate against the machine's fp32 GEMM rate). ``to_dict()`` flattens them into
the JSON record the sweep stores (the key names are an interface: docs/records.md).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from bench.cost.memory import measure_peak_memory, serialized_size_bytes
from bench.cost.params import count_params
from bench.errors import BenchError
from bench.infra.launcher import call_in_child
from bench.latency.backends import agreement_text, backend_version, check_backend
from bench.latency.gemm import measure_gemm_rate
from bench.latency.lock import EXCLUSIVE, hold
from bench.latency.machine import all_cores, check_device, check_threads, device_name, num_threads
from bench.latency.quiet import QuietPolicy, wait_for_quiet
from bench.latency.timing import (
    MIN_RUNS,
    MIN_TIME_S,
    MIN_WARMUP,
    Measurement,
    measure_steady,
    time_callable,
    tries_from_env,
)
from bench.latency.workloads import (
    DECODE_STEPS,
    DTYPES,
    SRC_LEN,
    TGT_LEN,
    WORKLOADS,
    check_choice,
    count_workload_macs,
    make_workload,
    workload_shape,
)


@dataclass
class Setting:
    """What was measured, where and how."""

    model: str
    config: dict[str, Any]
    task: str = "mt"
    workload: str = "forward"
    device: str = "cpu"  # "cpu" or "cuda[:i]"
    device_model: str = ""  # CPU model (cores, ISA) or GPU name
    threads: int = 1  # torch.get_num_threads() while timing
    dtype: str = "fp32"
    batch: int = 1
    backend: str = "eager"  # what executed the workload (bench.latency.backends)
    backend_version: str = field(default_factory=lambda: backend_version("eager"))
    agreement: dict[str, Any] | None = None  # a non-eager backend's check against eager on the same inputs
    src_len: int = SRC_LEN
    tgt_len: int | None = TGT_LEN  # teacher-forced target tokens (forward) or None
    decode_steps: int | None = None  # incremental steps (translate) or None
    timer: str = "perf_counter"
    torch_version: str = torch.__version__
    cores: int | None = None  # cores this process could use
    loadavg_1m: float | None = None  # the machine's 1-minute load average right after timing (noise context)


@dataclass
class Memory:
    """Peak memory while the workload ran (bench.cost.memory) and the serialized model's size."""

    peak_rss_mb: float | None = None
    workload_memory_mb: float | None = None
    peak_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated
    memory_method: str | None = None
    model_size_bytes: int | None = None

    @property
    def model_size_mb(self) -> float | None:
        return None if self.model_size_bytes is None else self.model_size_bytes / 1e6


@dataclass
class Efficiency:
    """Counts of the model, the MACs one workload call executes and the machine's GEMM rate beside them."""

    params: int | None = None
    params_total: int | None = None
    macs: int | None = None  # paper convention (bench.cost.counting), when the caller gives it
    macs_with_output: int | None = None  # the same plus the output projection
    workload_macs: int | None = None  # MACs one workload call executes (efficiency's numerator)
    workload_macs_source: str | None = None
    gemm_gmacs: float | None = None
    gemm_size: int | None = None

    def achieved_gmacs(self, timing: Measurement) -> float | None:
        if not self.workload_macs or not timing.n:
            return None
        return self.workload_macs / (timing.p50_ms / 1e3) / 1e9

    def fraction(self, timing: Measurement) -> float | None:
        """Achieved MAC rate at p50 as a fraction of the sustained fp32 GEMM rate (same device and threads)."""
        achieved = self.achieved_gmacs(timing)
        return None if achieved is None or not self.gemm_gmacs else achieved / self.gemm_gmacs


@dataclass
class Isolation:
    """How the figure was kept apart from other work: the machine lock and its wait, the wait for a quiet
    machine, and the attempts (a figure with CV > 5% is timed again) with what came of them."""

    lock_mode: str | None = None
    lock_wait_s: float | None = None
    quiet: bool | None = None  # whether the machine was quiet before the chosen attempt
    quiet_wait_s: float | None = None  # every attempt's wait together
    not_quiet: str | None = None  # why it was not
    status: str = "ok"  # "ok" or "noisy": CV above 5% after every attempt
    tries: int = 1
    chosen_attempt: int = 1
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"latency_status": self.status, "tries": self.tries, "chosen_attempt": self.chosen_attempt,
                "lock_mode": self.lock_mode, "lock_wait_s": self.lock_wait_s, "machine_quiet": self.quiet,
                "quiet_wait_s": self.quiet_wait_s, "not_quiet": self.not_quiet, "attempts": self.attempts}


@dataclass(repr=False)
class LatencyRecord:
    setting: Setting
    timing: Measurement
    memory: Memory = field(default_factory=Memory)
    efficiency: Efficiency = field(default_factory=Efficiency)
    isolation: Isolation = field(default_factory=Isolation)

    # the numbers callers read most, without spelling the part
    @property
    def p50_ms(self) -> float:
        return self.timing.p50_ms

    @property
    def p90_ms(self) -> float:
        return self.timing.p90_ms

    @property
    def cv(self) -> float:
        return self.timing.cv

    @property
    def n(self) -> int:
        return self.timing.n

    @property
    def threads(self) -> int:
        return self.setting.threads

    @property
    def warning(self) -> str | None:
        why = [w for w in (self.timing.warning,) if w]
        s = self.setting
        if s.loadavg_1m is not None and s.cores and s.loadavg_1m > s.cores + 0.5:
            why.append(f"machine busy: load average {s.loadavg_1m:.2f} on {s.cores} cores")
        iso = self.isolation
        if iso.status == "noisy":
            why.append(f"still noisy after {len(iso.attempts)} attempts")
        if iso.quiet is False:
            why.append(f"machine not quiet after {iso.quiet_wait_s:g} s of waiting: {iso.not_quiet}")
        return "; ".join(why) or None

    def to_dict(self) -> dict[str, Any]:
        s, t, m, e = self.setting, self.timing, self.memory, self.efficiency
        out: dict[str, Any] = {
            "model": s.model,
            "config": s.config,
            "task": s.task,
            "workload": s.workload,
            "device": s.device,
            "device_model": s.device_model,
            "threads": s.threads,
            "dtype": s.dtype,
            "batch": s.batch,
            "backend": s.backend,
            "backend_version": s.backend_version,
            "agreement": s.agreement,
            **t.stats(),
            "warning": self.warning,
            "src_len": s.src_len,
            "tgt_len": s.tgt_len,
            "decode_steps": s.decode_steps,
            "timer": s.timer,
            "torch_version": s.torch_version,
            "peak_rss_mb": m.peak_rss_mb,
            "workload_memory_mb": m.workload_memory_mb,
            "peak_gpu_mb": m.peak_gpu_mb,
            "memory_method": m.memory_method,
            "model_size_bytes": m.model_size_bytes,
            "params": e.params,
            "params_total": e.params_total,
            "macs": e.macs,
            "macs_with_output": e.macs_with_output,
            "workload_macs": e.workload_macs,
            "workload_macs_source": e.workload_macs_source,
            "gemm_gmacs": e.gemm_gmacs,
            "gemm_size": e.gemm_size,
            "cores": s.cores,
            "loadavg_1m": s.loadavg_1m,
            "model_size_mb": m.model_size_mb,
            "achieved_gmacs": e.achieved_gmacs(t),
            "efficiency": e.fraction(t),
            "warmup": t.warmup,
            "min_runs": t.min_runs,
            "min_time_s": t.min_time_s,
            **self.isolation.to_dict(),
            "samples_ms": list(t.samples_ms),
        }
        # strict JSON: no NaN (a CV of a single sample, say)
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}

    def summary(self) -> str:
        """A few human-readable lines with units."""
        s, t, m, e = self.setting, self.timing, self.memory, self.efficiency
        keys = ("d_model", "ffn_dim", "encoder_layers", "decoder_layers")
        size = ", ".join(f"{k}={s.config[k]}" for k in keys if k in s.config)
        runs = "eager" if s.backend == "eager" else f"{s.backend} [{s.backend_version}]"
        lines = [
            f"{s.model} ({s.task}; {size}) {s.workload}, batch {s.batch}, {s.dtype}, {runs}, "
            f"{s.device} [{s.device_model}], {s.threads} thread{'s' if s.threads > 1 else ''}, "
            f"torch {s.torch_version}",
            f"  p50 {t.p50_ms:.3f} ms  p90 {t.p90_ms:.3f} ms  mean {t.mean_ms:.3f} ms  "
            f"IQR {t.iqr_ms:.3f} ms  CV {t.cv:.1%}  n={t.n}",
        ]
        if s.agreement is not None:
            lines.append(f"  agrees with eager: {agreement_text(s.agreement)}")
        if m.peak_rss_mb is not None:
            mem = f"  peak RSS {m.peak_rss_mb:.1f} MB (workload +{m.workload_memory_mb:.1f} MB)"
            if m.peak_gpu_mb is not None:
                mem += f", peak CUDA allocated {m.peak_gpu_mb:.1f} MB"
            if m.model_size_mb is not None:
                mem += f", serialized model {m.model_size_mb:.2f} MB"
            lines.append(mem)
        fraction = e.fraction(t)
        if fraction is not None:
            lines.append(
                f"  {e.workload_macs / 1e6:.1f}M MACs/call -> {e.achieved_gmacs(t):.2f} GMAC/s = "
                f"{fraction:.1%} of the fp32 GEMM rate ({e.gemm_gmacs:.1f} GMAC/s, n={e.gemm_size})"
            )
        iso = self.isolation
        tries = f", {len(iso.attempts)} attempt{'s' if len(iso.attempts) > 1 else ''}" if iso.attempts else ""
        lines.append(f"  status {iso.status}{tries}; waited {iso.lock_wait_s or 0:g} s for the machine lock, "
                     f"{iso.quiet_wait_s or 0:g} s for a quiet machine")
        if self.warning:
            lines.append(f"  warning: {self.warning}")
        return "\n".join(lines)


def measure_latency(
    model: nn.Module,
    workload: str = "forward",
    *,
    threads: int | str | None = 1,
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    batch: int = 1,
    macs: int | None = None,
    name: str | None = None,
    warmup: int = MIN_WARMUP,
    min_runs: int = MIN_RUNS,
    min_time_s: float = MIN_TIME_S,
    gemm: bool = True,
    memory: bool = True,
    seed: int = 0,
    tries: int | None = None,
    quiet: QuietPolicy | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    backend: str = "eager",
) -> LatencyRecord:
    """Measure one workload of ``model`` (a registry model: ``model.config`` is its config).

    The model is put in eval mode and moved to ``device`` (in place). ``threads``: a positive int, or
    None/"all" for every core. ``macs``: the MACs one workload call executes, used for efficiency; counted
    with ``torch.utils.flop_counter`` when not given. The warm-up calls are the ones peak memory is measured
    over. ``gemm=False`` skips the GEMM-rate measurement and the MAC count (efficiency is then None);
    ``memory=False`` skips the peak-memory measurement. Bad input: BenchError.

    Isolation: the whole measurement holds the machine lock exclusively (bench.latency.lock); before every
    attempt it waits for a quiet machine (``quiet``, default from the environment: bench.latency.quiet; all
    attempts together wait at most its ``max_wait_s``); a
    figure whose CV exceeds 5% is timed again, ``tries`` times in all at most (default 3,
    ``LITEBENCH_LATENCY_TRIES``); every attempt stays in the record, and a figure still noisy after the last
    is ``latency_status`` "noisy". ``clock``: the CPU timer in nanoseconds (tests give a synthetic one).

    ``backend`` (bench.latency.backends): "eager", "compile" or "onnxruntime". A non-eager backend is compiled
    or exported, and checked against eager, before the warm-up (BenchError when they disagree: nothing is
    timed); the workload's MACs are counted on the eager call.

    Args:
        model: a registry model, put in eval mode and moved to ``device``.
        workload: "forward" or "translate".
        threads: a positive int; "all" or None: every core.
        device: "cpu" or "cuda[:n]".
        dtype: "fp32" or "bf16".
        batch: sequences per call.
        macs: the MACs of one call, for efficiency; None: counted.
        name: the model's name in the record and messages; None: its family.
        warmup: warm-up calls (peak memory is measured over them).
        min_runs: the fewest timed calls.
        min_time_s: the least total time of timed calls, in seconds.
        gemm: measure the GEMM rate and count MACs (False: efficiency None).
        memory: measure the peak memory.
        seed: the inputs' seed.
        tries: attempts at most; None: LITEBENCH_LATENCY_TRIES, else 3.
        quiet: the quiet-machine policy; None: from the environment.
        clock: the CPU timer in ns.
        backend: "eager", "compile" or "onnxruntime".
    """
    check_choice("workload", workload, WORKLOADS)
    check_backend(backend)
    check_choice("dtype", dtype, DTYPES)
    dev = check_device(device)
    n_threads = check_threads(threads)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise BenchError(f"--batch must be a positive integer, got {batch!r}")
    tries = tries_from_env() if tries is None else tries
    policy = quiet or QuietPolicy.from_env()
    cfg = model.config
    label = f"{name or cfg.family} {workload}" + ("" if backend == "eager" else f" on {backend}")
    with hold(EXCLUSIVE, what=f"latency of {label}") as lock:
        rate = measure_gemm_rate(n_threads, dev) if gemm else None
        model.eval().to(dev)
        with num_threads(n_threads) as applied:
            fn = make_workload(model, workload, batch=batch, device=dev, dtype=dtype, seed=seed, backend=backend,
                               threads=applied)
            if memory:
                mem = measure_peak_memory(fn, calls=max(warmup, 1), device=dev)
            else:
                mem = None
                for _ in range(warmup):
                    fn()
            steady = measure_steady(
                lambda: time_callable(fn, device=dev, warmup=0, min_runs=min_runs, min_time_s=min_time_s,
                                      clock=clock),
                tries=tries, before=_quiet_budget(policy),
            )
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            if macs is not None:
                workload_macs, source = int(macs), "given"
            elif gemm:  # efficiency needs both; without the GEMM rate the count is skipped
                workload_macs, source = count_workload_macs(fn.reference), "torch.utils.flop_counter"
            else:
                workload_macs = source = None
    timing = Measurement(steady.chosen.samples_ms, label=label, min_runs=min_runs, min_time_s=min_time_s,
                         warmup=warmup)
    chosen = steady.attempts[steady.chosen_attempt - 1]
    isolation = Isolation(
        **lock.record(),
        quiet=chosen.get("quiet"),
        quiet_wait_s=round(sum(a.get("quiet_wait_s") or 0.0 for a in steady.attempts), 3),
        not_quiet=chosen.get("not_quiet"),
        status=steady.status,
        tries=tries,
        chosen_attempt=steady.chosen_attempt,
        attempts=steady.attempts,
    )
    setting = Setting(
        model=name or cfg.family,
        config=cfg.to_dict(),
        task=cfg.task,
        workload=workload,
        device=str(dev),
        device_model=device_name(dev),
        threads=applied,
        dtype=dtype,
        batch=batch,
        backend=fn.backend,
        backend_version=fn.backend_version,
        agreement=fn.agreement,
        src_len=SRC_LEN,
        tgt_len=TGT_LEN if workload == "forward" and cfg.task == "mt" else None,
        decode_steps=DECODE_STEPS if workload == "translate" else None,
        timer="cuda events" if dev.type == "cuda" else "perf_counter",
        cores=all_cores(),
        loadavg_1m=load,
    )
    memory_part = Memory(
        peak_rss_mb=None if mem is None else mem.peak_rss_mb,
        workload_memory_mb=None if mem is None else mem.workload_mb,
        peak_gpu_mb=None if mem is None else mem.peak_cuda_allocated_mb,
        memory_method=None if mem is None else mem.method,
        model_size_bytes=serialized_size_bytes(model),
    )
    efficiency = Efficiency(
        **count_params(model),
        workload_macs=workload_macs,
        workload_macs_source=source,
        gemm_gmacs=None if rate is None else rate.gmacs,
        gemm_size=None if rate is None else rate.size,
    )
    return LatencyRecord(setting, timing, memory_part, efficiency, isolation)


def _quiet_budget(policy: QuietPolicy) -> Callable[[], dict[str, Any]]:
    """The wait for a quiet machine before each attempt, all attempts of one figure sharing
    ``policy.max_wait_s``."""
    spent = [0.0]

    def wait() -> dict[str, Any]:
        res = wait_for_quiet(replace(policy, max_wait_s=max(0.0, policy.max_wait_s - spent[0])))
        spent[0] += res["quiet_wait_s"]
        return res

    return wait


def measure_model(model: str, config: dict[str, Any], workload: str = "forward", *, threads: int | str | None = 1,
                  device: str = "cpu", dtype: str = "fp32", batch: int = 1,
                  paper_macs: tuple[int | None, int | None] = (None, None), shape: dict[str, int] | None = None,
                  backend: str = "eager", **timing: Any) -> dict[str, Any]:
    """Build ``model`` from its solved ``config`` (seed 0) and measure it: the JSON record, with the paper's
    MAC counts the caller gives (``paper_macs``: macs, macs_with_output). What a latency child process runs
    (bench.infra.launcher): it receives the config, never a budget to solve again. ``shape``: the workloads' token
    counts (bench.latency.workloads.workload_shape; summarization's), else the protocol's. ``backend``: what
    executes the workload (bench.latency.backends). ``timing``: warmup, min_runs, min_time_s.

    Args:
        model: a registered family.
        config: its solved config.
        workload: "forward" or "translate".
        threads: a positive int; "all" or None: every core.
        device: "cpu" or "cuda[:n]".
        dtype: "fp32" or "bf16".
        batch: sequences per call.
        paper_macs: (macs, macs_with_output), recorded as given.
        shape: token counts (workload_shape's keys); None: the protocol's.
        backend: "eager", "compile" or "onnxruntime".
    """
    from models import create_model  # the model registry: loaded only when a model is built

    torch.manual_seed(0)
    net = create_model(model, **config)
    with workload_shape(**(shape or {})) as used:
        rec = measure_latency(net, workload, threads=threads, device=device, dtype=dtype, batch=batch, name=model,
                              backend=backend, **timing)
    rec.efficiency.macs, rec.efficiency.macs_with_output = paper_macs
    s = rec.setting  # the token counts timed
    s.src_len = used.src_len
    s.tgt_len = used.tgt_len if s.tgt_len is not None else None
    s.decode_steps = used.decode_steps if s.decode_steps is not None else None
    return rec.to_dict()


def measure_in_subprocess(model: str, config: dict[str, Any], *, timeout_s: float = 3600, backend: str = "eager",
                          **kwargs: Any) -> dict[str, Any]:
    """:func:`measure_model` in a fresh process (bench.infra.launcher), so that no model's allocations, caches or
    thread pools bias another's, and the peak memory counts only what a latency measurement loads. A failure
    raises BenchError with the child's last error line. ``backend``: as :func:`measure_model` (checked here,
    before a process starts).

    Args:
        model: a registered family.
        config: its solved config.
        timeout_s: seconds before the child process is given up.
        backend: as for :func:`measure_model`.
    """
    check_backend(backend)
    return call_in_child("bench.latency.record:measure_model",
                         {"model": model, "config": config, "backend": backend, **kwargs},
                         what=f"latency of {model}" + ("" if backend == "eager" else f" on {backend}"),
                         timeout_s=timeout_s)


LONE_PROCESSES = 5  # fresh processes behind a latency budget's own figure (bench.sweep.runner)


def median_of_processes(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from several fresh processes' records of the same measurement (an odd number): the record of
    the process whose p50 is the median, with every process's p50 (``process_p50_ms``). One process's figure
    moves by 5-10% from the next's for small models on a shared machine, more than a latency budget's
    tolerance; the median of five holds to a few percent."""
    if not recs or len(recs) % 2 == 0:
        raise BenchError(f"the median of processes needs an odd number of records, got {len(recs)}")
    if len(recs) == 1:
        return recs[0]
    median = sorted(recs, key=lambda r: r["p50_ms"])[len(recs) // 2]
    return {**median, "processes": len(recs), "process_p50_ms": [r["p50_ms"] for r in recs],
            "p50_method": f"the median of {len(recs)} fresh processes' p50 (the record is that process's)"}
