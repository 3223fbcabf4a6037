#!/bin/bash
# Multi-GPU / multi-node training on SLURM with Lightning's own SLURM support (it reads SLURM_* variables:
# one task per GPU, `srun` starts them, Lightning wires up DDP; requeue on preemption resumes from last.ckpt).
#
#   sbatch examples/slurm_train.sh configs/best.yaml
#
#SBATCH --job-name=diffnorm-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4          # = --trainer.devices
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --signal=SIGUSR1@90          # Lightning saves a checkpoint and requeues the job on this signal
#SBATCH --requeue
#SBATCH --output=slurm-%j.out

set -euo pipefail
CONFIG=${1:-configs/best.yaml}
NODES=${SLURM_NNODES:-1}
DEVICES=${SLURM_NTASKS_PER_NODE:-1}

# source /path/to/venv/bin/activate     # diffnorm installed (pip install -e .)
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# Resume automatically when a last checkpoint of this run exists (requeued job).
RUN_DIR=${RUN_DIR:-runs/$(basename "$CONFIG" .yaml)}   # the configs' CSVLogger writes runs/<config name>/version_N
LAST=$(ls -t "$RUN_DIR"/*/checkpoints/last.ckpt 2>/dev/null | head -n 1 || true)
RESUME=()
if [ -n "$LAST" ]; then RESUME=(--ckpt_path "$LAST"); fi

srun diffnorm train fit --config "$CONFIG" \
    --trainer.accelerator gpu --trainer.strategy ddp \
    --trainer.devices "$DEVICES" --trainer.num_nodes "$NODES" \
    --trainer.max_time null --trainer.max_epochs 50000 \
    --data.num_workers 4 \
    "${RESUME[@]}"
