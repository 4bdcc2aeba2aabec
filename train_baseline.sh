#!/usr/bin/env bash
# The seed's "before", for the before/after comparison on any dataset (recipes/baseline.yaml): inverse-frequency
# class weights, weak augmentation, 224 px, one full fine-tuning stage at a low LR with no warmup
# -> checkpoints/baseline. Runs as many epochs as train_fixed.sh's two stages together, so both get the same budget.
#
# Usage:  bash train_baseline.sh          |   DATA_SOURCE=/data/ai_challenger_2018 bash train_baseline.sh
# Settings (unset ones from the recipe, on the demo data with recipes/demo.yaml's changes): IMG_SIZE  EPOCHS  LR
#   BATCH_SIZE  MODEL  PRETRAINED, PRETRAINED_FILE, OUT_ROOT, EXTRA_ARGS, DATA_SOURCE, DATA_DIR, PYTHON, LAUNCHER:
#   as train_fixed.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/common.sh
prepare_data

: "${OUT_ROOT:=checkpoints}" "${EXTRA_ARGS:=}"

[[ "$PROFILE" == demo ]] && echo "DEMO MODE: built-in synthetic leaves with the CPU-sized profile of recipes/demo.yaml."
echo "== baseline: the seed's before (recipes/baseline.yaml), single stage -> $OUT_ROOT/baseline"
# shellcheck disable=SC2086
$LAUNCHER train.py --config recipes/baseline.yaml $(profile_args) ${EPOCHS:+--epochs $EPOCHS} ${LR:+--lr $LR} \
  ${IMG_SIZE:+--img-size $IMG_SIZE} ${MODEL:+--model $MODEL} ${BATCH_SIZE:+--batch-size $BATCH_SIZE} \
  --data-dir "$DATA_DIR" --output "$OUT_ROOT/baseline" --resume auto $(pretrained_args) $EXTRA_ARGS
