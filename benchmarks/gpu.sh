#!/usr/bin/env bash
# The GPU checks in one call (under 10 minutes on one H100/H200 or a Colab GPU):
#  1. benchmarks.gpu (at most 240 s): gradient equivalence on CUDA for every built-in
#     schedule (stages sharing the GPU on their own streams, dropout on, every
#     checkpoint mode), K=4 streams against the same model run sequentially on the
#     GPU (M = 4, 16), and the allocator's peak memory against the memory law;
#  2. benchmarks.gpu_notebooks (at most 300 s): every solution notebook executed on
#     the GPU as in a Colab GPU session, each graded test cell reported pass/fail.
# Writes $OUT/gpu.json and $OUT/gpu_notebooks.json (or benchmarks/results/).
#   bash benchmarks/gpu.sh              # both parts
#   bash benchmarks/gpu.sh checks       # part 1 only
#   bash benchmarks/gpu.sh notebooks    # part 2 only (extra arguments go to it, e.g. "notebooks 04 05")
# Uses the machine's own python3 with torch (and nbclient + ipykernel for part 2);
# gpipe_core is taken from this checkout. Exits 2 without CUDA, 1 if a check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
part="${1:-all}"
[ $# -gt 0 ] && shift
case "$part" in all|checks|notebooks) ;; *) echo "usage: $0 [all|checks|notebooks [assignment ...]]"; exit 2;; esac
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, tqdm, matplotlib" 2>/dev/null || { echo "needs torch, tqdm and matplotlib"; exit 2; }
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "no CUDA device visible to torch: run this on a GPU machine"; exit 2; }
status=0
if [ "$part" != notebooks ]; then
  timeout 240 python3 -m benchmarks.gpu || status=$?
fi
if [ "$part" != checks ]; then
  timeout 330 python3 -m benchmarks.gpu_notebooks --budget 300 "$@" || { s=$?; [ $status -eq 0 ] && status=$s; }
fi
exit $status
