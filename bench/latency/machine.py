"""Facts about the machine a measurement runs on: cores, thread settings, the device, the CPU's name and the
machine's sustained fp32 GEMM rate (the limit latency efficiency is a fraction of)."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.errors import BenchError

DEVICES = ("cpu", "cuda")


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
    """A usable torch device ("cpu", "cuda", "cuda:i"); BenchError for an unknown or absent one."""
    if isinstance(device, str) and device.split(":")[0] not in DEVICES:
        raise BenchError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type not in DEVICES:
        raise BenchError(f"unknown device {str(device)!r}; valid: {', '.join(DEVICES)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BenchError(f"--device cuda: no CUDA device is available (torch {torch.__version__}, {built})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BenchError(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextmanager
def num_threads(threads: int) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
