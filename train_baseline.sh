#!/usr/bin/env bash
# The seed's "before", for the before/after comparison on any dataset (recipes/baseline.yaml): inverse-frequency
# class weights, weak augmentation, 224 px, one full fine-tuning stage at a low LR with no warmup
# -> checkpoints/baseline. Runs as many epochs as train_fixed.sh's two stages together, so both get the same budget.
#
# Usage:  bash train_baseline.sh          |   DATA_SOURCE=/data/ai_challenger_2018 bash train_baseline.sh
# Settings (unset ones from the recipe, on the demo data with recipes/demo.yaml's changes): IMG_SIZE  EPOCHS  LR
#   BATCH_SIZE  MODEL  SELECT_METRIC  PRETRAINED, PRETRAINED_FILE, OUT_ROOT, EXTRA_ARGS, DATA_SOURCE, DATA_FORMAT,
#   VAL_LIST, DATA_DIR, MAX_SIDE, PYTHON, LAUNCHER: as train_fixed.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/common.sh
prepare_data baseline  # without IMG_SIZE, a cache for the baseline recipe's resolution
set_pretrained_args
set_profile_args

OUT_ROOT=${OUT_ROOT:-checkpoints}

[[ "$PROFILE" == demo ]] && echo "DEMO MODE: built-in synthetic leaves with the CPU-sized profile of recipes/demo.yaml."
echo "== baseline: the seed's before (recipes/baseline.yaml), single stage -> $OUT_ROOT/baseline"
BASELINE_ARGS=(--config recipes/baseline.yaml "${PROFILE_ARGS[@]}")
add_if_set BASELINE_ARGS --epochs "${EPOCHS:-}"
add_if_set BASELINE_ARGS --lr "${LR:-}"
add_if_set BASELINE_ARGS --img-size "${IMG_SIZE:-}"
add_if_set BASELINE_ARGS --model "${MODEL:-}"
add_if_set BASELINE_ARGS --batch-size "${BATCH_SIZE:-}"
add_if_set BASELINE_ARGS --select-metric "${SELECT_METRIC:-}"
"${LAUNCHER_CMD[@]}" train.py "${BASELINE_ARGS[@]}" --data-dir "$DATA_DIR" --output "$OUT_ROOT/baseline" --resume auto \
  "${PRETRAINED_ARGS[@]}" "${EXTRA_TRAIN_ARGS[@]}"
