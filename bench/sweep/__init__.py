"""The sweep behind ``make bench`` (runner), as cluster jobs (jobs), its side-by-side latency stage
(side_by_side), the sample-efficiency study (study) and the cost curves (cost_curves)."""
