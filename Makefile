# e2e: two commands on a fresh machine.
#   make run    create .venv, install, tag the shipped sample (e2e-run tau_gnn.yaml) and print the e2e-eval table
#   make test   create .venv, install, run the test suite (with reduced slow checks)
# ORT=gpu installs onnxruntime-gpu instead of the CPU build (never both).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ORT    ?= cpu
EXTRAS := $(ORT),gen,test,plot
STAMP  := $(VENV)/.installed-$(ORT)
# make test also installs the compatibility extras (real ROOT and coffea, dask, Triton), so those tests run instead
# of skipping
TEST_STAMP := $(VENV)/.installed-test-$(ORT)
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
# e2e's own modules byte-compiled once (where PYTHONDONTWRITEBYTECODE is set, each start would compile ~50 modules
# from source: ~0.2 s per command and per executor worker); up-to-date files are skipped
PACKAGES := e2e dataformats frameproducers taggers training simulation
COMPILE  := $(BIN)/python -m compileall -q $(PACKAGES)

.PHONY: run sample test install lint bench validate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the local CPU build; any other torch spec pulls several GB of CUDA packages
	$(BIN)/python -m pip install -q torch==2.13.0
	@if [ "$(ORT)" = "gpu" ]; then $(BIN)/python -m pip uninstall -q -y onnxruntime; else $(BIN)/python -m pip uninstall -q -y onnxruntime-gpu; fi
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS),root,coffea,dask,triton]"
	touch $@

run: install
	$(COMPILE)
	$(BIN)/e2e-run process_configs/tau_gnn.yaml
	$(BIN)/e2e-eval output/tau_gnn.root

sample: install
	$(BIN)/e2e-generate process_configs/generate_sample.yaml -o output/sample_tau_qcd.root
	$(BIN)/e2e-validate output/sample_tau_qcd.root

test: $(TEST_STAMP)
	$(COMPILE)
	E2E_REQUIRE_EXTRAS=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_frames.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_inputs.py

validate: install
	$(BIN)/e2e-validate --physics

clean:
	rm -rf output .pytest_cache .numba_cache
	find $(PACKAGES) -name __pycache__ -type d -prune -exec rm -rf {} +
