# Two commands do everything on a fresh machine: `make test` and `make reproduce-table1`.
# Every target sets up .venv first when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PEER := .venv-peer
PEER_STAMP := $(PEER)/.installed
SCALE ?= mini
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast lint lock mutation wheelhouse reproduce-table1 reproduce-ablations bench-perf bench-perf-grid bench-gpu test-gpu rehearse-gpu smoke-paper clean

setup: $(STAMP)

# torch first (the local CPU wheel), then the locked set with --no-deps so that ms-vlmeval's
# metadata cannot pull the CUDA-linked torchvision or antlr4 4.11.1 back in (see pyproject.toml).
$(STAMP): pyproject.toml requirements/lock.txt requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check --no-deps -c requirements/constraints.txt -r requirements/lock.txt
	$(PIP) install -q --disable-pip-version-check --no-deps -e .
	$(PY) -c "import importlib.util, torch, transformers, deepspeed, math_verify, mathruler.grader; assert torch.__version__.startswith('2.13.0') and importlib.util.find_spec('vlmeval')"
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu" $(PYTEST_ARGS)

# The peer trainer (TRL) lives in its own environment, made on first use; .venv never depends on it.
$(PEER_STAMP): requirements/peer.txt requirements/lock.txt requirements/constraints.txt
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(PEER)/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -c requirements/lock.txt -r requirements/peer.txt
	touch $@

# Benchmarks: print the figures (throughputs, step times); never asserted as wall-clock limits.
# The side-by-side run against TRL writes results/perf/cpu.{md,json}.
bench-perf: $(STAMP) $(PEER_STAMP)
	$(PY) -m pytest -q -s tests/perf --benchmark-enable --benchmark-columns=median,min,max,rounds
	$(PY) -m reproduce.perf --peer-python $(PEER)/bin/python $(if $(ALTERNATIONS),--alternations $(ALTERNATIONS))

# The cost curves (results/perf/cpu_scaling.*, about 25 minutes on 2 cores) and the memory limits
# at n=16 (results/perf/memory.*), side by side with TRL.
bench-perf-grid: $(STAMP) $(PEER_STAMP)
	$(PY) -m reproduce.perf --grid --peer-python $(PEER)/bin/python
	$(PY) -m reproduce.perf.memory --peer-python $(PEER)/bin/python

# Mutation testing (mutmut, configured in pyproject.toml) over the modules whose bugs give wrong
# numbers, against their in-process tests; outside CI (it takes hours on 2 cores). MUTANTS="train.plan*"
# narrows it to matching mutant names. Prints the kill rate per module.
# PYTEST_TIMEOUT=60 (over pyproject's 1200 s): the slowest test of the selection takes 34 s (40 s
# under mutmut's tracing), so a mutant that hangs a test fails it within a minute, as CI's limit
# would fail it later, instead of holding a core. The limit is wall-clock: measure with the cores
# otherwise idle, or a slow test run beside other work could count as a kill.
mutation: $(STAMP)
	$(PIP) install -q --disable-pip-version-check -c requirements/constraints.txt mutmut==3.8.1
	rm -rf mutants
	$(PY) tests/helpers/mutation_watchdog.py $$$$ & PYTEST_TIMEOUT=60 $(VENV)/bin/mutmut run $(MUTANTS) || true
	$(PY) tests/helpers/mutation_report.py

# The GPU benchmark in one command of at most 7 minutes (docs/performance.md: GPU), and the `gpu` tests in another.
# Both run on the GPU machine's own Python, with the packages installed there from a wheelhouse: no
# .venv, no network.
GPU_PYTHON ?= python3
bench-gpu:
	$(GPU_PYTHON) -m reproduce.perf.gpu $(if $(OUT),--out $(OUT)) $(GPU_ARGS)

test-gpu:
	$(GPU_PYTHON) -m pytest -q -m gpu -p no:cacheprovider tests/test_rollout.py tests/test_trainer.py tests/test_vllm_rollout.py

# The paper-scale evaluation path once, in at most 4 minutes of one GPU (docs/evaluation.md: Paper-scale smoke):
# a random 3B-shaped checkpoint, 2 items of each Table 1 benchmark, 64 new tokens. SHAPE=tiny runs it on a CPU.
smoke-paper:
	$(GPU_PYTHON) -m reproduce.paper_smoke --out $(or $(OUT),runs/paper_smoke) $(if $(SHAPE),--shape $(SHAPE))

# The GPU machine rehearsed on this CPU (docs/install.md: Offline): a fresh venv from the CPU torch and
# the wheelhouse alone (--no-index), without decord and jieba (GPU images lack them), runs the tiny-shape
# bench-gpu and smoke-paper, as the GPU machine runs them from the checkout. Proves the wheelhouse is
# complete for both. Needs the package registry once, for the wheelhouse.
REHEARSAL ?= runs/rehearsal
HERE_PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
rehearse-gpu: $(STAMP)
	$(MAKE) wheelhouse PYTHON_VERSION=$(HERE_PYTHON_VERSION)
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL) && $(PYTHON) -m venv $(REHEARSAL)/venv
	$(REHEARSAL)/venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
	grep -v -E '^(decord|jieba)==' wheelhouse/requirements.txt > $(REHEARSAL)/requirements.txt
	$(REHEARSAL)/venv/bin/pip install -q --disable-pip-version-check --no-index --find-links wheelhouse --no-deps -r $(REHEARSAL)/requirements.txt
	$(MAKE) bench-gpu GPU_PYTHON=$(abspath $(REHEARSAL))/venv/bin/python OUT=$(REHEARSAL)/gpu \
		GPU_ARGS="--model tiny --new-tokens 4 --steps 1 --workloads 16_rows --peer-python '' --work-dir $(REHEARSAL)/work"
	$(MAKE) smoke-paper GPU_PYTHON=$(abspath $(REHEARSAL))/venv/bin/python OUT=$(REHEARSAL)/smoke SHAPE=tiny
	@echo "rehearsal passed: $(REHEARSAL)/gpu.md, $(REHEARSAL)/smoke/smoke.md"

# Wheels of every locked package for a machine with no internet (docs/install.md: Offline);
# PYTHON_VERSION is the target's, PEER=1 adds TRL's.
wheelhouse: $(STAMP)
	$(PY) -m reproduce.wheelhouse --out wheelhouse --python-version $(or $(PYTHON_VERSION),3.12) $(if $(PEER),--peer)

lint: $(STAMP)
	$(PY) -m ruff check bench train reproduce tests

# Re-resolve the lock from the current .venv (after a deliberate upgrade there).
lock: $(STAMP)
	{ head -4 requirements/lock.txt; $(PIP) freeze --exclude-editable | grep -v -E '^(torch==|r1-sharevl)'; } > requirements/lock.tmp
	mv requirements/lock.tmp requirements/lock.txt

# SCALE=mini (default): the whole pipeline on CPU; SCALE=paper: the 7B evaluation on GPUs.
# CKPT=dir adds a trained checkpoint (paper scale), JUDGE=name VLMEvalKit's judged scores, FORCE=1 redoes stages,
# BENCH_SEED=N also scores the mini checkpoints on a fresh benchmark drawn with seed N.
reproduce-table1: $(STAMP)
	$(PY) -m reproduce run --scale $(SCALE) $(if $(CKPT),--ckpt $(CKPT)) $(if $(JUDGE),--judge $(JUDGE)) $(if $(FORCE),--force) $(if $(BENCH_SEED),--bench-seed $(BENCH_SEED)) $(if $(BENCHMARKS),--benchmarks $(BENCHMARKS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(CURVES),--curves) $(if $(REGIME),--regime $(REGIME))

reproduce-ablations: $(STAMP)
	$(PY) -m reproduce ablations $(if $(FORCE),--force)

clean:
	rm -rf $(VENV) $(PEER) .pytest_cache .benchmarks
