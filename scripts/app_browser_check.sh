#!/usr/bin/env bash
# The diagnosis page (app.py) in a real browser: starts the app on a free loopback port, drives headless Chromium
# through scripts/app_browser_check.py (uploads a leaf photo and a file that is not an image, waits for the
# answer), saves a screenshot, and fails unless the reading, the bars and the Grad-CAM heat map appear, the bad
# file gets its message, and no request of the page leaves 127.0.0.1.
#
# Usage:  bash scripts/app_browser_check.sh [CHECKPOINT [PHOTO]]
#   CHECKPOINT  default checkpoints/task1_stage2/best.pth; when that is absent, `bash train_fixed.sh` trains it
#               (the built-in demo unless DATA_SOURCE says otherwise)
#   PHOTO       default: the first validation photo of a diseased class in $DATA_DIR/metadata/val.csv
#   SCREENSHOT  (environment) where the screenshot goes, default demo_plots/app.png
# Installs what is missing: Debian's chromium and chromium-driver (apt-get, as root) and selenium (pip, into the
# venv; not in requirements.txt, since the test suite needs no browser).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

CHECKPOINT=${1:-checkpoints/task1_stage2/best.pth}
SCREENSHOT=${SCREENSHOT:-demo_plots/app.png}
if [[ ! -e "$CHECKPOINT" ]]; then
  if [[ $# -ge 1 ]]; then echo "error: $CHECKPOINT: no such file or folder" >&2; exit 2; fi
  echo "== no $CHECKPOINT: training it with train_fixed.sh"
  bash train_fixed.sh
fi
if [[ $# -ge 2 ]]; then
  PHOTO=$2
else
  PHOTO=$("$PYTHON" -c 'import sys, pandas
val = pandas.read_csv(sys.argv[1])
print(val.loc[~val["class_name"].str.contains("healthy", case=False), "path"].iloc[0])' "$DATA_DIR/metadata/val.csv")
fi
[[ -f "$PHOTO" ]] || { echo "error: $PHOTO: no such photo" >&2; exit 2; }

if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
  if [[ $(id -u) != 0 ]]; then
    echo "error: Chromium is missing; install it as root: apt-get install chromium chromium-driver" >&2; exit 2
  fi
  echo "== installing Debian's chromium and chromium-driver"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
if ! "$PYTHON" -c "import selenium" 2> /dev/null; then
  echo "== installing selenium into the venv"
  "$PYTHON" -m pip install -q "selenium>=4,<5"
fi

WORK=$(mktemp -d)
APP_PID=
cleanup() {
  if [[ -n "$APP_PID" ]]; then kill "$APP_PID" 2> /dev/null || true; wait "$APP_PID" 2> /dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "this file is not an image" > "$WORK/not_a_photo.jpg"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/"

echo "== starting app.py --checkpoint $CHECKPOINT on $URL"
"$PYTHON" app.py --checkpoint "$CHECKPOINT" --port "$PORT" > "$WORK/app.log" 2>&1 &
APP_PID=$!
if ! "$PYTHON" - "$URL" "$APP_PID" << 'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
for _ in range(240):  # 2 minutes: loading torch, gradio and the model on a busy machine
    try:
        urllib.request.urlopen(url, timeout=2)
        sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(1)  # the app has stopped
        time.sleep(0.5)
sys.exit(1)
EOF
then
  echo "error: the app did not start serving on $URL; its output:" >&2
  cat "$WORK/app.log" >&2
  exit 1
fi

echo "== driving headless Chromium: uploading $PHOTO and a file that is not an image"
if ! "$PYTHON" scripts/app_browser_check.py --url "$URL" --screenshot "$SCREENSHOT" --expect-problems 1 \
  "$PHOTO" "$WORK/not_a_photo.jpg"; then
  echo "the app's output (last 20 lines):" >&2
  tail -n 20 "$WORK/app.log" >&2
  exit 1
fi
