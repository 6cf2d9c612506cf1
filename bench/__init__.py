"""litebench: the benchmarking harness (counting, budgets, latency, data, training, evaluation, reports)."""
