#!/usr/bin/env bash
# One stage of sphere-1deg on a GPU machine, in one command of at most ten minutes (README "A GPU stage in one
# command"): compute a fresh draw of training fields on the machine's cores (benchmarks/fresh_fields.py generate,
# from a plan made here: no Dask, NetCDF or land-mask data needed there), train configs/gpu-stage.yaml from the
# shipped weights on them (benchmarks/train_packed.py), and leave a slim model file and the logs in $OUT.
# Evaluate the returned model back on the CPU machine (benchmarks/bench_cnn_sphere.py --model .../last.pt).
#
#   bash benchmarks/gpu_stage.sh                       # the defaults below; on the device: OUT is set for you
#   FILTERS=64 MAX_TIME=00:00:06:00 bash benchmarks/gpu_stage.sh   # a fixed training time instead of BUDGET
#   OVERRIDE='{trainer: {precision: 32-true}}' ...     # any YAML merged into the config (train_packed --override)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-stage}
PLAN=${PLAN:-benchmarks/results/gpu-stage/plan-draw10-11.npz}   # 466 fresh training fields + 1 validation field
CONFIG=${CONFIG:-configs/gpu-stage.yaml}
BUDGET=${BUDGET:-560}   # seconds for the whole script (a device command may run 600): what generation leaves,
                        # less 90 s for loading the fields and saving, is the training's max_time (unless MAX_TIME)
FILTERS=${FILTERS:-128}
WORKERS=${WORKERS:-$(nproc)}
WORK=${WORK:-${TMPDIR:-/tmp}/diffnorm-gpu-stage}   # the pack (~400 MB) and the checkpoints: not sent back
OVERRIDE=${OVERRIDE:-"{}"}
REPEAT=${REPEAT:-20}    # forward passes timed before and after training (0: none, for a dry run on a CPU)
PY=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
{ nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU"; echo "$(nproc) cores"; } | tee "$OUT/generate.log"   # at most 8 files go back
start=$(date +%s)
# a preflight of seconds that also records the shipped network's forward time on this device: a broken CUDA or
# PyTorch set-up fails here, before minutes of field generation
[ "$REPEAT" = 0 ] || $PY benchmarks/train_packed.py --time-only sphere-1deg --repeat "$REPEAT" | tee "$OUT/forward.json"
$PY benchmarks/fresh_fields.py generate "$PLAN" -o "$WORK/fields.npz" --workers "$WORKERS" 2>&1 | tee -a "$OUT/generate.log"
echo "generation: $(( $(date +%s) - start )) s" | tee -a "$OUT/generate.log"
if [ -z "${MAX_TIME:-}" ]; then
    left=$(( BUDGET - ($(date +%s) - start) - 90 ))
    [ "$left" -ge 60 ] || { echo "only ${left} s left for training (BUDGET=$BUDGET): stopping" >&2; exit 1; }
    MAX_TIME=$(printf '00:%02d:%02d:%02d' $((left / 3600)) $((left % 3600 / 60)) $((left % 60)))
fi
echo "training for $MAX_TIME" | tee "$OUT/train.log"
$PY benchmarks/train_packed.py "$CONFIG" "$WORK/fields.npz" "$WORK/run" --max-time "$MAX_TIME" --repeat "$REPEAT" \
    --override "$($PY -c 'import json, sys, yaml; o = yaml.safe_load(sys.argv[2]) or {}; o.setdefault("model", {}).setdefault("model_kwargs", {})["filters"] = int(sys.argv[1]); print(json.dumps(o))' "$FILTERS" "$OVERRIDE")" \
    2>&1 | tee -a "$OUT/train.log"
# a slim model file (weights and meta, no optimizer state: ~8 MB at 128 filters) for diffnorm predict/evaluate
$PY -c 'import sys; from diffnorm.pretrained import export_checkpoint; export_checkpoint(sys.argv[1], sys.argv[2])' \
    "$WORK/run/last.ckpt" "$OUT/last.pt"
cp "$WORK/run/metrics.csv" "$WORK/run/summary.json" "$OUT/"   # the checkpoints (optimizer state too) stay in WORK
echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.log"
