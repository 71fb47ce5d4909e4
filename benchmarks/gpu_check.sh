#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one go: build fused_acts, run the whole
# test suite (CUDA included), and run the CUDA benchmark. Logs and results go
# to one folder (default: benchmarks/results/gpu-<date>).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
out=${1:-benchmarks/results/gpu-$(date +%F)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
echo "== build"
if ! $python -m pip install --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi
grep "fused_acts:" "$out/build.log"

echo "== tests"
$python -m pytest -q -rs tests 2>&1 | tee "$out/tests.log" | tail -25
tests_status=${PIPESTATUS[0]}

echo "== accuracy"
$python tests/accuracy_report.py --device cuda > "$out/accuracy.md" 2>&1

echo "== benchmark"
$python -m benchmarks --device cuda --modes fwd,bwd,fwdbwd --out "$out" 2>&1 \
  | tee "$out/bench.log" | grep -v "^ops:\|^ffn:" | tail -80
exit "$tests_status"
