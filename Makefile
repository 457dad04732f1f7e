# evgrid: every install step lives here. `make run` and `make test` each set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: setup run test lint bench data clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# CPU torch first (a local wheel on these machines); a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/evgrid run city --out runs/city

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/sim_throughput.py
	$(BIN)/python benchmarks/offline_bound.py

# Real distributions and prices (ElaadNL tables, Dutch day-ahead prices) from the ev2gym wheel.
data: data/ev2gym/.done
data/ev2gym/.done:
	mkdir -p data/ev2gym/wheel
	$(BIN)/pip download -q --no-deps -d data/ev2gym/wheel ev2gym==2.0.0
	cd data/ev2gym && python3 -m zipfile -e wheel/ev2gym-2.0.0-py3-none-any.whl extracted
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
