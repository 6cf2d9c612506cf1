# litebench: Transformer vs Evolved Transformer vs Lite Transformer at matched MAC budgets.
# Every target uses .venv, which the first target that needs it builds (CPU torch, pinned).

PYTHON        ?= python3
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch alone, e.g. an index that serves CPU builds on a machine with network.
TORCH_PIP_ARGS ?=
VENV          ?= .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.installed-$(TORCH_VERSION)

BUDGET   ?= 100M
MODELS   ?=
SEEDS    ?= 1
DEVICE   ?= cpu
THREADS  ?=
SCHEDULE ?= short
TASK     ?= mt
QUICK    ?=
FORCE    ?=
COMPRESS ?=
CONFIRM  ?=
JOBS     ?=
# --executor slurm: one job per model's latency (a whole node) and per (model, seed) training, as job arrays
EXECUTOR  ?= local
PARTITION ?=
JOB_CPUS  ?=
JOB_TIME  ?=
JOB_GPUS  ?=

.DEFAULT_GOAL := help
.PHONY: help setup test test-slow test-slurm slurm-start slurm-stop benchmark bench tune shapes report profile-table \
	latency-table recipes check-latency curves ablations park unpark lint clean

help: ## list the targets
	@echo "litebench — make targets (variables: BUDGET=$(BUDGET) MODELS= SEEDS= DEVICE= THREADS= SCHEDULE= TASK= QUICK=1 FORCE=1 COMPRESS=;"
	@echo "  on Slurm: EXECUTOR=slurm PARTITION= JOB_CPUS= JOB_TIME= JOB_GPUS=)"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'

SLURM_FLAGS = $(if $(PARTITION),--slurm-partition $(PARTITION)) $(if $(JOB_CPUS),--slurm-cpus $(JOB_CPUS)) \
	$(if $(JOB_TIME),--slurm-time $(JOB_TIME)) $(if $(JOB_GPUS),--slurm-gpus $(JOB_GPUS))

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	@echo "torch==$(TORCH_VERSION)" > $(VENV)/torch-pin.txt
	$(PY) -m pip install -q -c $(VENV)/torch-pin.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## build .venv: torch pinned by TORCH_VERSION (default 2.13.0, CPU), then the suite and `litebench`

test: $(STAMP) ## the default test suite (minutes on 2 cores)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## slow tests (marked slow): latency statistics over repeats, ours vs torch.nn.Transformer, end-to-end runs through real processes
	$(PY) -m pytest -q -m slow

test-slurm: $(STAMP) ## end to end on a local Slurm cluster (root): quick sweep as jobs, scancel + resubmit
	$(PY) -m pytest -q -s -m slurm tests/bench/test_slurm_cluster.py

slurm-start: ## start a one-node Slurm cluster on this machine (scripts/slurm-local.sh; root, Debian packages)
	scripts/slurm-local.sh start

slurm-stop: ## stop it (cancels its jobs)
	scripts/slurm-local.sh stop

benchmark: $(STAMP) ## pytest-benchmark micro-benchmarks (attention, convolutions, layers)
	$(PY) -m pytest -q -m benchmark --benchmark-enable --benchmark-sort=name tests

bench: $(STAMP) ## the whole comparison at BUDGET (solve, profile, latency, train, evaluate, report)
	$(PY) -m bench run --budget $(BUDGET) --task $(TASK) --schedule $(SCHEDULE) --device $(DEVICE) \
		$(if $(MODELS),--models $(MODELS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(THREADS),--threads $(THREADS)) \
		$(if $(QUICK),--quick) $(if $(FORCE),--force) $(if $(COMPRESS),--compress $(COMPRESS)) \
		--executor $(EXECUTOR) $(SLURM_FLAGS)

tune: $(STAMP) ## equal-budget peak learning-rate search for every family of BUDGET (results/<budget>/tuning)
	$(PY) -m bench tune --budget $(BUDGET) --task $(TASK) $(if $(MODELS),--models $(MODELS)) \
		--executor $(EXECUTOR) $(SLURM_FLAGS)

shapes: $(STAMP) ## equal-budget shape search (depth, heads, FFN ratio) per family of BUDGET at its tuned rate; CONFIRM=1: full runs of each family's two best; JOBS= trials at a time (results/<budget>/shapes)
	$(PY) -m bench shapes --budget $(BUDGET) --task $(TASK) $(if $(MODELS),--models $(MODELS)) \
		$(if $(JOBS),--jobs $(JOBS)) $(if $(CONFIRM),--confirm) --executor $(EXECUTOR) $(SLURM_FLAGS)

CURVE_BUDGETS ?= 25M,50M,100M,200M,500M,1G,2G
BACKENDS      ?= eager,onnxruntime
ablations: $(STAMP) ## the budget file's ablations (one change each to a family's row), each against its family's row (results/<budget>/ablations)
	$(PY) -m bench run --budget $(BUDGET) --task $(TASK) --ablations --schedule $(SCHEDULE) --device $(DEVICE) \
		$(if $(MODELS),--models $(MODELS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(QUICK),--quick) \
		$(if $(FORCE),--force) --executor $(EXECUTOR) $(SLURM_FLAGS)

curves: $(STAMP) ## cost curves, no training: every family at CURVE_BUDGETS x BACKENDS x THREADS (results/curves)
	$(PY) -m bench curves --budgets $(CURVE_BUDGETS) --backends $(BACKENDS) $(if $(THREADS),--threads $(THREADS))

report: $(STAMP) ## rebuild leaderboard tables and figures from the run records
	$(PY) -m bench report --budget $(BUDGET) --task $(TASK)

profile-table: $(STAMP) ## the MACs/params tables of results/README.md: every family at 100M and 500M, every counter
	$(PY) -m bench table

latency-table: $(STAMP) ## the latency table of results/README.md, from the reported configs' latency records of results/100M and results/500M
	$(PY) -m bench table --latency

recipes: $(STAMP) ## the sample-efficiency study of results/README.md: short schedule vs the plain recipe, 2 seeds
	$(PY) -m bench recipes --model transformer --budget 100M --seeds 1,2

check-latency: $(STAMP) ## quiet machine only: paired ratios agree twice, two sweeps at once never time beside compute
	PY=$(PY) scripts/check-latency-isolation.sh

park: ## copy unfinished training runs (checkpoint, log) from .cache/runs/ into parked/, to commit for the next machine
	scripts/park-runs.sh save

unpark: ## on a fresh clone: put parked/ runs back into .cache/runs/ (the same command then resumes them)
	scripts/park-runs.sh restore

lint: $(STAMP) ## ruff
	$(PY) -m ruff check models bench tests

clean: ## remove caches (keeps .venv and results/)
	rm -rf .pytest_cache .benchmarks .ruff_cache
