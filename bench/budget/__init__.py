"""Budgets: budget files parsed (spec, keys, tune_plan, shape_plan, latency_target), every family solved to a
MAC budget (mac_solver) or a measured latency (latency_solve, latency_together), and command-line words turned
into a model config (resolve). ``solve.solve_model`` is the one entry for either kind of budget."""
