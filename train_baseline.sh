#!/usr/bin/env bash
# The seed's "before", for the before/after comparison on any dataset: inverse-frequency class weights,
# weak augmentation, 224 px, one full fine-tuning stage at LR 1e-4 with no warmup -> checkpoints/baseline.
# Runs as many epochs as train_fixed.sh's two stages together, so both get the same budget.
#
# Usage:  bash train_baseline.sh          |   DATA_SOURCE=/data/ai_challenger_2018 bash train_baseline.sh
# Settings: IMG_SIZE 224 [demo 96]  EPOCHS 50 [demo 8]  LR 1e-4  BATCH_SIZE 32  MODEL tf_efficientnet_lite0
#   PRETRAINED, PRETRAINED_FILE, OUT_ROOT, EXTRA_ARGS, DATA_SOURCE, DATA_DIR, PYTHON, LAUNCHER: as train_fixed.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/common.sh
prepare_data

if [[ "$PROFILE" == demo ]]; then
  : "${IMG_SIZE:=96}" "${EPOCHS:=8}"
else
  : "${IMG_SIZE:=224}" "${EPOCHS:=50}"
fi
: "${LR:=1e-4}" "${BATCH_SIZE:=32}" "${MODEL:=tf_efficientnet_lite0}" "${OUT_ROOT:=checkpoints}" "${EXTRA_ARGS:=}"

[[ "$PROFILE" == demo ]] && echo "DEMO MODE: built-in synthetic leaves with a CPU-sized profile (${IMG_SIZE}px, $EPOCHS epochs)."
echo "== baseline: inverse weights, weak augmentation, ${IMG_SIZE}px, single stage, $EPOCHS epochs, LR $LR, no warmup -> $OUT_ROOT/baseline"
# shellcheck disable=SC2086
$LAUNCHER train.py --stage full --epochs "$EPOCHS" --lr "$LR" --warmup-epochs 0 --img-size "$IMG_SIZE" \
  --class-weights inverse --augment weak --model "$MODEL" --batch-size "$BATCH_SIZE" --data-dir "$DATA_DIR" \
  --output "$OUT_ROOT/baseline" --resume auto $(pretrained_args) $EXTRA_ARGS
