"""Latency of the protocol's workloads, with its noise, its setting and the machine's own limit beside it.

The protocol (docs/protocol.md, section Latency):
- Workloads (:mod:`.workloads`), eval mode, no grad (``torch.inference_mode``), batch 1 unless ``batch``
  says otherwise: "forward" (the MAC pass: 30 source + 30 target tokens, teacher forced) and "translate"
  (encode 30 tokens, then exactly 30 greedy incremental decoder steps).
- Timing (:mod:`.timing`): at least 10 warm-up calls, then at least 30 timed calls and at least 1 s of timed
  calls, each call timed alone (``time.perf_counter_ns`` on CPU; CUDA events with a synchronisation after
  every call on GPU), garbage collection paused. The raw samples are kept; p50, p90, mean, IQR (p75 - p25,
  numpy's linear percentiles), CV (sample standard deviation / mean) and n are derived from them, with a
  warning when the spread is too wide to trust (CV > 5% or IQR > 10% of the median) or the protocol's
  minima were not met.
- Threads: ``torch.set_num_threads(threads)`` for the whole measurement (1 = the mobile-like setting;
  ``None`` or "all" = every core this process may run on), restored afterwards (bench.machine).
- dtype: "fp32", or "bf16" = ``torch.autocast`` to bfloat16 (weights stay fp32), on CPU and CUDA.
- Backend (:mod:`.backends`): what executes the workload: "eager" (default), "compile" (torch.compile,
  inductor) or "onnxruntime" (torch.onnx export, CPUExecutionProvider); a non-eager backend's output is checked
  against eager's on the same inputs before anything is timed, and the check is recorded (``agreement``).
- Efficiency: the MACs one workload call executes (``workload_macs``: counted at the dispatcher with
  ``torch.utils.flop_counter`` around one call, flops / 2, output projection included since the device pays
  for it; or given by the caller) divided by p50, as a fraction of the machine's sustained fp32 GEMM rate at
  the same thread count (bench.machine: one large square matmul, measured once per process and cached).
- Units: milliseconds, MACs, GMAC/s (10**9 MACs per second), MB (10**6 bytes).

Python: ``measure_latency(model, "translate", threads=1)`` (:mod:`.record`); ``measure_in_subprocess`` runs
one measurement in a fresh process. Command line: ``python -m bench latency MODEL ...``.
"""

from bench.machine import (
    GemmRate,
    all_cores,
    check_device,
    check_threads,
    cpu_model_name,
    device_name,
    measure_gemm_rate,
    num_threads,
)

from .backends import BACKENDS, backend_version, check_backend
from .record import (
    LONE_PROCESSES,
    Efficiency,
    LatencyRecord,
    Memory,
    Setting,
    measure_in_subprocess,
    measure_latency,
    measure_model,
    median_of_processes,
)
from .timing import CV_WARN, IQR_WARN, MIN_RUNS, MIN_TIME_S, MIN_WARMUP, Measurement, time_callable
from .workloads import (
    DECODE_STEPS,
    DTYPES,
    SRC_LEN,
    TGT_LEN,
    WORKLOADS,
    Workload,
    autocast,
    check_choice,
    count_workload_macs,
    make_workload,
)

__all__ = [
    "BACKENDS",
    "CV_WARN",
    "DECODE_STEPS",
    "DTYPES",
    "IQR_WARN",
    "MIN_RUNS",
    "MIN_TIME_S",
    "MIN_WARMUP",
    "SRC_LEN",
    "TGT_LEN",
    "WORKLOADS",
    "Efficiency",
    "GemmRate",
    "LatencyRecord",
    "Measurement",
    "Memory",
    "Setting",
    "Workload",
    "all_cores",
    "autocast",
    "backend_version",
    "check_backend",
    "check_choice",
    "check_device",
    "check_threads",
    "count_workload_macs",
    "cpu_model_name",
    "device_name",
    "make_workload",
    "measure_gemm_rate",
    "LONE_PROCESSES",
    "median_of_processes",
    "measure_in_subprocess",
    "measure_latency",
    "measure_model",
    "num_threads",
    "time_callable",
]
