"""Count host synchronisations inside cskd's training steps with CUDA's sync debug mode.

Every call that makes the host wait for the GPU (.item(), a boolean mask, nonzero, a device-to-host
copy, ...) inside `train_step` is reported; the expected count is 0 (Mixup draws λ and π from a
CPU generator, which does not touch the device). On a machine without CUDA the same steps run as
a smoke test and nothing is counted: CUDA's sync debug mode has no CPU counterpart.

    python benchmarks/host_sync_check.py                      # CUDA: preact_resnet18, batch 128
    python benchmarks/host_sync_check.py --device cpu --width 4 --batch-size 8
"""

from __future__ import annotations

import argparse
import warnings

import torch

from cskd.config import resolve
from cskd.data.sets import load_synthetic_bundle
from cskd.method.sampler import step_generator
from cskd.training.device import pick_device, use_bf16
from cskd.training.epoch import train_step
from cskd.training.trainer import build_training


def count_syncs(method: str, *, device: torch.device, bundle, width: int, batch_size: int, steps: int) -> list[str]:
    """First lines of the sync warnings raised by `steps` training steps after one untimed step
    (the first step may legitimately synchronise while allocating); [] on CPU."""
    cfg = resolve({"dataset": "synthetic", "model": "preact_resnet18", "method": method, "width": width,
                   "batch_size": batch_size, "device": device.type})
    setup = build_training(cfg, bundle, device)
    setup.ctx.generator = step_generator(0, 0, 0)
    bf16 = use_bf16(cfg, device)
    batches = iter(setup.source.epoch(0))
    train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=device, bf16=bf16)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=device, bf16=bf16)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    # Only the per-call warning counts; turning the mode on also warns once that it is a prototype.
    return [str(w.message).splitlines()[0] for w in caught if "called a synchronizing CUDA operation" in str(w.message)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", nargs="+", default=["ce", "cskd", "mixup_cskd"])
    p.add_argument("--width", type=int, default=0, help="0 = the model's default width (64)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    device = pick_device(args.device)
    bundle = load_synthetic_bundle(num_train=max(2000, 4 * args.batch_size * (args.steps + 1)))
    for method in args.methods:
        syncs = count_syncs(method, device=device, bundle=bundle, width=args.width, batch_size=args.batch_size,
                            steps=args.steps)
        if device.type == "cuda":
            print(f"{method}: {len(syncs)} synchronizing calls in {args.steps} steps", syncs[:3])
        else:
            steps = f"{args.steps} step{'' if args.steps == 1 else 's'}"
            print(f"{method}: {steps} ran on {device.type}; syncs are counted on CUDA only")


if __name__ == "__main__":
    main()
