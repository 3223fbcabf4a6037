VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint bench bench-normalization bench-generation bench-inference bench-cnn bench-robustness bench-latitude bench-bias bench-spread plot-stages print-robustness-sets evaluate-stage restore-weights

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
	$(PY) benchmarks/bench_inference.py --model sphere-1deg-fast --threads 1 2 --repeat 30 --tta none --skip-reference --out benchmarks/results/inference_fast.md

TEST_SETS = data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/te-sphere-study
RANDOMIZED_FROM = data/te-sphere-study data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso
ROBUSTNESS_SETS = data/ood-const1 data/ood-const4 data/ood-const8 data/ood-iso-rough data/ood-iso-smooth \
	data/ood-eq-smooth data/ood-coast-iso data/ood-coast-eq data/ho-iso-s8 data/ho-iso-s15 data/ho-eq-b4 \
	data/ho-const6 data/ho-const1.5 data/ho-iso-s5

# a candidate stage against the shipped model: make evaluate-stage MODEL=runs/x/last.pt NAME=stage34
evaluate-stage:
	bash benchmarks/evaluate_stage.sh $(MODEL) $(NAME)

# the archived weights of superseded and unshipped stages, from the git history: make restore-weights [NAMES="stage31 stage32"]
restore-weights:
	$(PY) benchmarks/restore_weights.py $(if $(NAMES),$(NAMES),--all)

# the robustness sets, for scripts (benchmarks/evaluate_stage.sh)
print-robustness-sets:
	@echo $(ROBUSTNESS_SETS)

# needs the test data sets of the README's "Benchmark data" section under data/ (both shipped models; randomized
# N=1e4 is cached per field in OUTPUT.randomized.json)
bench-cnn:
	$(PY) benchmarks/bench_cnn_sphere.py --model sphere-1deg --randomized-fields 3 --randomized-from $(RANDOMIZED_FROM) \
	    --test-dirs $(TEST_SETS) --tta flips -o benchmarks/results/cnn_sphere.md
	$(PY) benchmarks/bench_cnn_sphere.py --model sphere-1deg-fast --randomized-fields 3 --randomized-from $(RANDOMIZED_FROM) \
	    --test-dirs $(TEST_SETS) --tta flips -o benchmarks/results/cnn_sphere_fast.md

# needs the robustness test sets of the README's "Benchmark data" section under data/
bench-robustness:
	$(PY) benchmarks/bench_cnn_sphere.py --model sphere-1deg --randomized-fields 0 --test-dirs $(ROBUSTNESS_SETS) \
	    --tta flips -o benchmarks/results/cnn_robustness.md
	$(PY) benchmarks/bench_cnn_sphere.py --model sphere-1deg-fast --randomized-fields 0 --test-dirs $(ROBUSTNESS_SETS) \
	    --tta flips -o benchmarks/results/cnn_robustness_fast.md

# sphere-1deg's error by band of |latitude| on test sets with polar land beyond 70° to 80° (needs the test and
# robustness sets of the README's "Benchmark data" section under data/)
LATITUDE_SETS = data/te-sphere-iso data/te-sphere-aniso data/ho-iso-s8 data/ood-coast-iso data/ho-polar80-iso
bench-latitude:
	$(PY) benchmarks/cnn_error_by_latitude.py --model sphere-1deg --test-dirs $(LATITUDE_SETS) --fields 4 \
	    -o benchmarks/results/cnn_latitude.md
	$(PY) benchmarks/cnn_error_by_latitude.py --model sphere-1deg --test-dirs data/ho-polar90-iso --fields 2 --force \
	    --bands 0 60 70 75 80 85 90 -o benchmarks/results/cnn_latitude_polar90.md

# is sphere-1deg's error biased (by coast class, by latitude), and where do field maxima lie? (test and robustness sets)
bench-bias:
	$(PY) benchmarks/cnn_error_bias.py --model sphere-1deg --test-dirs $(TEST_SETS) -o benchmarks/results/cnn_error_bias.md
	$(PY) benchmarks/cnn_error_bias.py --model sphere-1deg --test-dirs $(ROBUSTNESS_SETS) \
	    -o benchmarks/results/cnn_error_bias_robustness.md

# do sphere-1deg's four flips find its errors, and how much of the TTA error could more views still remove?
bench-spread:
	$(PY) benchmarks/tta_spread_check.py --model sphere-1deg --fields 15 --test-dirs $(TEST_SETS) \
	    -o benchmarks/results/tta_spread.md
	$(PY) benchmarks/tta_spread_check.py --model sphere-1deg --fields 10 --test-dirs $(ROBUSTNESS_SETS) \
	    -o benchmarks/results/tta_spread_robustness.md

# sphere-1deg's test error stage by stage (its meta data + the measured metrics CSV) -> docs/img/sphere_1deg_stages.png
plot-stages:
	$(PY) benchmarks/plot_stage_history.py --model sphere-1deg \
	    --metrics benchmarks/results/best-cpu/stages-test-metrics.csv -o docs/img/sphere_1deg_stages.png
