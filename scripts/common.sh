# Shared by train_fixed.sh and train_baseline.sh (sourced, not run): pick the Python, prepare the data.
#
# DATA_SOURCE  a raw dataset: AI Challenger 2018 root (JSON annotations or train_list.txt/ttest_list.txt lists),
#              ImageFolder root, CSV file or a '<image path> <label>' text list. It is cleaned into DATA_DIR
#              by analyze_data.py unless DATA_DIR already holds that source's cleaned copy.
# DATA_FORMAT  its layout when detection is not wanted (analyze_data.py --format, e.g. list, aichallenger-list)
# VAL_LIST     with a text-list DATA_SOURCE: the validation list (analyze_data.py --val-list); without it a
#              stratified split of DATA_SOURCE is made
# DATA_DIR     the cleaned dataset (default data/cleaned). With no DATA_SOURCE and nothing in DATA_DIR, the
#              built-in synthetic demo dataset is generated and cleaned into it.
# MAX_SIDE     smaller copies of large photos, made once when cleaning (analyze_data.py --max-side): unset =
#              auto, only when the median photo is at least twice what training at IMG_SIZE (default: the
#              recipes' 192) needs, sized to still cover its smallest crop (cleaning prints what it chose);
#              a number of pixels; off = always train on the originals
# PYTHON       interpreter (default: .venv/bin/python when present, else python3)
# DEMO_DIR, DEMO_SCALE, DEMO_IMAGE_SIZE  where and how big the demo is generated (analyze_data.py --demo-*)
# LAUNCHER     how train.py is started, split into words (default: $PYTHON; for 4 GPUs e.g.
#              ".venv/bin/python -m torch.distributed.run --nproc_per_node=4", the venv's torchrun)
# EXTRA_ARGS   extra train.py flags, split into words (e.g. "--sampler sqrt --workers 4")
# Paths (DATA_DIR, DATA_SOURCE, VAL_LIST, PRETRAINED_FILE, OUT_ROOT, PYTHON) may contain spaces: they are passed as arrays.

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -n "${LAUNCHER:-}" ]]; then
  read -ra LAUNCHER_CMD <<< "$LAUNCHER"
else
  LAUNCHER_CMD=("$PYTHON")
fi
read -ra EXTRA_TRAIN_ARGS <<< "${EXTRA_ARGS:-}"
DATA_DIR=${DATA_DIR:-data/cleaned}
DATA_SOURCE=${DATA_SOURCE:-}

# True when DATA_DIR was cleaned from the built-in demo.
cleaned_is_demo() {
  "$PYTHON" -c 'import sys; from leafdisease.data import cleaning; sys.exit(0 if cleaning.cleaned_from_demo(sys.argv[1]) else 1)' "$DATA_DIR"
}

# prepare_data [RECIPE]: sets PROFILE to "demo" or "real". RECIPE (recipes/RECIPE.yaml, its demo profile's on the
# demo): the training resolution the cache and the advice are for when IMG_SIZE is unset (train.py refuses a cache
# made for a smaller model than the one it trains).
prepare_data() {
  # Decoding photos far larger than the training crops costs more CPU time than the model at 128 px
  # (benchmarks/reports/feeding.md), so by default cleaning caches smaller copies when the photos are that large.
  local max_side=${MAX_SIDE:-auto} CACHE_ARGS=()
  if [[ "$max_side" != off ]]; then CACHE_ARGS=(--max-side "$max_side"); fi
  add_if_set CACHE_ARGS --recipe "${1:-}"
  add_if_set CACHE_ARGS --img-size "${IMG_SIZE:-}"
  if [[ -n "$DATA_SOURCE" ]]; then
    # analyze_data.py skips the cleaning when DATA_DIR already holds this source unchanged.
    local clean_args=(--source "$DATA_SOURCE" --out "$DATA_DIR" "${CACHE_ARGS[@]}")
    add_if_set clean_args --format "${DATA_FORMAT:-}"
    add_if_set clean_args --val-list "${VAL_LIST:-}"
    "$PYTHON" analyze_data.py "${clean_args[@]}"
  elif [[ -f "$DATA_DIR/metadata/classes.csv" ]]; then
    echo "data: using the cleaned dataset in $DATA_DIR"
  else
    echo "data: no DATA_SOURCE given and nothing in $DATA_DIR: generating the built-in synthetic demo dataset"
    "$PYTHON" analyze_data.py --demo --out "$DATA_DIR" "${CACHE_ARGS[@]}" ${DEMO_DIR:+--demo-dir "$DEMO_DIR"} \
      ${DEMO_SCALE:+--demo-scale "$DEMO_SCALE"} ${DEMO_IMAGE_SIZE:+--demo-image-size "$DEMO_IMAGE_SIZE"}
  fi
  if cleaned_is_demo; then PROFILE=demo; else PROFILE=real; fi
}

# Sets PROFILE_ARGS: --profile recipes/demo.yaml on the demo data (prepare_data sets PROFILE), else nothing.
set_profile_args() {
  PROFILE_ARGS=()
  if [[ "$PROFILE" == demo ]]; then PROFILE_ARGS=(--profile recipes/demo.yaml); fi
}

# add_if_set ARRAY FLAG VALUE: appends FLAG VALUE (as two words, spaces kept) to ARRAY when VALUE is not empty.
add_if_set() {
  local -n target=$1
  if [[ -n "$3" ]]; then target+=("$2" "$3"); fi
}

# Sets PRETRAINED_ARGS, the pretrained-weights flags, from PRETRAINED (1 = ImageNet weights, 0 = from scratch)
# and PRETRAINED_FILE.
set_pretrained_args() {
  PRETRAINED_ARGS=()
  if [[ -n "${PRETRAINED_FILE:-}" ]]; then
    PRETRAINED_ARGS=(--pretrained-file "$PRETRAINED_FILE")
  elif [[ "${PRETRAINED:-1}" == 0 ]]; then
    PRETRAINED_ARGS=(--no-pretrained)
  fi
}
