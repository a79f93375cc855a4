#!/usr/bin/env bash
# The GPU measurement, ready to run on a machine with an NVIDIA GPU and the CUDA toolkit
# (nvcc, cuBLAS): builds callguard with whisper.cpp's CUDA backend (`--features cuda`),
# installs the base model and the test calls, then runs the load harness at increasing call
# counts with many Whisper workers sharing the one model on the GPU (each worker's state
# decodes there in parallel).
#
# Usage: scripts/bench-gpu.sh [counts] [workers] [seconds]
#   counts   comma-separated concurrent calls (default 25,50,100,200,300)
#   workers  transcription workers, each with its own whisper state (default 16)
#   seconds  load per run (default 60)
# Prints the harness's table; the largest count meeting the lag goal is its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${1:-25,50,100,200,300}
WORKERS=${2:-16}
SECS=${3:-60}

command -v nvcc >/dev/null || { echo "bench-gpu: nvcc not found: install the CUDA toolkit (and put it on PATH)" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

cargo build --release --features cuda
./target/release/callguard model install base
scripts/make-fixtures.sh

CFG=$(mktemp --suffix .toml)
trap 'rm -f "$CFG"' EXIT
# One CPU thread per worker: on the GPU the threads only feed it; the work is the kernels.
cat >"$CFG" <<EOF
[asr]
workers = $WORKERS
threads_per_worker = 1
max_queued_utterances = 1000
[hub]
max_calls = 1000
EOF

echo "== $(date -u +%FT%TZ) $(nproc) cores, $WORKERS workers, base f16 on the GPU"
./target/release/callguard bench live --sweep "$COUNTS" --duration "$SECS" --config "$CFG" --json
