#!/usr/bin/env bash
# The seed's fix, end to end: sqrt class weights, strong augmentation, 320 px, and two stages:
#   stage 1: frozen backbone, only the classifier trains (recipes/fixed_stage1.yaml) -> checkpoints/task1_stage1
#   stage 2: everything trains from stage 1's best (recipes/fixed_stage2.yaml)      -> checkpoints/task1_stage2
#   then:    post-hoc logit adjustment of stage 2's best.pth, tau chosen on validation (CALIBRATE=0 skips it)
# Re-running after a crash continues: a finished stage 1 is skipped, stage 2 resumes from its last.pth.
#
# Usage:  bash train_fixed.sh                                   # built-in demo data, CPU-sized profile
#         DATA_SOURCE=/data/ai_challenger_2018 bash train_fixed.sh   # your dataset, the seed's settings
#
# Settings (environment variables; unset ones come from the two recipes, on the demo data with the changes in
# recipes/demo.yaml; BATCH_SIZE and MODEL from train.py's defaults):
#   IMG_SIZE   STAGE1_EPOCHS   STAGE1_LR   STAGE2_EPOCHS   STAGE2_LR   WARMUP_EPOCHS   BATCH_SIZE   MODEL
#   CLASS_WEIGHTS   AUGMENT   PRETRAINED 1 (0: from scratch)   PRETRAINED_FILE (local weights)
#   OUT_ROOT checkpoints   RUN_NAME task1
#   EXTRA_ARGS (appended to both train.py calls, e.g. "--sampler sqrt --workers 4")   CALIBRATE 1 (0: skip step 3)
#   DATA_SOURCE, DATA_DIR, PYTHON, LAUNCHER, DEMO_SCALE, DEMO_IMAGE_SIZE: see scripts/common.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/common.sh
prepare_data

: "${OUT_ROOT:=checkpoints}" "${RUN_NAME:=task1}" "${EXTRA_ARGS:=}"
if [[ "$PROFILE" == demo ]]; then
  echo "DEMO MODE: built-in synthetic leaves with the CPU-sized profile of recipes/demo.yaml."
  echo "           For real training: DATA_SOURCE=/path/to/dataset bash train_fixed.sh (the recipes as they are)."
fi
STAGE1_DIR="$OUT_ROOT/${RUN_NAME}_stage1"
STAGE2_DIR="$OUT_ROOT/${RUN_NAME}_stage2"
COMMON_ARGS="$(profile_args) --data-dir $DATA_DIR ${MODEL:+--model $MODEL} ${IMG_SIZE:+--img-size $IMG_SIZE} \
  ${BATCH_SIZE:+--batch-size $BATCH_SIZE} ${CLASS_WEIGHTS:+--class-weights $CLASS_WEIGHTS} ${AUGMENT:+--augment $AUGMENT} \
  --resume auto $(pretrained_args) $EXTRA_ARGS"

echo "== stage 1/2: frozen backbone, head only (recipes/fixed_stage1.yaml) -> $STAGE1_DIR"
# shellcheck disable=SC2086  # LAUNCHER and the argument lists are meant to split into words
$LAUNCHER train.py --config recipes/fixed_stage1.yaml ${STAGE1_EPOCHS:+--epochs $STAGE1_EPOCHS} \
  ${STAGE1_LR:+--lr $STAGE1_LR} --output "$STAGE1_DIR" $COMMON_ARGS

echo "== stage 2/2: full fine-tune from $STAGE1_DIR/best.pth (recipes/fixed_stage2.yaml) -> $STAGE2_DIR"
# shellcheck disable=SC2086
$LAUNCHER train.py --config recipes/fixed_stage2.yaml ${STAGE2_EPOCHS:+--epochs $STAGE2_EPOCHS} \
  ${STAGE2_LR:+--lr $STAGE2_LR} ${WARMUP_EPOCHS:+--warmup-epochs $WARMUP_EPOCHS} \
  --init-from "$STAGE1_DIR/best.pth" --output "$STAGE2_DIR" $COMMON_ARGS

if [[ "${CALIBRATE:-1}" != 0 ]]; then
  echo "== calibration: post-hoc logit adjustment of $STAGE2_DIR/best.pth, tau chosen on the validation set"
  "$PYTHON" predict.py --checkpoint "$STAGE2_DIR/best.pth" --calibrate-tau --data-dir "$DATA_DIR"
fi

echo "== done. Curves: $STAGE2_DIR/training_curves.png"
echo "   python visualize_training.py --checkpoint-dir $STAGE2_DIR/"
echo "   python visualize_training.py --compare $STAGE1_DIR/best.pth $STAGE2_DIR/best.pth"
