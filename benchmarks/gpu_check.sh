#!/usr/bin/env bash
# The prepared GPU check: every CUDA-specific path of the project run once on a real GPU, in at most 5 minutes,
# with its figures written to benchmarks/reports/gpu.md.
#
#   bash benchmarks/gpu_check.sh                   # on a GPU machine
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh   # quick CPU mode (tiny model and images; chosen by itself
#                                         # when Python sees no GPU). Tests the script, measures nothing.
#
# Parts, in order, each under its own time limit in seconds (GPU mode; in CPU mode, which only tests the
# plumbing, 600 s each, as a shared CI machine can be many times slower than usual). A part that fails or runs
# out of time is recorded in the report as FAILED or TIMED OUT and the next part still runs. In GPU mode the
# limits add up to 300 s; the script exits non-zero when any part failed.
#   environment  10   card, driver, CUDA, torch and library versions, cores
#   demo-data    30   analyze_data.py --demo into the work folder (160 px leaves; CPU mode: 40 px, 0.4 %)
#   cuda-tests   80   pytest tests/training/test_cuda.py: AMP bf16 and fp16 + GradScaler, channels_last, EMA,
#                     evaluation under autocast, a checkpoint moved GPU -> CPU -> GPU (its CPU-only tests run
#                     with the rest of the suite, not here). Any skip on a GPU machine counts as a failure.
#   train-demo   75   bash train_fixed.sh on the demo at 320 px, 1 + 1 epochs, calibration included
#                     (CPU mode: test_efficientnet at 32 px, no calibration)
#   speed        65   python benchmarks/speed.py --gpu-only at 320 px: training img/s through the loader
#                     against in-memory tensors, head against full stage, evaluation, loader workers needed
#   torchrun     40   python -m torch.distributed.run --nproc_per_node=1 train.py: one process over NCCL
#                     (CPU mode: gloo)
#
# Python: $PYTHON, else .venv/bin/python, else python3; it must import torch. On a machine without internet
# where that Python lacks some of requirements.txt, put their wheels in .whl/ (benchmarks/gpu_wheels.sh fetches
# them on a machine with internet; the device tool's carry: [".whl"]): they are installed into the work folder
# first. A whole .venv (6 GB, torch included) is too big to carry to such a machine.
#
# Settings (environment variables):
#   GPU_CHECK_CPU=1          quick CPU mode even where CUDA is available
#   GPU_CHECK_REPORT         the report (default benchmarks/reports/gpu.md; CPU mode: WORK/gpu_check.md, so that no CPU
#                   figure ever lands in gpu.md)
#   GPU_CHECK_WORK           logs, demo data, checkpoints (default: a new temporary folder, kept)
#   GPU_CHECK_PARTS          the parts to run (default: all, in the order above)
#   GPU_CHECK_LIMIT_<PART>   a part's limit in seconds, e.g. GPU_CHECK_LIMIT_TRAIN_DEMO=120
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
STARTED=$(date +%s)
COMMAND="bash benchmarks/gpu_check.sh"
[[ -n "${GPU_CHECK_CPU:-}" ]] && COMMAND="GPU_CHECK_CPU=$GPU_CHECK_CPU $COMMAND"

WORK=${GPU_CHECK_WORK:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)

# --- Python -------------------------------------------------------------------------------------------------
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "error: $PYTHON cannot import torch; set PYTHON to an interpreter with requirements.txt installed" >&2
  exit 2
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  echo "installing the wheels in .whl/ into $WORK/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    .whl/*.whl || { echo "error: installing .whl/*.whl failed" >&2; exit 2; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHON PYTHONUNBUFFERED=1

if [[ -n "${GPU_CHECK_CPU:-}" ]] || ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  MODE=cpu
  REPORT=${GPU_CHECK_REPORT:-$WORK/gpu_check.md}
else
  MODE=gpu
  REPORT=${GPU_CHECK_REPORT:-benchmarks/reports/gpu.md}
fi
# Parts and limits: name gpu-limit cpu-limit.
PART_TABLE="environment 10 600
demo-data 30 600
cuda-tests 80 600
train-demo 75 600
speed 65 600
torchrun 40 600"
PARTS=${GPU_CHECK_PARTS:-$(cut -d' ' -f1 <<<"$PART_TABLE" | tr '\n' ' ')}

limit_of() {
  local name=$1 variable gpu cpu
  variable="GPU_CHECK_LIMIT_$(tr 'a-z-' 'A-Z_' <<<"$name")"
  read -r _ gpu cpu < <(grep "^$name " <<<"$PART_TABLE")
  if [[ -n "${!variable:-}" ]]; then echo "${!variable}"; elif [[ $MODE == gpu ]]; then echo "$gpu"; else echo "$cpu"; fi
}

# --- The parts: each writes its log to stdout; the figures it wants in the report go to $FIGURES ---------------
DATA_DIR="$WORK/cleaned"
if [[ $MODE == gpu ]]; then
  DEMO_ARGS=()
  TRAIN_ENV=(IMG_SIZE=320 STAGE1_EPOCHS=1 STAGE2_EPOCHS=1)
  TINY=()
  DEVICE=cuda
  TORCHRUN_DEVICE=auto  # cuda:LOCAL_RANK
else
  DEMO_ARGS=(--demo-scale 0.004 --demo-image-size 40)
  TRAIN_ENV=(IMG_SIZE=32 STAGE1_EPOCHS=1 STAGE2_EPOCHS=1 MODEL=test_efficientnet PRETRAINED=0 BATCH_SIZE=16
             CALIBRATE=0)
  TINY=(--model test_efficientnet --batch-size 8)
  DEVICE=cpu
  TORCHRUN_DEVICE=cpu
fi

part_environment() {
  {
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/- GPU (nvidia-smi): /'
    else
      echo "- GPU (nvidia-smi): no nvidia-smi on this machine"
    fi
    "$PYTHON" - <<'EOF'
import os, platform
import torch
print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"NCCL {'.'.join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else 'n/a'}")
if torch.cuda.is_available():
    properties = torch.cuda.get_device_properties(0)
    print(f"- CUDA device 0: {properties.name}, {properties.total_memory / 2**30:.1f} GiB, compute capability "
          f"{properties.major}.{properties.minor}, {properties.multi_processor_count} SMs, bf16 supported: "
          f"{torch.cuda.is_bf16_supported()}; {torch.cuda.device_count()} device(s)")
else:
    print("- CUDA device: none visible to torch")
versions = []
for name in ("timm", "albumentations", "cv2", "numpy", "pandas"):
    try:
        versions.append(f"{name} {__import__(name).__version__}")
    except ImportError:
        versions.append(f"{name} MISSING")
print(f"- Python {platform.python_version()} ({os.environ['PYTHON']}); " + ", ".join(versions))
print(f"- CPU cores available to this process: {len(os.sched_getaffinity(0))} (nproc), "
      f"load average at start {', '.join(f'{value:.2f}' for value in os.getloadavg())}")
EOF
  } | tee -a "$FIGURES"
}

part_demo_data() {
  "$PYTHON" analyze_data.py --demo --out "$DATA_DIR" --demo-dir "$WORK/demo" "${DEMO_ARGS[@]}" || return
  "$PYTHON" -c 'import json, sys; totals = json.load(open(sys.argv[1]))["totals"]
print("- demo dataset: {train} training / {val} validation images, {classes} classes".format(**totals))' \
    "$DATA_DIR/metadata/summary.json" | tee -a "$FIGURES"
}

part_cuda_tests() {
  local log="$WORK/logs/cuda-tests.pytest"
  # only the tests that need CUDA (its CPU-only tests run with the rest of the suite)
  # -o addopts="": one process on the one GPU, and no pytest-xdist needed on the GPU machine
  "$PYTHON" -m pytest -q -rs -p no:cacheprovider -o addopts="" tests/training/test_cuda.py \
    -k "not cpu-bf16 and not without_fp16 and not compile_option" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local summary
  summary=$(grep -E "^(=+ )?[0-9]+ (passed|failed|skipped|error)" "$log" | tail -1 | tr -d '=' | xargs)
  echo "- pytest tests/training/test_cuda.py: $summary" >>"$FIGURES"
  if [[ $status -eq 0 && $MODE == gpu && $summary == *skipped* ]]; then
    echo "tests were skipped on a GPU machine: CUDA is not visible to them" >&2
    return 3
  fi
  return "$status"
}

part_train_demo() {
  local log="$WORK/logs/train-demo.out"
  env DATA_DIR="$DATA_DIR" OUT_ROOT="$WORK/checkpoints" "${TRAIN_ENV[@]}" bash train_fixed.sh 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  tr '\r' '\n' <"$log" | grep -E "^(run:|epoch [0-9]+/[0-9]+ \||== |after: )" | sed 's/^/    /' >>"$FIGURES"
  return "$status"
}

part_speed() {
  local args=(--gpu-only --data-dir "$DATA_DIR" --out "$WORK/speed" --device "$DEVICE")
  if [[ $MODE == gpu ]]; then
    # the pipeline at 1 worker and at the training loader's count (speed.py adds it)
    args+=(--gpu-img-size 320 --batch-size 32 --steps 40 --pipeline-workers 1 --pipeline-seconds 3 --photos 4)
  else
    args+=("${TINY[@]}" --gpu-img-size 32 --batch-size 4 --steps 2 --workers 1 --pipeline-workers 0 1
           --pipeline-seconds 0.2 --photos 2 --photo-size 120x80 --max-side 40)
  fi
  mkdir -p "$WORK/speed"
  "$PYTHON" benchmarks/speed.py "${args[@]}" || return
  # speed.md's sections, one heading level down, without its own title and machine lines (stated above)
  sed -n '/^## /,$p' "$WORK/speed/speed.md" | sed 's/^## /#### /' >>"$FIGURES"
}

part_torchrun() {
  local log="$WORK/logs/torchrun.out"
  local args=(--data-dir "$DATA_DIR" --output "$WORK/checkpoints/torchrun" --stage full --epochs 1 --no-pretrained
              --device "$TORCHRUN_DEVICE")
  if [[ $MODE == gpu ]]; then args+=(--img-size 320); else args+=("${TINY[@]}" --img-size 32); fi
  rm -rf "$WORK/checkpoints/torchrun"  # a fresh run each time: train.py refuses to overwrite an earlier one
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 train.py "${args[@]}" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  tr '\r' '\n' <"$log" | grep -E "^(run:|distributed:|epoch [0-9]+/[0-9]+ \|)" | sed 's/^/    /' >>"$FIGURES"
  local backend=nccl
  [[ $MODE == cpu ]] && backend=gloo
  if [[ $status -eq 0 ]] && ! grep -q "distributed: $backend" "$log"; then
    echo "train.py did not report a $backend process group" >&2
    return 3
  fi
  return "$status"
}

# --- Run them ---------------------------------------------------------------------------------------------------
SECTIONS="$WORK/sections.md"
: >"$SECTIONS"
FAILED=0
for part in $PARTS; do
  if ! grep -q "^$part " <<<"$PART_TABLE"; then
    echo "error: GPU_CHECK_PARTS: unknown part '$part' (known: $(cut -d' ' -f1 <<<"$PART_TABLE" | xargs))" >&2
    exit 2
  fi
done
for part in $PARTS; do
  limit=$(limit_of "$part")
  log="$WORK/logs/$part.log"
  FIGURES="$WORK/logs/$part.figures"
  : >"$FIGURES"
  export FIGURES
  echo "== $part (limit ${limit}s), log: $log"
  part_start=$(date +%s.%N)
  # Each part runs in its own bash under `timeout`, so a hung part is killed (with its children) at its limit.
  timeout --kill-after=10 "$limit" bash -c "set -o pipefail
$(declare -p PYTHON WORK REPO MODE DATA_DIR DEVICE TORCHRUN_DEVICE DEMO_ARGS TRAIN_ENV TINY FIGURES)
$(declare -f "part_${part//-/_}")
part_${part//-/_}" >"$log" 2>&1
  status=$?
  seconds=$(awk -v start="$part_start" -v end="$(date +%s.%N)" 'BEGIN { printf "%.0f", end - start }')
  if [[ $status -eq 0 ]]; then
    verdict="ok"
  elif [[ $status -eq 124 || $status -eq 137 ]]; then
    verdict="TIMED OUT at its ${limit} s limit"
    FAILED=1
  else
    verdict="FAILED (exit status $status)"
    FAILED=1
  fi
  echo "   $verdict in ${seconds}s"
  {
    echo "## $part: $verdict"
    echo
    echo "${seconds} s of its ${limit} s limit."
    echo
    cat "$FIGURES"
    if [[ $verdict != ok ]]; then
      echo
      echo "Last lines of its output (\`$log\`):"
      echo
      echo '```'
      tail -n 25 "$log" | cut -c1-300
      echo '```'
    fi
    echo
  } >>"$SECTIONS"
done

# --- The report, written to a temporary name beside it and renamed (never half-written) -------------------------
total=$(( $(date +%s) - STARTED ))
mkdir -p "$(dirname "$REPORT")"
temporary=$(mktemp "$(dirname "$REPORT")/.$(basename "$REPORT").XXXXXX")
{
  if [[ $MODE == gpu ]]; then
    echo "# GPU check"
  else
    echo "# GPU check, quick CPU mode (tests the script; these are not GPU figures)"
  fi
  echo
  echo "- Date: $(date '+%Y-%m-%d %H:%M %Z')"
  echo "- Command (from the repository root): \`$COMMAND\`"
  echo "- Commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- Host: $(uname -srm)"
  echo "- Total: ${total} s; parts: $PARTS"
  echo "- Result: $([[ $FAILED -eq 0 ]] && echo "every part ok" || echo "SOME PARTS FAILED (below)")"
  echo
  cat "$SECTIONS"
} >"$temporary"
mv -f "$temporary" "$REPORT"
echo "report: $REPORT (work folder: $WORK)"
exit "$FAILED"
