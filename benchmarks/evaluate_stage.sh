#!/usr/bin/env bash
# A candidate training stage against the shipped sphere-1deg, in one command: its tables on the validation, test
# and robustness fields (benchmarks/bench_cnn_sphere.py, TTA flips), then benchmarks/compare_stages.py against the
# shipped model's files (the shipping rule: at least 7 of the 9 group metrics must fall) and field by field.
#
#   bash benchmarks/evaluate_stage.sh MODEL NAME        # e.g. runs/x/last.pt stage34 (or a GPU run's $OUT/last.pt)
#
# Writes $RESULTS/NAME-{val,test,robustness}.{md,json} and NAME-compare.md, NAME-val-compare.md. The shipped model's
# files ($RESULTS/$BASE-*.json, default stage30) are computed first when missing. Randomized N = 1e4 runs on
# RANDOMIZED fields of each test set (default 3; its metrics are cached per field, so a copy of the base's cache
# costs nothing). Environment: RESULTS, BASE, BASE_MODEL (default sphere-1deg), VAL_DIRS, TEST_DIRS,
# ROBUSTNESS_DIRS (default: the Makefile's ROBUSTNESS_SETS), RANDOMIZED, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
    echo "usage: bash benchmarks/evaluate_stage.sh MODEL NAME   (MODEL: a .pt/.ckpt path or a shipped name)" >&2
    exit 2
fi
MODEL=$1 NAME=$2
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
RESULTS=${RESULTS:-benchmarks/results/best-cpu}
BASE=${BASE:-stage30}
BASE_MODEL=${BASE_MODEL:-sphere-1deg}
VAL_DIRS=${VAL_DIRS:-data/va-sphere-iso data/va-sphere-eq data/va-sphere-aniso data/va-sphere-study}
TEST_DIRS=${TEST_DIRS:-data/te-sphere-iso data/te-sphere-eq data/te-sphere-aniso data/te-sphere-study}
ROBUSTNESS_DIRS=${ROBUSTNESS_DIRS:-$(make -s --no-print-directory print-robustness-sets)}
RANDOMIZED=${RANDOMIZED:-3}
for d in $VAL_DIRS $TEST_DIRS $ROBUSTNESS_DIRS; do
    [ -d "$d" ] || { echo "evaluate_stage: data set $d is missing (README, \"Benchmark data\")" >&2; exit 2; }
done
mkdir -p "$RESULTS"
bench() {  # MODEL OUT.md RANDOMIZED DIRS...: the TTA and no-TTA rows (randomized on RANDOMIZED fields of each set)
    local model=$1 out=$2 nrand=$3; shift 3
    $PY benchmarks/bench_cnn_sphere.py --model "$model" --tta flips --randomized-fields "$nrand" \
        --randomized-from "$@" --test-dirs "$@" -o "$out"
}
for part in val test robustness; do
    case $part in
        val) dirs=$VAL_DIRS nrand=0 ;;
        test) dirs=$TEST_DIRS nrand=$RANDOMIZED ;;
        robustness) dirs=$ROBUSTNESS_DIRS nrand=0 ;;
    esac
    if [ ! -f "$RESULTS/$BASE-$part.json" ]; then
        echo "== $BASE_MODEL on the $part fields (the base, once)"
        # shellcheck disable=SC2086
        bench "$BASE_MODEL" "$RESULTS/$BASE-$part.md" "$nrand" $dirs
    fi
    cache=$RESULTS/$BASE-$part.randomized.json
    if [ -f "$cache" ] && [ ! -f "$RESULTS/$NAME-$part.randomized.json" ]; then
        cp "$cache" "$RESULTS/$NAME-$part.randomized.json"  # the same fields: nothing to recompute
    fi
    echo "== $MODEL on the $part fields"
    # shellcheck disable=SC2086
    bench "$MODEL" "$RESULTS/$NAME-$part.md" "$nrand" $dirs
done
$PY benchmarks/compare_stages.py --base "$RESULTS/$BASE-val.json" --new "$RESULTS/$NAME-val.json" \
    -o "$RESULTS/$NAME-val-compare.md"
$PY benchmarks/compare_stages.py --base "$RESULTS/$BASE-test.json" "$RESULTS/$BASE-robustness.json" \
    --new "$RESULTS/$NAME-test.json" "$RESULTS/$NAME-robustness.json" -o "$RESULTS/$NAME-compare.md"
