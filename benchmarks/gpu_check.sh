#!/usr/bin/env bash
# One command for a CUDA machine (after `pip install -e .`), finishing in about 5 minutes:
#   1. the throughput benchmark at full size (PreAct ResNet-18, width 64, batch 128);
#   2. a 3-epoch CS-KD run on synthetic CIFAR-shaped data on the fast path (device loader, bf16,
#      channels_last, torch.compile), whose per-epoch lines show the loss falling;
#   3. a count of host synchronisations inside training steps (CUDA sync debug mode; expect 0).
# Everything the closing note needs is printed; the run folder goes to a temporary directory.
#
# CSKD_GPU_CHECK_SMOKE=1 runs the same steps on the CPU at toy sizes (no compile, nothing counted):
# the test suite does this so that the script cannot break unnoticed on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [[ "${CSKD_GPU_CHECK_SMOKE:-0}" == 1 ]]; then
  bench=(--device cpu --width 4 --batch-size 8 --steps 1 --warmup 1 --repeats 1 --workers 0)
  train=(--device cpu --width 4 --batch-size 64 --epochs 2)
  sync=(--device cpu --width 4 --batch-size 8 --steps 1)
else
  python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  bench=(--full)
  train=(--device cuda --batch-size 128 --epochs 3 --compile)
  sync=(--device cuda)
fi
echo "== throughput =="
timeout 240 python benchmarks/train_throughput.py "${bench[@]}"
echo "== 3-epoch CS-KD on synthetic data, fast path =="
timeout 150 python -m cskd train --dataset synthetic --model preact_resnet18 --method cskd "${train[@]}" \
  --precision bf16 --channels-last --out "$out/gpu-check" --no-progress
cat "$out/gpu-check/metrics.jsonl"
echo "== host syncs inside training steps =="
timeout 120 python benchmarks/host_sync_check.py "${sync[@]}"
