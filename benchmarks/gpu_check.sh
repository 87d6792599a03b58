#!/usr/bin/env bash
# The GPU check of issue 15, one command: Table 3's encoder throughput ratios (fp32, bf16), the
# harness's training images/s and MFU (eager, compiled), the loader's images/s per worker and
# Inception feature images/s, printed as ratios and absolutes (benchmarks/gpu_check.py says what
# each is). At most 5 minutes on one GPU; on a machine without one it runs the reduced version
# (tiny sizes, under 3 minutes), as the test suite does (tests/test_gpu_check.py).
#
#     benchmarks/gpu_check.sh [--device cuda:0] [--reduced] [--peak-tflops N]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec timeout "${GPU_CHECK_TIMEOUT:-300}" "$PY" -u benchmarks/gpu_check.py "$@"
