#!/usr/bin/env bash
# One stage of sphere-1deg on a GPU machine, in one command of at most ten minutes (README "A GPU stage in one
# command"): compute a fresh draw of training fields on the machine's cores (benchmarks/fresh_fields.py generate,
# from a plan made here: no Dask, NetCDF or land-mask data needed there), train configs/gpu-stage.yaml from the
# shipped weights on them (benchmarks/train_packed.py), and leave a slim model file and the logs in $OUT.
# Evaluate the returned model back on the CPU machine (benchmarks/bench_cnn_sphere.py --model .../last.pt).
#
#   bash benchmarks/gpu_stage.sh                       # the defaults below; on the device: OUT is set for you
#   FILTERS=64 MAX_TIME=00:00:06:00 bash benchmarks/gpu_stage.sh
#   OVERRIDE='{trainer: {precision: 32-true}}' ...     # any YAML merged into the config (train_packed --override)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-stage}
PLAN=${PLAN:-benchmarks/results/gpu-stage/plan-draw10-11.npz}   # 466 fresh training fields + 1 validation field
CONFIG=${CONFIG:-configs/gpu-stage.yaml}
MAX_TIME=${MAX_TIME:-00:00:05:00}                               # training only; generation comes before it
FILTERS=${FILTERS:-128}
WORKERS=${WORKERS:-$(nproc)}
WORK=${WORK:-${TMPDIR:-/tmp}/diffnorm-gpu-stage}   # the pack (~400 MB) and the checkpoints: not sent back
OVERRIDE=${OVERRIDE:-"{}"}
PY=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
{ nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU"; nproc; } | tee "$OUT/machine.txt"
start=$(date +%s)
$PY benchmarks/fresh_fields.py generate "$PLAN" -o "$WORK/fields.npz" --workers "$WORKERS" 2>&1 | tee "$OUT/generate.log"
echo "generation: $(( $(date +%s) - start )) s" | tee -a "$OUT/generate.log"
$PY benchmarks/train_packed.py "$CONFIG" "$WORK/fields.npz" "$WORK/run" --max-time "$MAX_TIME" \
    --override "$($PY -c 'import json, sys, yaml; o = yaml.safe_load(sys.argv[2]) or {}; o.setdefault("model", {}).setdefault("model_kwargs", {})["filters"] = int(sys.argv[1]); print(json.dumps(o))' "$FILTERS" "$OVERRIDE")" \
    2>&1 | tee "$OUT/train.log"
# a slim model file (weights and meta, no optimizer state: ~8 MB at 128 filters) for diffnorm predict/evaluate
$PY -c 'import sys; from diffnorm.pretrained import export_checkpoint; export_checkpoint(sys.argv[1], sys.argv[2])' \
    "$WORK/run/last.ckpt" "$OUT/last.pt"
cp "$WORK/run/metrics.csv" "$WORK/run/summary.json" "$OUT/"   # the checkpoints (optimizer state too) stay in WORK
echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.log"
