VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint bench bench-normalization bench-generation bench-inference bench-cnn

setup:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"

lint:
	$(VENV)/bin/ruff check src tests benchmarks

test: lint
	$(PY) -m pytest

# benchmarks (not part of `make test`): tables are printed and written under benchmarks/results/
bench: bench-normalization bench-inference

bench-normalization:
	$(PY) benchmarks/bench_normalization.py

bench-generation:
	$(PY) benchmarks/bench_generation.py --workers 1 2

bench-inference:
	$(PY) benchmarks/bench_inference.py --model sphere-1deg --threads 1 2 --repeat 30 --out benchmarks/results/inference.md

# needs the test data sets of the README's "Benchmark data" section under data/
bench-cnn:
	$(PY) benchmarks/bench_cnn_sphere.py --model sphere-1deg \
	    --randomized-fields 5 --randomized-from data/te-sphere-study \
	    --test-dirs data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/te-sphere-study \
	    -o benchmarks/results/cnn_sphere.md
