"""What a model costs without running it: MACs by several counters (counting) checked against hand formulas
(analytic), parameters (params), a model's profile (profiling) and its memory (memory)."""
