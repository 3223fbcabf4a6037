VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint bench clean

setup:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"

lint:
	$(VENV)/bin/ruff check src tests benchmarks

test: lint
	$(PY) -m pytest

bench:
	$(PY) benchmarks/bench_normalization.py
