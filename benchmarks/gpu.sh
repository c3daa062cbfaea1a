#!/usr/bin/env bash
# The GPU checks in one call (< 5 minutes on one H100/H200 or a Colab GPU):
# gradient equivalence on CUDA (stages sharing the GPU on their own streams,
# dropout on, every checkpoint mode and schedule), K=4 streams against the same
# model run sequentially on the GPU (M = 4, 16), and the allocator's peak memory
# against the memory law. Writes the table to $OUT/gpu.json (or benchmarks/results/).
# Uses the machine's own python3 with torch; gpipe_core is taken from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, tqdm, matplotlib" 2>/dev/null || { echo "needs torch, tqdm and matplotlib"; exit 2; }
timeout 280 python3 -m benchmarks.gpu
