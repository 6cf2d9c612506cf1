"""Peak memory of a measured workload and the serialized size of a model.

Conventions (units: MB = 10**6 bytes throughout, like the model sizes in the papers):
- CPU: the resident set size (RSS) of this process. The kernel's high-water mark (``VmHWM``) is reset just
  before the workload (``/proc/self/clear_refs``, Linux >= 4.0) and read after it, so ``peak_rss_mb`` is the
  process's peak while the workload ran (interpreter, torch, model and activations), and ``workload_mb`` is
  that peak minus the RSS just before: the memory the workload itself added (activations, caches, kernel
  workspaces). Free memory the C allocator still holds would hide new allocations (they reuse pages that are
  already resident), so it is handed back to the kernel first (glibc ``malloc_trim``). Where the reset is
  not possible the lifetime peak (``ru_maxrss``) stands in, which is why the sweep measures each model in a
  fresh process.
- CUDA: ``torch.cuda.max_memory_allocated`` (tensors only; the caching allocator reserves more) after
  ``reset_peak_memory_stats``; ``workload_mb`` is that peak minus what was allocated before.
- Serialized size: ``torch.save(model.state_dict())`` into memory, in bytes; tied tensors are stored once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import io
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

MB = 10**6


def current_rss_bytes() -> int:
    """Resident set size of this process now, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best we have
        return _ru_maxrss_bytes()


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss` (or since the process started)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _ru_maxrss_bytes()


def release_free_memory() -> bool:
    """Return the C heap's free pages to the kernel (glibc ``malloc_trim(0)``), so RSS counts live memory
    only; False where there is no glibc."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False where the platform cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """Peak memory of one measured workload, in MB (10**6 bytes)."""

    peak_rss_mb: float  # process peak RSS while the workload ran
    workload_mb: float  # what the workload added over the memory in use just before it
    peak_cuda_allocated_mb: float | None  # torch.cuda.max_memory_allocated (CUDA runs only)
    method: str  # how the CPU peak was obtained: "VmHWM reset" or "ru_maxrss (process lifetime)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_peak_memory(fn: Callable[[], Any], calls: int = 1, device: str | torch.device = "cpu") -> PeakMemory:
    """Run ``fn`` ``calls`` times and report the peak memory it reached (see the module docstring).

    Args:
        fn: the workload, called without arguments.
        calls: how many times it runs.
        device: "cpu" (the resident set) or a CUDA device (the allocator's peak).
    """
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    release_free_memory()
    rss_before = current_rss_bytes()
    exact = reset_peak_rss()
    for _ in range(calls):
        fn()
    if cuda:
        torch.cuda.synchronize()
    rss_peak = max(peak_rss_bytes(), rss_before)
    peak_cuda = workload = None
    if cuda:
        peak_cuda = torch.cuda.max_memory_allocated()
        workload = peak_cuda - cuda_before
    else:
        workload = rss_peak - rss_before
    return PeakMemory(
        peak_rss_mb=rss_peak / MB,
        workload_mb=max(workload, 0) / MB,
        peak_cuda_allocated_mb=None if peak_cuda is None else peak_cuda / MB,
        method="VmHWM reset" if exact else "ru_maxrss (process lifetime)",
    )


def serialized_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the model file a user ships (tied tensors stored once)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes
