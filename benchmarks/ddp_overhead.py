"""What several processes cost and gain: step time for 1 and 2 (or --procs) processes on the same
GLOBAL batch, and the share of a step spent in gradient communication.

    python benchmarks/ddp_overhead.py                      # CPU: gloo, 1 and 2 processes
    python benchmarks/ddp_overhead.py --procs 1 2 4 8      # a CUDA machine with 8 GPUs: NCCL

Each process count runs under torchrun (this script launches `torchrun --standalone` on itself).
A worker trains PreAct ResNet-18 (width --width) on synthetic CIFAR-shaped data with CS-KD through
cskd's own trainer (cskd.training.trainer.build_training, cskd.training.epoch.train_step,
DistributedDataParallel when W > 1),
times --steps steps after --warmup, then times the same number of steps under DDP's no_sync()
(gradients not all-reduced): communication share = 1 - t(no_sync) / t(step). With the same global
batch, perfect scaling would divide the step time by W: efficiency = t(1) / (W * t(W)). On a CPU
the processes share the machine's cores, so the figures say how much communication costs, not how
a GPU cluster scales.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    import torch

    from cskd.config import resolve
    from cskd.data.sets import load_synthetic_bundle
    from cskd.method.sampler import step_generator
    from cskd.training.device import pick_device, use_bf16
    from cskd.training.distributed import close_world, device_of, init_world
    from cskd.training.epoch import train_step
    from cskd.training.trainer import build_training

    world = init_world(args.device)
    device = device_of(world, pick_device(args.device))
    cfg = resolve({"dataset": "synthetic", "model": "preact_resnet18", "width": args.width, "method": "cskd",
                   "batch_size": args.batch_size, "device": device.type})
    bundle = load_synthetic_bundle(num_train=args.batch_size * (args.steps + args.warmup + 2))
    setup = build_training(cfg, bundle, device, world)
    bf16 = use_bf16(cfg, device)
    batches = iter(setup.source.epoch(0))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(n, *, no_sync=False):
        times = []
        for k in range(n):
            setup.ctx.generator = step_generator(0, 0, k)
            sync()
            t0 = time.perf_counter()
            if no_sync and world.distributed:
                with setup.ctx.model.no_sync():
                    train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=device, bf16=bf16)
            else:
                train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=device, bf16=bf16)
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    timed(args.warmup)
    step = timed(args.steps // 2)
    local = timed(args.steps // 2, no_sync=True) if world.distributed else None
    if world.main:
        Path(args.out).write_text(json.dumps({"procs": world.size, "step_s": step, "no_sync_s": local,
                                              "device": device.type}))
    close_world()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="global batch (64)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for n in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, os.cpu_count() // n)))}
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                       __file__, "--worker", "--out", str(out), "--width", str(args.width), "--batch-size",
                       str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--device", args.device]
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            rows.append(json.loads(out.read_text()))
    base = rows[0]["step_s"] if rows[0]["procs"] == 1 else None
    print(f"PreAct ResNet-18 width {args.width}, CS-KD, global batch {args.batch_size}, device {rows[0]['device']}, "
          f"median of {args.steps // 2} steps")
    print("\n| processes | step ms | step without all-reduce ms | communication share | efficiency vs 1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        eff = f"{base / (r['procs'] * r['step_s']):.2f}" if base else "—"
        if r["no_sync_s"] is None:
            print(f"| {r['procs']} | {1e3 * r['step_s']:.1f} | — | — | {eff} |")
        else:
            share = 1 - r["no_sync_s"] / r["step_s"]
            print(f"| {r['procs']} | {1e3 * r['step_s']:.1f} | {1e3 * r['no_sync_s']:.1f} | {100 * share:.0f} % | "
                  f"{eff} |")


if __name__ == "__main__":
    main()
