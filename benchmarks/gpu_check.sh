#!/usr/bin/env bash
# One command for a CUDA machine (after `pip install -e .`), finishing in about 5 minutes:
#   1. the throughput benchmark at full size (PreAct ResNet-18, width 64, batch 128);
#   2. a 3-epoch CS-KD run on synthetic CIFAR-shaped data on the fast path (device loader, bf16,
#      channels_last, torch.compile), whose per-epoch lines show the loss falling.
# Everything the closing note needs is printed; the run folder goes to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== throughput =="
timeout 240 python benchmarks/train_throughput.py --full
echo "== 3-epoch CS-KD on synthetic data, fast path =="
out=$(mktemp -d)/gpu-check
timeout 150 python -m cskd train --dataset synthetic --model preact_resnet18 --method cskd --epochs 3 \
  --batch-size 128 --compile --precision bf16 --channels-last --out "$out" --no-progress
cat "$out/metrics.jsonl"
