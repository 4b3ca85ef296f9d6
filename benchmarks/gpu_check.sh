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
echo "== host syncs inside training steps (torch.cuda sync debug mode; expect 0) =="
timeout 120 python - <<'PY' || true
import warnings, torch
from cskd.config import resolve
from cskd.data import bundle_for
from cskd.sampler import epoch_generator
from cskd.train import build_training, train_step
for method in ("ce", "cskd", "mixup_cskd"):
    cfg = resolve({"dataset": "synthetic", "model": "preact_resnet18", "method": method, "batch_size": 128})
    setup = build_training(cfg, bundle_for(cfg), torch.device("cuda"))
    setup.ctx.generator = epoch_generator(0, 0)
    batches = [b for _, b in zip(range(6), setup.source.epoch(0))]
    train_step(setup.ctx, setup.method, setup.optimizer, batches[0], device=torch.device("cuda"), bf16=True)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        for b in batches[1:]:
            train_step(setup.ctx, setup.method, setup.optimizer, b, device=torch.device("cuda"), bf16=True)
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    print(f"{method}: {len(syncs)} synchronizing calls in 5 steps", syncs[:3])
PY
