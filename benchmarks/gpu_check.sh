#!/usr/bin/env bash
# One command for a CUDA machine, finishing in about 5 minutes:
#   1. the throughput benchmark at full size (PreAct ResNet-18, width 64, batch 128);
#   2. a 3-epoch CS-KD run on synthetic CIFAR-shaped data on the fast path (device loader, bf16,
#      channels_last, torch.compile), whose per-epoch lines show the loss falling;
#   3. a count of host synchronisations inside training steps (CUDA sync debug mode; expect 0).
# Everything the closing note needs is printed; the run folder goes to a temporary directory.
# No install step: the repository goes on PYTHONPATH, and training needs only torch, torchvision,
# numpy, scikit-learn, tqdm and Pillow (GPU machines without network access have them). $PYTHON
# picks the interpreter (default python3). A failing step is reported and the next one still runs;
# the exit status is non-zero when any step failed.
#
# CSKD_GPU_CHECK_SMOKE=1 runs the same steps on the CPU at toy sizes (no torch.compile, nothing
# counted): the test suite does this so that the script cannot break unnoticed without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=()
step() {  # step NAME COMMAND...: run it, remember a failure, go on
  local name=$1
  shift
  echo "== $name =="
  "$@" || { local rc=$?; echo "STEP FAILED: $name (exit $rc)"; failed+=("$name"); }
}
if [[ "${CSKD_GPU_CHECK_SMOKE:-0}" == 1 ]]; then
  bench=(--device cpu --width 4 --batch-size 8 --steps 1 --warmup 1 --repeats 1 --workers 0 --no-compile)
  train=(--device cpu --width 4 --batch-size 64 --epochs 2 --precision fp32)
  sync=(--device cpu --width 4 --batch-size 8 --steps 1)
else
  "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  bench=(--full)
  train=(--device cuda --batch-size 128 --epochs 3 --precision bf16 --compile)
  sync=(--device cuda)
fi
step "throughput" timeout 270 "$py" benchmarks/train_throughput.py "${bench[@]}"
step "3-epoch CS-KD on synthetic data, fast path" timeout 150 "$py" -m cskd train --dataset synthetic \
  --model preact_resnet18 --method cskd "${train[@]}" --channels-last --out "$out/gpu-check" --no-progress
[[ -f "$out/gpu-check/metrics.jsonl" ]] && cat "$out/gpu-check/metrics.jsonl"
step "host syncs inside training steps" timeout 90 "$py" benchmarks/host_sync_check.py "${sync[@]}"
if (( ${#failed[@]} )); then
  echo "failed steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
