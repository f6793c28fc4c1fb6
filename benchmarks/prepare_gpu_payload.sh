#!/usr/bin/env bash
# What benchmarks/gpu.sh needs on a GPU machine with no network, made here (with data and network):
# .device_data/cifar10_subset/ (the first 15000 train + 2000 test CIFAR-10 images, ~52 MB) and .whl/ (Python
# 3.12 wheels the bare GPU image lacks: jsonargparse and its signature extras, spikingjelly, loguru). Both are
# git-ignored; pass them along (carry: [".device_data", ".whl"]). From the repository root:
#   bash benchmarks/prepare_gpu_payload.sh
# Environment: PYTHON (python3), LIGHTNING_SNN_CIFAR10 (../shared/data/cifar10), WHEEL_DIR, SUBSET_DIR, PY_VERSION.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WHEEL_DIR="${WHEEL_DIR:-$ROOT/.whl}"
SUBSET_DIR="${SUBSET_DIR:-$ROOT/.device_data/cifar10_subset}"
SRC="${LIGHTNING_SNN_CIFAR10:-$ROOT/../shared/data/cifar10}"

"$PY" benchmarks/make_cifar_subset.py --src "$SRC" --out "$SUBSET_DIR"  # its defaults: the first 15000 train + 2000 test images

# pure-Python wheels, pinned to the versions the benchmarks were run with
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEEL_DIR" \
    "jsonargparse==4.53.0" "docstring-parser==0.18.0" "typeshed-client==2.15.0" \
    "spikingjelly==2.0.0" "loguru"
ls -la "$WHEEL_DIR"
du -sh "$SUBSET_DIR" "$WHEEL_DIR"
