#!/usr/bin/env bash
# The seed's fix, end to end: sqrt class weights, strong augmentation, 320 px, and two stages:
#   stage 1: frozen backbone, only the classifier trains (10 epochs, LR 1e-3)  -> checkpoints/task1_stage1
#   stage 2: everything trains from stage 1's best (40 epochs, LR 3e-4, 5 warmup) -> checkpoints/task1_stage2
#   then:    post-hoc logit adjustment of stage 2's best.pth, tau chosen on validation (CALIBRATE=0 skips it)
# Re-running after a crash continues: a finished stage 1 is skipped, stage 2 resumes from its last.pth.
#
# Usage:  bash train_fixed.sh                                   # built-in demo data, CPU-sized profile
#         DATA_SOURCE=/data/ai_challenger_2018 bash train_fixed.sh   # your dataset, the seed's settings
#
# Settings (environment variables; defaults are the seed's, the demo's in brackets):
#   IMG_SIZE 320 [128]   STAGE1_EPOCHS 10 [4]   STAGE1_LR 1e-3   STAGE2_EPOCHS 40 [4]   STAGE2_LR 3e-4
#   WARMUP_EPOCHS 5 [1]  BATCH_SIZE 32   MODEL tf_efficientnet_lite0   CLASS_WEIGHTS sqrt   AUGMENT strong
#   PRETRAINED 1 (0: from scratch)   PRETRAINED_FILE (local weights)   OUT_ROOT checkpoints   RUN_NAME task1
#   EXTRA_ARGS (appended to both train.py calls, e.g. "--sampler sqrt --workers 4")   CALIBRATE 1 (0: skip step 3)
#   DATA_SOURCE, DATA_DIR, PYTHON, LAUNCHER, DEMO_SCALE, DEMO_IMAGE_SIZE: see scripts/common.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/common.sh
prepare_data

if [[ "$PROFILE" == demo ]]; then
  : "${IMG_SIZE:=128}" "${STAGE1_EPOCHS:=4}" "${STAGE2_EPOCHS:=4}" "${WARMUP_EPOCHS:=1}"
else
  : "${IMG_SIZE:=320}" "${STAGE1_EPOCHS:=10}" "${STAGE2_EPOCHS:=40}" "${WARMUP_EPOCHS:=5}"
fi
: "${STAGE1_LR:=1e-3}" "${STAGE2_LR:=3e-4}" "${BATCH_SIZE:=32}" "${MODEL:=tf_efficientnet_lite0}"
: "${CLASS_WEIGHTS:=sqrt}" "${AUGMENT:=strong}" "${OUT_ROOT:=checkpoints}" "${RUN_NAME:=task1}" "${EXTRA_ARGS:=}"
if [[ "$PROFILE" == demo ]]; then
  echo "DEMO MODE: built-in synthetic leaves with a CPU-sized profile (${IMG_SIZE}px, $STAGE1_EPOCHS + $STAGE2_EPOCHS epochs)."
  echo "           For real training: DATA_SOURCE=/path/to/dataset bash train_fixed.sh (320px, 10 + 40 epochs)."
fi
STAGE1_DIR="$OUT_ROOT/${RUN_NAME}_stage1"
STAGE2_DIR="$OUT_ROOT/${RUN_NAME}_stage2"
COMMON_ARGS="--data-dir $DATA_DIR --model $MODEL --img-size $IMG_SIZE --batch-size $BATCH_SIZE \
  --class-weights $CLASS_WEIGHTS --augment $AUGMENT --resume auto $(pretrained_args) $EXTRA_ARGS"

echo "== stage 1/2: frozen backbone, head only: $STAGE1_EPOCHS epochs, LR $STAGE1_LR, ${IMG_SIZE}px -> $STAGE1_DIR"
# shellcheck disable=SC2086  # LAUNCHER and the argument lists are meant to split into words
$LAUNCHER train.py --stage head --epochs "$STAGE1_EPOCHS" --lr "$STAGE1_LR" --output "$STAGE1_DIR" $COMMON_ARGS

echo "== stage 2/2: full fine-tune from $STAGE1_DIR/best.pth: $STAGE2_EPOCHS epochs, LR $STAGE2_LR, $WARMUP_EPOCHS warmup -> $STAGE2_DIR"
# shellcheck disable=SC2086
$LAUNCHER train.py --stage full --epochs "$STAGE2_EPOCHS" --lr "$STAGE2_LR" --warmup-epochs "$WARMUP_EPOCHS" \
  --init-from "$STAGE1_DIR/best.pth" --output "$STAGE2_DIR" $COMMON_ARGS

if [[ "${CALIBRATE:-1}" != 0 ]]; then
  echo "== calibration: post-hoc logit adjustment of $STAGE2_DIR/best.pth, tau chosen on the validation set"
  "$PYTHON" predict.py --checkpoint "$STAGE2_DIR/best.pth" --calibrate-tau --data-dir "$DATA_DIR"
fi

echo "== done. Curves: $STAGE2_DIR/training_curves.png"
echo "   python visualize_training.py --checkpoint-dir $STAGE2_DIR/"
echo "   python visualize_training.py --compare $STAGE1_DIR/best.pth $STAGE2_DIR/best.pth"
