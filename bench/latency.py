"""Latency of the protocol's workloads, with its noise, its setting and the machine's own limit beside it.

Conventions (../shared/design/protocol.md, section Latency):
- Workloads, eval mode, no grad (``torch.inference_mode``), batch 1 unless ``batch`` says otherwise:
  - "forward":   translation: one teacher-forced pass over 30 source + 30 target tokens (the MAC pass);
                 language model: one pass over 30 tokens.
  - "translate": translation: encode 30 source tokens, then exactly 30 greedy incremental decoder steps
                 with caches (no early stop); language model: exactly 30 greedy incremental steps from BOS
                 (the same decoder work, no encoder).
- Timing: at least 10 warm-up calls, then at least 30 timed calls and at least 1 s of timed calls, each
  call timed alone (``time.perf_counter_ns`` on CPU; CUDA events with a synchronisation after every call
  on GPU), garbage collection paused. The raw samples are kept; p50, p90, mean, IQR (p75 - p25, numpy's
  linear percentiles), CV (sample standard deviation / mean) and n are derived from them, with a warning
  when the spread is too wide to trust (CV > 5% or IQR > 10% of the median) or the protocol's minima were
  not met.
- Threads: ``torch.set_num_threads(threads)`` for the whole measurement (1 = the mobile-like setting;
  ``None`` or "all" = every core this process may run on), restored afterwards.
- dtype: "fp32", or "bf16" = ``torch.autocast`` to bfloat16 (weights stay fp32), on CPU and CUDA.
- Efficiency: the MACs one workload call executes (``workload_macs``: counted at the dispatcher with
  ``torch.utils.flop_counter`` around one call, flops / 2, output projection included since the device pays
  for it; or given by the caller) divided by p50, as a fraction of the machine's sustained fp32 GEMM rate at
  the same thread count (one large square matmul, measured once per process and cached).
- Units: milliseconds, MACs, GMAC/s (10**9 MACs per second), MB (10**6 bytes).

Python: ``measure_latency(model, "translate", threads=1)``; command line: ``python -m bench latency MODEL
[--budget B] [--set KEY=VALUE ...] [--task mt|lm] [--workload forward|translate] [--threads N|all]
[--device cpu|cuda] [--dtype fp32|bf16] [--batch 1] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import BenchError

WORKLOADS = ("forward", "translate")
DEVICES = ("cpu", "cuda")
DTYPES = ("fp32", "bf16")
SRC_LEN = 30  # source tokens (translation) or tokens (language model) of the forward workload
TGT_LEN = 30  # teacher-forced target tokens of the forward workload
DECODE_STEPS = 30  # greedy incremental steps of the translate workload

# the protocol's minima
MIN_WARMUP = 10
MIN_RUNS = 30
MIN_TIME_S = 1.0
MAX_RUNS = 100_000  # bounds the record of a very fast call
# when the spread is too wide to trust
CV_WARN = 0.05
IQR_WARN = 0.10

HELP = "latency of one model: p50/p90/IQR/CV in ms, peak memory, efficiency against the GEMM rate"


# ============================================================================================ statistics
@dataclass
class Measurement:
    """Raw per-call times (ms) and the statistics derived from them (cf. torch.utils.benchmark.Measurement).

    Percentiles are numpy's default (linear interpolation); ``cv`` is the sample standard deviation
    (ddof=1) over the mean; ``iqr_ms`` = p75 - p25.
    """

    samples_ms: list[float]
    label: str = ""
    min_runs: int = MIN_RUNS
    min_time_s: float = MIN_TIME_S
    warmup: int = MIN_WARMUP

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def _pct(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples_ms, dtype=np.float64), q)) if self.n else math.nan

    @property
    def p50_ms(self) -> float:
        return self._pct(50)

    @property
    def p90_ms(self) -> float:
        return self._pct(90)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms)) if self.n else math.nan

    @property
    def iqr_ms(self) -> float:
        return self._pct(75) - self._pct(25)

    @property
    def cv(self) -> float:
        if self.n < 2:
            return math.nan
        return float(np.std(self.samples_ms, ddof=1) / np.mean(self.samples_ms))

    @property
    def total_s(self) -> float:
        return float(np.sum(self.samples_ms)) / 1e3

    @property
    def warning(self) -> str | None:
        """Why these samples should not be trusted, in one line; None when they can be."""
        why = []
        if self.n < MIN_RUNS or self.total_s < MIN_TIME_S or self.warmup < MIN_WARMUP:
            why.append(
                f"below the protocol's minima ({self.warmup} warm-up, {self.n} calls, {self.total_s:.2f} s; "
                f"needs >= {MIN_WARMUP}, >= {MIN_RUNS}, >= {MIN_TIME_S:g} s)"
            )
        if self.n >= 2 and self.cv > CV_WARN:
            why.append(f"CV {self.cv:.1%} > {CV_WARN:.0%}")
        if self.n and self.p50_ms > 0 and self.iqr_ms / self.p50_ms > IQR_WARN:
            why.append(f"IQR {self.iqr_ms / self.p50_ms:.1%} of the median > {IQR_WARN:.0%}")
        return "; ".join(why) or None

    def stats(self) -> dict[str, Any]:
        return {
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "iqr_ms": self.iqr_ms,
            "cv": self.cv,
            "n": self.n,
            "warning": self.warning,
        }

    def __repr__(self) -> str:
        head = f"{self.label}: " if self.label else ""
        return (
            f"{head}p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, IQR {self.iqr_ms:.3f} ms, "
            f"CV {self.cv:.1%}, n={self.n}" + (f" [warning: {self.warning}]" if self.warning else "")
        )


# ============================================================================================ setting
def all_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_threads(threads: int | str | None) -> int:
    """``None``/"all" -> every core; a positive int -> itself; anything else -> BenchError."""
    if threads is None or (isinstance(threads, str) and threads.strip().lower() == "all"):
        return all_cores()
    try:
        n = int(threads)
    except (TypeError, ValueError):
        n = 0
    if isinstance(threads, bool) or n < 1 or str(threads).strip() not in (str(n), f"{n}.0"):
        raise BenchError(f"--threads must be a positive integer or 'all', got {threads!r}")
    return n


def check_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type not in DEVICES:
        raise BenchError(f"unknown device {str(device)!r}; valid: {', '.join(DEVICES)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BenchError(f"--device cuda: no CUDA device is available (torch {torch.__version__}, {built})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BenchError(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def check_choice(what: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise BenchError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


@contextmanager
def num_threads(threads: int) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    """The context a call runs under: nothing for fp32, ``torch.autocast(..., bfloat16)`` for bf16."""
    if check_choice("dtype", dtype, DTYPES) == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def cpu_model_name() -> str:
    """The CPU's marketing name, from /proc/cpuinfo (x86 'model name', ARM 'Model'/'Hardware') or lscpu."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str | torch.device) -> str:
    """CPU model (with its core count and vector ISA) or GPU name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{cpu_model_name()} ({all_cores()} cores, {isa})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ============================================================================================ timing
def time_callable(
    fn: Callable[[], Any],
    *,
    device: str | torch.device = "cpu",
    warmup: int = MIN_WARMUP,
    min_runs: int = MIN_RUNS,
    min_time_s: float = MIN_TIME_S,
    max_runs: int = MAX_RUNS,
    label: str = "",
) -> Measurement:
    """Call ``fn`` ``warmup`` times, then time single calls until at least ``min_runs`` calls and at least
    ``min_time_s`` seconds of timed calls (or ``max_runs`` calls). CPU: wall time per call; CUDA: events
    around each call and a synchronisation after it, so a sample is the call's full latency."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    for _ in range(warmup):
        fn()
    _sync(dev)
    samples: list[float] = []
    total_ms = 0.0
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while (len(samples) < min_runs or total_ms < min_time_s * 1e3) and len(samples) < max_runs:
            if cuda:
                start.record()
                fn()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter_ns()
                fn()
                ms = (time.perf_counter_ns() - t0) / 1e6
            samples.append(ms)
            total_ms += ms
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(samples, label=label, min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)


# ============================================================================================ workloads
def _token_range(cfg: Any) -> tuple[int, int]:
    """Ids that are no special symbol (so no padding mask appears): [max special + 1, vocab)."""
    low = max(cfg.bos_id, cfg.pad_id, cfg.eos_id, cfg.unk_id) + 1
    return low, cfg.vocab_size


def make_workload(
    model: nn.Module,
    workload: str = "forward",
    *,
    batch: int = 1,
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    seed: int = 0,
) -> Callable[[], Tensor]:
    """The call one sample times (see the module docstring), inputs built once on ``device``."""
    check_choice("workload", workload, WORKLOADS)
    dev = torch.device(device)
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    low, high = _token_range(cfg)
    if cfg.task == "mt":
        src = torch.randint(low, high, (batch, SRC_LEN), generator=g).to(dev)
        tgt_high = min(high, cfg.target_vocab)
        tgt = torch.randint(low, tgt_high, (batch, TGT_LEN), generator=g).to(dev)
        tgt[:, 0] = cfg.bos_id  # prev_output_tokens starts with BOS

        def body() -> Tensor:
            if workload == "forward":
                return model(src, tgt)
            return model.generate(src, DECODE_STEPS, beam=1, early_stop=False)

    else:
        tokens = torch.randint(low, high, (batch, SRC_LEN), generator=g).to(dev)
        bos = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=dev)

        def body() -> Tensor:
            if workload == "forward":
                return model(tokens)
            return model.generate(bos, DECODE_STEPS, early_stop=False)

    def call() -> Tensor:
        with torch.inference_mode(), autocast(dev, dtype):
            return body()

    return call


def count_workload_macs(fn: Callable[[], Any]) -> int:
    """MACs one call of ``fn`` executes, counted at the dispatcher (``torch.utils.flop_counter``, flops / 2),
    with the formulas bench.counting adds for what the counter lacks (CPU scaled-dot-product attention), so
    an SDPA path is not counted as zero."""
    from torch.utils.flop_counter import FlopCounterMode

    from .counting import CUSTOM_FLOPS

    with FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOPS)) as counter:
        fn()
    return int(counter.get_total_flops()) // 2


# ============================================================================================ GEMM limit
@dataclass(frozen=True)
class GemmRate:
    """The machine's sustained fp32 GEMM rate: median time of an (n x n) @ (n x n) matmul, n**3 MACs."""

    device: str
    threads: int
    size: int
    p50_ms: float
    gmacs: float  # 10**9 MACs per second


_GEMM_CACHE: dict[tuple[str, int, int], GemmRate] = {}


def measure_gemm_rate(
    threads: int | str | None = 1, device: str | torch.device = "cpu", size: int | None = None
) -> GemmRate:
    """Sustained fp32 GEMM MAC rate at ``threads`` threads, measured once per process per setting (cached).

    CPU: n=2048 (8.6 GMACs per call); CUDA: n=8192 with TF32 off (true fp32)."""
    dev = check_device(device)
    n_threads = check_threads(threads)
    n = size or (8192 if dev.type == "cuda" else 2048)
    key = (str(dev), n_threads, n)
    if key in _GEMM_CACHE:
        return _GEMM_CACHE[key]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with num_threads(n_threads):
            g = torch.Generator(device=dev).manual_seed(0)
            a = torch.randn(n, n, device=dev, generator=g)
            b = torch.randn(n, n, device=dev, generator=g)
            out = torch.empty(n, n, device=dev)
            m = time_callable(lambda: torch.mm(a, b, out=out), device=dev, warmup=2, min_runs=5, min_time_s=0.5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    rate = GemmRate(str(dev), n_threads, n, m.p50_ms, n**3 / (m.p50_ms / 1e3) / 1e9)
    _GEMM_CACHE[key] = rate
    return rate


# ============================================================================================ measurement
@dataclass(repr=False)
class LatencyMeasurement(Measurement):
    """One model's latency record: the samples and statistics, the setting they were taken in, peak memory,
    serialized size and efficiency. ``to_dict()`` gives the JSON record (key names are an interface)."""

    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    task: str = "mt"
    workload: str = "forward"
    device: str = "cpu"  # "cpu" or "cuda[:i]"
    device_name: str = ""  # CPU model (cores, ISA) or GPU name
    threads: int = 1  # torch.get_num_threads() while timing
    dtype: str = "fp32"
    batch: int = 1
    src_len: int = SRC_LEN
    tgt_len: int | None = TGT_LEN  # teacher-forced target tokens (forward) or None
    decode_steps: int | None = None  # incremental steps (translate) or None
    timer: str = "perf_counter"
    torch_version: str = torch.__version__
    peak_rss_mb: float | None = None
    workload_memory_mb: float | None = None
    peak_cuda_allocated_mb: float | None = None
    memory_method: str | None = None
    model_size_bytes: int | None = None
    params: int | None = None
    params_total: int | None = None
    macs: int | None = None  # paper convention (bench.counting), when available
    macs_with_output: int | None = None  # the same plus the output projection (bench.counting)
    workload_macs: int | None = None  # MACs one workload call executes (efficiency's numerator)
    workload_macs_source: str | None = None
    gemm_gmacs: float | None = None
    gemm_size: int | None = None
    cores: int | None = None  # cores this process could use
    loadavg_1m: float | None = None  # the machine's 1-minute load average right after timing (noise context)

    @property
    def warning(self) -> str | None:
        why = [w for w in (Measurement.warning.fget(self),) if w]
        if self.loadavg_1m is not None and self.cores and self.loadavg_1m > self.cores + 0.5:
            why.append(f"machine busy: load average {self.loadavg_1m:.2f} on {self.cores} cores")
        return "; ".join(why) or None

    @property
    def model_size_mb(self) -> float | None:
        return None if self.model_size_bytes is None else self.model_size_bytes / 1e6

    @property
    def achieved_gmacs(self) -> float | None:
        if not self.workload_macs or not self.n:
            return None
        return self.workload_macs / (self.p50_ms / 1e3) / 1e9

    @property
    def efficiency(self) -> float | None:
        """Achieved MAC rate at p50 as a fraction of the sustained fp32 GEMM rate (same device and threads)."""
        achieved = self.achieved_gmacs
        return None if achieved is None or not self.gemm_gmacs else achieved / self.gemm_gmacs

    def to_dict(self) -> dict[str, Any]:
        base = {f.name for f in fields(Measurement)}
        out: dict[str, Any] = {
            "model": self.model,
            "config": self.config,
            "task": self.task,
            "workload": self.workload,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "dtype": self.dtype,
            "batch": self.batch,
            **self.stats(),
        }
        for f in fields(self):
            if f.name not in base and f.name not in out:
                out[f.name] = getattr(self, f.name)
        out.update(
            model_size_mb=self.model_size_mb,
            achieved_gmacs=self.achieved_gmacs,
            efficiency=self.efficiency,
            warmup=self.warmup,
            min_runs=self.min_runs,
            min_time_s=self.min_time_s,
            samples_ms=list(self.samples_ms),
        )
        # strict JSON: no NaN (a CV of a single sample, say)
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}

    def summary(self) -> str:
        """A few human-readable lines with units."""
        cfg = self.config
        keys = ("d_model", "ffn_dim", "encoder_layers", "decoder_layers")
        size = ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg)
        lines = [
            f"{self.model} ({self.task}; {size}) {self.workload}, batch {self.batch}, {self.dtype}, "
            f"{self.device} [{self.device_name}], {self.threads} thread{'s' if self.threads > 1 else ''}, "
            f"torch {self.torch_version}",
            f"  p50 {self.p50_ms:.3f} ms  p90 {self.p90_ms:.3f} ms  mean {self.mean_ms:.3f} ms  "
            f"IQR {self.iqr_ms:.3f} ms  CV {self.cv:.1%}  n={self.n}",
        ]
        if self.peak_rss_mb is not None:
            mem = f"  peak RSS {self.peak_rss_mb:.1f} MB (workload +{self.workload_memory_mb:.1f} MB)"
            if self.peak_cuda_allocated_mb is not None:
                mem += f", peak CUDA allocated {self.peak_cuda_allocated_mb:.1f} MB"
            if self.model_size_mb is not None:
                mem += f", serialized model {self.model_size_mb:.2f} MB"
            lines.append(mem)
        if self.efficiency is not None:
            lines.append(
                f"  {self.workload_macs / 1e6:.1f}M MACs/call -> {self.achieved_gmacs:.2f} GMAC/s = "
                f"{self.efficiency:.1%} of the fp32 GEMM rate ({self.gemm_gmacs:.1f} GMAC/s, n={self.gemm_size})"
            )
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
) -> LatencyMeasurement:
    """Measure one workload of ``model`` (a registry model: ``model.config`` is its config).

    The model is put in eval mode and moved to ``device`` (in place). ``threads``: a positive int, or
    None/"all" for every core. ``macs``: the MACs one workload call executes, used for efficiency; counted
    with ``torch.utils.flop_counter`` when not given. The warm-up calls are the ones peak memory is measured
    over. ``gemm=False`` skips the GEMM-rate measurement and the MAC count (efficiency is then None);
    ``memory=False`` skips the peak-memory measurement. Bad input: BenchError.
    """
    check_choice("workload", workload, WORKLOADS)
    check_choice("dtype", dtype, DTYPES)
    dev = check_device(device)
    n_threads = check_threads(threads)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise BenchError(f"--batch must be a positive integer, got {batch!r}")
    cfg = model.config
    from .memory import measure_peak_memory, serialized_size_bytes
    from .params import count_params

    rate = measure_gemm_rate(n_threads, dev) if gemm else None
    model.eval().to(dev)
    with num_threads(n_threads) as applied:
        fn = make_workload(model, workload, batch=batch, device=dev, dtype=dtype, seed=seed)
        if memory:
            mem = measure_peak_memory(fn, calls=max(warmup, 1), device=dev)
        else:
            mem = None
            for _ in range(warmup):
                fn()
        m = time_callable(fn, device=dev, warmup=0, min_runs=min_runs, min_time_s=min_time_s)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if macs is not None:
            workload_macs, source = int(macs), "given"
        elif gemm:  # efficiency needs both; without the GEMM rate the count is skipped
            workload_macs, source = count_workload_macs(fn), "torch.utils.flop_counter"
        else:
            workload_macs = source = None
    return LatencyMeasurement(
        samples_ms=m.samples_ms,
        label=f"{name or cfg.family} {workload}",
        min_runs=min_runs,
        min_time_s=min_time_s,
        warmup=warmup,
        model=name or cfg.family,
        config=cfg.to_dict(),
        task=cfg.task,
        workload=workload,
        device=str(dev),
        device_name=device_name(dev),
        threads=applied,
        dtype=dtype,
        batch=batch,
        src_len=SRC_LEN,
        tgt_len=TGT_LEN if workload == "forward" and cfg.task == "mt" else None,
        decode_steps=DECODE_STEPS if workload == "translate" else None,
        timer="cuda events" if dev.type == "cuda" else "perf_counter",
        peak_rss_mb=None if mem is None else mem.peak_rss_mb,
        workload_memory_mb=None if mem is None else mem.workload_mb,
        peak_cuda_allocated_mb=None if mem is None else mem.peak_cuda_allocated_mb,
        memory_method=None if mem is None else mem.method,
        model_size_bytes=serialized_size_bytes(model),
        **count_params(model),
        workload_macs=workload_macs,
        workload_macs_source=source,
        gemm_gmacs=None if rate is None else rate.gmacs,
        gemm_size=None if rate is None else rate.size,
        cores=all_cores(),
        loadavg_1m=load,
    )


# ============================================================================================ nn.Transformer
class TorchTransformerReference(nn.Module):
    """``torch.nn.Transformer`` (post-norm, ReLU, batch-first) with the same token embedding (scaled, plus a
    sinusoid-sized position table) and the same tied output projection as our ``transformer``: the same
    work, done by PyTorch's own modules (including their fused eval-mode fast paths)."""

    def __init__(self, d_model: int, heads: int, layers: int, ffn_dim: int, vocab: int, pad_id: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.register_buffer("positions", torch.randn(1024, d_model) * 0.1, persistent=False)
        self.transformer = nn.Transformer(d_model, heads, layers, layers, ffn_dim, dropout=0.0, batch_first=True)
        self.scale = d_model**0.5

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        xs = self.embed(src) * self.scale + self.positions[1 : src.size(1) + 1]
        xt = self.embed(tgt) * self.scale + self.positions[1 : tgt.size(1) + 1]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        y = self.transformer(xs, xt, tgt_mask=mask, tgt_is_causal=True)
        return F.linear(y, self.embed.weight)


def compare_with_torch_transformer(
    d_model: int = 512,
    threads: int | str | None = 1,
    *,
    ffn_dim: int | None = None,
    layers: int = 6,
    heads: int = 8,
    vocab: int = 8000,
    warmup: int = MIN_WARMUP,
    min_runs: int = MIN_RUNS,
    min_time_s: float = MIN_TIME_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Our ``transformer`` against ``torch.nn.Transformer`` of the same shape, forward workload (30 + 30
    tokens, batch 1, eval, inference mode), timed in one run with the calls interleaved (ours, theirs,
    theirs, ours, ...) so drift hits both equally. ``ratio`` = our p50 / their p50 (< 1: ours is faster);
    ``paired_ratio`` = the median of the per-round ratios, robust to drift."""
    from models import create_model

    n_threads = check_threads(threads)
    ffn = ffn_dim or 4 * d_model
    torch.manual_seed(seed)
    ours = create_model(
        "transformer",
        d_model=d_model,
        ffn_dim=ffn,
        heads=heads,
        encoder_layers=layers,
        decoder_layers=layers,
        vocab_size=vocab,
        dropout=0.0,
    ).eval()
    ref = TorchTransformerReference(d_model, heads, layers, ffn, vocab).eval()
    ours_fn = make_workload(ours, "forward", seed=seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (1, SRC_LEN), generator=g)
    tgt = torch.randint(4, vocab, (1, TGT_LEN), generator=g)

    def ref_fn() -> Tensor:
        with torch.inference_mode():
            return ref(src, tgt)

    a: list[float] = []
    b: list[float] = []
    with num_threads(n_threads) as applied:
        for _ in range(warmup):
            ours_fn()
            ref_fn()
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            i = 0
            while len(a) < min_runs or sum(a) + sum(b) < 2e3 * min_time_s:
                order = ((ours_fn, a), (ref_fn, b)) if i % 2 == 0 else ((ref_fn, b), (ours_fn, a))
                for fn, out in order:
                    t0 = time.perf_counter_ns()
                    fn()
                    out.append((time.perf_counter_ns() - t0) / 1e6)
                i += 1
        finally:
            if gc_was_enabled:
                gc.enable()
    mo = Measurement(a, label=f"ours d={d_model}", min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)
    mt = Measurement(b, label=f"nn.Transformer d={d_model}", min_runs=min_runs, min_time_s=min_time_s, warmup=warmup)
    return {
        "d_model": d_model,
        "ffn_dim": ffn,
        "layers": layers,
        "heads": heads,
        "threads": applied,
        "device_name": device_name("cpu"),
        "torch_version": torch.__version__,
        "ours": mo.stats(),
        "torch": mt.stats(),
        "ratio": mo.p50_ms / mt.p50_ms,
        "paired_ratio": float(np.median(np.asarray(a) / np.asarray(b))),
    }


# ============================================================================================ isolation
REPO_ROOT = Path(__file__).resolve().parent.parent


def _entry_point() -> list[str]:
    """``-m bench latency`` once the command is wired into bench.cli, else ``-m bench.latency`` (same code)."""
    try:
        from .cli import COMMANDS

        if "latency" in COMMANDS:
            return ["-m", "bench", "latency"]
    except ImportError:  # pragma: no cover
        pass
    return ["-m", "bench.latency"]


def latency_argv(
    model: str,
    *,
    task: str = "mt",
    budget: str | None = None,
    sets: Sequence[str] = (),
    workload: str = "forward",
    threads: int | str | None = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    batch: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command-line words of one latency measurement (without the interpreter)."""
    argv = [model, "--task", task, "--workload", workload, "--threads", "all" if threads is None else str(threads)]
    argv += ["--device", device, "--dtype", dtype, "--batch", str(batch), "--json"]
    if budget is not None:
        argv += ["--budget", budget]
    for s in sets:
        argv += ["--set", s]
    return argv + list(extra)


def measure_in_subprocess(model: str, *, timeout_s: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Measure one model in a fresh ``python -m bench latency ... --json`` process and return its record, so
    that no model's allocations, caches or thread pools bias another's. ``kwargs``: those of
    :func:`latency_argv`. A failure raises BenchError with the child's last error line."""
    cmd = [sys.executable, *_entry_point(), *latency_argv(model, **kwargs)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"latency of {model} did not finish within {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "(no message)"
        raise BenchError(f"latency of {model} failed in its own process (exit {proc.returncode}): {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"latency of {model}: the child process printed no JSON record") from None


def measure_each(runs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One subprocess per run, strictly one at a time: ``runs`` are dicts of :func:`measure_in_subprocess`
    arguments (``model`` included); yields each record as it finishes."""
    for spec in runs:
        spec = dict(spec)
        yield measure_in_subprocess(spec.pop("model"), **spec)


# ============================================================================================ command line
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``latency`` to ``python -m bench``'s subcommands (``subparsers`` from ``add_subparsers``)."""
    p = subparsers.add_parser("latency", help=HELP, description=HELP)
    _add_arguments(p)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a registered model name (python -m bench models)")
    p.add_argument("--budget", default=None, help="solve the config for this MAC budget first, e.g. 100M")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), applied after --budget",
    )
    p.add_argument("--task", default="mt", metavar="{mt,lm}", help="translation (mt) or language model (lm)")
    p.add_argument(
        "--workload",
        default="forward",
        metavar="{forward,translate}",
        help="forward: one 30+30-token teacher-forced pass; translate: encode 30 + 30 greedy steps",
    )
    p.add_argument("--threads", default="1", metavar="{N,all}", help="torch threads (default 1)")
    p.add_argument("--device", default="cpu", metavar="{cpu,cuda}")
    p.add_argument("--dtype", default="fp32", metavar="{fp32,bf16}", help="bf16 = autocast to bfloat16")
    p.add_argument("--batch", default="1", help="sentences per call (default 1)")
    p.add_argument("--warmup", default=str(MIN_WARMUP), help=f"warm-up calls (protocol: >= {MIN_WARMUP})")
    p.add_argument("--min-runs", default=str(MIN_RUNS), help=f"timed calls at least (protocol: >= {MIN_RUNS})")
    p.add_argument("--min-time", default=str(MIN_TIME_S), help=f"timed seconds at least (protocol: >= {MIN_TIME_S:g})")
    p.add_argument("--json", action="store_true", help="print one JSON record on stdout")


def _positive_int(option: str, text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = minimum - 1
    if value < minimum:
        raise BenchError(f"{option} must be an integer >= {minimum}, got {text!r}")
    return value


def paper_macs(model: nn.Module) -> tuple[int | None, int | None]:
    """(macs, macs_with_output) in the paper's convention from bench.counting (primary counter only), or
    (None, None) where that module is not there."""
    try:
        from .counting import count_macs
    except ImportError:
        return None, None
    try:
        report = count_macs(model, counters=())
    except TypeError:  # another signature: every counter
        report = count_macs(model)
    d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    return d.get("macs"), d.get("macs_with_output")


def run(args: argparse.Namespace) -> int:
    """``python -m bench latency``: measure, then print a summary or (``--json``) one JSON record."""
    from models import create_model
    from models.config import TASKS

    from .resolve import resolve_model

    check_choice("task", args.task, TASKS)
    check_choice("workload", args.workload, WORKLOADS)
    check_choice("dtype", args.dtype, DTYPES)
    threads = check_threads(args.threads)
    check_choice("device", args.device.split(":")[0], DEVICES)
    device = check_device(args.device)
    batch = _positive_int("--batch", args.batch)
    warmup = _positive_int("--warmup", args.warmup, 0)
    min_runs = _positive_int("--min-runs", args.min_runs)
    try:
        min_time = float(args.min_time)
    except ValueError:
        min_time = -1.0
    if not min_time >= 0:
        raise BenchError(f"--min-time must be a number of seconds >= 0, got {args.min_time!r}")

    cfg = resolve_model(args.model, args.task, args.budget, args.sets)
    torch.manual_seed(0)
    model = create_model(args.model, **cfg.to_dict())
    paper = paper_macs(model)
    result = measure_latency(
        model,
        args.workload,
        threads=threads,
        device=device,
        dtype=args.dtype,
        batch=batch,
        name=args.model,
        warmup=warmup,
        min_runs=min_runs,
        min_time_s=min_time,
    )
    result.macs, result.macs_with_output = paper
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(result.summary())
    return 0


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise BenchError(f"{self.prog}: {message}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.latency ...``: the same command without going through bench.cli."""
    from models import ConfigError

    parser = _ArgumentParser(prog="python -m bench latency", description=HELP)
    _add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
