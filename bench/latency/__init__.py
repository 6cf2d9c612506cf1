"""Latency of the protocol's workloads, with its noise, its setting and the machine's own limit beside it.

The protocol (workloads, timing, threads, dtype, backends, efficiency, units) is stated once, in
docs/protocol.md; this package implements it: :mod:`.workloads` (what is timed), :mod:`.timing` (how one
callable is timed), :mod:`.backends` (eager, compile, onnxruntime), :mod:`.record` (one measurement and its
record), :mod:`.compare` (models timed side by side), :mod:`.pooled` and :mod:`.quiet` (fresh processes and a
quiet machine), :mod:`.machine` (cores, threads, device), :mod:`.gemm` (the machine's GEMM ceiling) and
:mod:`.lock` (the machine-wide measurement lock).

Python: ``measure_latency(model, "translate", threads=1)`` (:mod:`.record`); ``measure_in_subprocess`` runs
one measurement in a fresh process. Command line: ``python -m bench latency MODEL ...``.
"""

from bench.latency.backends import BACKENDS, backend_version, check_backend
from bench.latency.gemm import GemmRate, measure_gemm_rate
from bench.latency.machine import (
    all_cores,
    check_device,
    check_threads,
    cpu_model_name,
    device_name,
    num_threads,
)
from bench.latency.record import (
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
from bench.latency.timing import CV_WARN, IQR_WARN, MIN_RUNS, MIN_TIME_S, MIN_WARMUP, Measurement, time_callable
from bench.latency.workloads import (
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
