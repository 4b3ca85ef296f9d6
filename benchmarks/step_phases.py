"""Where a training step's time goes: data, forward, the CS-KD partner's no-grad forward, loss,
backward and SGD, for CE and for CS-KD with the paper's pairing, timed phase by phase.

Same model and data as `train_throughput.py`'s fastest path (PreAct ResNet-18, synthetic
CIFAR-shaped data, channels_last; bf16 and torch.compile where the device has them). Each phase
is wall time between device synchronisations, median over `--steps` steps after `--warmup`; the
synchronisations themselves make the sum a little larger than an unsynchronised step.

    python benchmarks/step_phases.py            # CPU: width 16, batch 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cskd.config import resolve
from cskd.data.sets import load_synthetic_bundle
from cskd.method.losses import cskd_loss
from cskd.method.objectives import fixed_prediction
from cskd.training.device import autocast, bf16_is_fast, compile_available, pick_device
from cskd.training.trainer import build_training

PHASES = ("data", "forward", "partner", "loss", "backward", "sgd")


def phase_times(setup, device, bf16: bool, steps: int, warmup: int) -> dict:
    """{phase: median ms} of `steps` steps of CE (setup.ctx.cfg.method == "ce") or CS-KD."""
    ctx, cskd = setup.ctx, setup.ctx.cfg.method == "cskd"
    batches = (b for e in range(10**6) for b in setup.source.epoch(e))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {p: [] for p in PHASES}
    ctx.model.train()
    for i in range(warmup + steps):
        marks = [time.perf_counter()]

        def mark(marks=marks):
            sync()
            marks.append(time.perf_counter())

        b = next(batches)  # in channels_last already: the source converts what the model expects
        mark()
        with autocast(device, bf16):
            logits = ctx.model(b.x)
            mark()
            target = fixed_prediction(ctx, b.partner) if cskd else None
            mark()
            cfg = ctx.cfg
            loss = (cskd_loss(logits, target, b.y, temperature=cfg.temperature, lambda_cls=cfg.lambda_cls)[0]
                    if cskd else F.cross_entropy(logits.float(), b.y))
        mark()
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        setup.optimizer.step()
        mark()
        if i >= warmup:
            for p, t0, t1 in zip(PHASES, marks, marks[1:]):
                times[p].append(1e3 * (t1 - t0))
    return {p: statistics.median(v) for p, v in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    device = pick_device(args.device)
    bundle = load_synthetic_bundle(num_train=args.batch_size * 40)
    fastest = dict(dataset="synthetic", model="preact_resnet18", width=args.width, batch_size=args.batch_size,
                   device=device.type, channels_last=True, compile=compile_available(device) and not args.no_compile,
                   precision="bf16" if bf16_is_fast(device) else "fp32")
    bf16 = fastest["precision"] == "bf16"
    print(f"device={device.type} width={args.width} batch={args.batch_size} precision={fastest['precision']} "
          f"compile={fastest['compile']} steps={args.steps}")
    rows = {m: phase_times(build_training(resolve(dict(fastest, method=m)), bundle, device), device, bf16,
                           args.steps, args.warmup) for m in ("ce", "cskd")}
    print("\n| phase | CE ms | CS-KD ms |\n|---|---|---|")
    for phase in PHASES:
        print(f"| {phase} | {rows['ce'][phase]:.2f} | {rows['cskd'][phase]:.2f} |")
    ce, ck = (sum(rows[m].values()) for m in ("ce", "cskd"))
    print(f"| sum | {ce:.1f} | {ck:.1f} |\n\nsum ratio {ck / ce:.2f}; the partner's forward alone is "
          f"{rows['cskd']['partner'] / ce:.2f} of a CE step")


if __name__ == "__main__":
    main()
