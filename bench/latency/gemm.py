"""The machine's sustained fp32 GEMM rate: the ceiling a measured latency is compared against (a model's
MACs at this rate give the fastest it could run)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.latency.machine import check_device, check_threads, num_threads
from bench.latency.timing import time_callable


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

    CPU: n=2048 (8.6 GMACs per call); CUDA: n=8192 with TF32 off (true fp32).

    Args:
        threads: thread count; "all" or None: every core this process may use.
        device: "cpu" or a CUDA device.
        size: the square matrices' side; None: 2048 on CPU, 8192 on CUDA.
    """
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
