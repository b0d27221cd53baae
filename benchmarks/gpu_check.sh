#!/usr/bin/env bash
# The device check in one command (benchmarks/gpu_check.py says what it measures):
#   bash benchmarks/gpu_check.sh --data DEMO_BUILD [--device cuda] [--out gpu-check.json]
#   bash benchmarks/gpu_check.sh --data TINY_BUILD --device cpu --tiny
# It runs with the machine's own python3 (a GPU image with its CUDA PyTorch); PYTHON=... picks another.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
