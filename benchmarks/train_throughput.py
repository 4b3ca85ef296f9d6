"""Training throughput: the authors' style of loop against cskd's paths, CE and CS-KD, one run.

Paths (same model, batch size and synthetic CIFAR-shaped data):
  (a) reference  written the way the authors' code works: PIL + torchvision transforms in DataLoader
                 workers, anchors and partners as one 2B loader batch, `.item()` every step
  (b) default    what `cskd train` does by default: device-resident data, batched augmentation;
                 on CUDA also bf16 autocast, channels_last and fused SGD
  (c) fastest    (b) + channels_last on the CPU too, bf16 autocast on a CPU with AMX (not on one
                 with AVX512-BF16 alone, where bf16 trained slower than fp32: bf16_is_fast), and
                 torch.compile where it can build code (CUDA, or a CPU with a C++ compiler;
                 --no-compile: not)
  (d) in-batch   (c) with --pairing in-batch (CS-KD only; CE is (c)'s)
Step time = wall time of `--steps` steps after `--warmup` steps, divided by steps (device synced
at both ends), median (or `--statistic min`) over `--repeats` interleaved rounds; every step is a
full batch. Each of
(b)-(d) is built once and continues its training from round to round. On the CPU, cskd's trainer
makes glibc keep freed memory (cskd.training.host_memory); that setting is process-wide, so the reference
loop runs with it too. The last line is machine-readable.

    python benchmarks/train_throughput.py            # CPU: width 16, batch 64
    python benchmarks/train_throughput.py --full     # PreAct ResNet-18, width 64, batch 128 (CUDA)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cskd.config import resolve
from cskd.data.loaders import EVAL_BATCH_SIZE, eval_batches
from cskd.data.sets import load_synthetic_bundle
from cskd.method.losses import cskd_loss
from cskd.models import build_model
from cskd.training.device import bf16_is_fast, compile_available, pick_device, use_bf16
from cskd.training.epoch import evaluate, train_step
from cskd.training.trainer import build_training


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class PILImages(Dataset):
    """The authors' data path: a uint8 array decoded to PIL per sample, torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std):
        from torchvision import transforms as T

        self.images, self.labels = images, labels
        self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize(mean, std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


class AuthorsPairSampler:
    """Anchors in random order, each batch followed by partners drawn from the whole class (self allowed)."""

    def __init__(self, labels: np.ndarray, batch_size: int, pairs: bool):
        self.labels, self.batch_size, self.pairs = labels, batch_size, pairs
        self.by_class = [np.flatnonzero(labels == c) for c in range(labels.max() + 1)]

    def __len__(self):
        return len(self.labels) // self.batch_size

    def __iter__(self):
        perm = np.random.permutation(len(self.labels))
        for i in range(len(self)):
            anchors = perm[i * self.batch_size:(i + 1) * self.batch_size]
            partners = [np.random.choice(self.by_class[self.labels[a]]) for a in anchors] if self.pairs else []
            yield list(anchors) + list(partners)


def reference_loop(bundle, model_name, width, batch_size, method, device, steps, warmup, workers, temperature=4.0):
    images = bundle.train.images.permute(0, 2, 3, 1).numpy()
    labels = bundle.train.labels.numpy()
    if bundle.in_channels == 3 and images.shape[-1] == 1:
        images = images[..., 0]
    pairs = method == "cskd"
    loader = DataLoader(PILImages(images, labels, bundle.mean, bundle.std),
                        batch_sampler=AuthorsPairSampler(labels, batch_size, pairs), num_workers=workers,
                        pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=bundle.num_classes, in_channels=3, width=width).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    done, t0 = 0, None
    while True:
        batches = iter(loader)
        for x, y in batches:
            if done == warmup:
                sync(device)
                t0 = time.perf_counter()
            x, y = x.to(device), y.to(device)
            if pairs:
                xa, xp, ya = x[:batch_size], x[batch_size:], y[:batch_size]
                logits = model(xa)
                with torch.no_grad():
                    partner = model(xp)
                loss = cskd_loss(logits, partner, ya, temperature=temperature, lambda_cls=1.0)[0]
            else:
                ya = y
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            # the authors' loop reads the loss and the accuracy on the host every step
            _ = loss.item()
            _ = (logits.argmax(1) == ya).sum().item()
            done += 1
            if done == warmup + steps:
                sync(device)
                elapsed = time.perf_counter() - t0
                if workers:  # stop the workers now: their prefetching would steal CPU from the next timing
                    batches._shutdown_workers()
                return elapsed / steps


class CskdLoop:
    """One configuration of cskd's trainer, built once: each call times `steps` steps after `warmup`
    steps, continuing the same model and batch stream. Building once keeps torch.compile to one
    compilation per configuration (a fresh model per round would recompile, and past dynamo's
    cache limit silently fall back to eager)."""

    def __init__(self, bundle, cfg_overrides, device):
        cfg = resolve(cfg_overrides)
        self.setup = build_training(cfg, bundle, device)
        self.bf16 = use_bf16(cfg, device)
        self.device = device
        self.batches = self._stream()

    def _stream(self):
        epoch = 0
        while True:
            yield from self.setup.source.epoch(epoch)
            epoch += 1

    def __call__(self, steps, warmup):
        s = self.setup
        s.ctx.model.train()
        t0 = None
        for done in range(warmup + steps):
            if done == warmup:
                sync(self.device)
                t0 = time.perf_counter()
            train_step(s.ctx, s.method, s.optimizer, next(self.batches), device=self.device, bf16=self.bf16)
        sync(self.device)
        return (time.perf_counter() - t0) / steps


# Order of the timings within each round: every path's CE, then every path's CS-KD.
ORDER = [("reference", "ce"), ("default", "ce"), ("fastest", "ce"), ("reference", "cskd"), ("default", "cskd"),
         ("fastest", "cskd"), ("in-batch", "cskd")]


def eval_seconds(model, bundle, device, bf16: bool) -> float:
    """Wall time of one pass of the trainer's evaluation over the bundle's test split."""
    sync(device)
    t0 = time.perf_counter()
    evaluate(model, eval_batches(bundle, bundle.test, batch_size=EVAL_BATCH_SIZE, device=device), device=device,
             bf16=bf16)
    sync(device)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="PreAct ResNet-18 at width 64, batch 128")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the reference loop (default: 4 on CUDA, as the authors' "
                        "datasets.py; 2 on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile in the fastest path")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved rounds; rows are medians (default 7 on CPU, 3 on CUDA)")
    p.add_argument("--fastest-precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="the fastest path's precision; auto: bf16 where it is expected to be faster (bf16_is_fast)")
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="of the rounds' step times: min is the robust one on a machine shared with other jobs "
                        "(their load only ever adds time)")
    args = p.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    full = args.full or cuda
    width = args.width or (64 if full else 16)
    batch = args.batch_size or (128 if full else 64)
    steps = args.steps or (50 if cuda else 10)
    repeats = args.repeats or (3 if cuda else 7)
    warmup = args.warmup or (15 if cuda else 3)
    workers = args.workers if args.workers is not None else (4 if cuda else 2)
    if cuda:  # for every path, the reference included (cskd's trainer turns it on for CUDA anyway)
        torch.backends.cudnn.benchmark = True
    # All of it trains (no validation split here), a multiple of the batch: every step is a full batch.
    bundle = load_synthetic_bundle(num_train=batch * max(40, steps + warmup))
    base = dict(dataset="synthetic", model="preact_resnet18", width=width, batch_size=batch, device=device.type,
                workers=workers)
    fastest = dict(base, channels_last=True, compile=compile_available(device) and not args.no_compile,
                   precision=args.fastest_precision if args.fastest_precision != "auto"
                   else "bf16" if bf16_is_fast(device) else "fp32")
    print(f"device={device.type} ({torch.cuda.get_device_name() if cuda else f'{torch.get_num_threads()} threads'}) "
          f"model=preact_resnet18 width={width} batch={batch} steps={steps} warmup={warmup} "
          f"fastest={fastest['precision']}{' compile' if fastest['compile'] else ''} channels_last")
    loops = {(path, method): CskdLoop(bundle, dict(cfg, method=method), device)
             for path, cfg in (("default", base), ("fastest", fastest)) for method in ("ce", "cskd")}
    loops[("in-batch", "cskd")] = CskdLoop(bundle, dict(fastest, method="cskd", pairing="in-batch"), device)
    def timing(path, method):
        if path == "reference":
            return lambda: reference_loop(bundle, "preact_resnet18", width, batch, method, device, steps, warmup,
                                          workers)
        return lambda: loops[(path, method)](steps, warmup)

    runs = {key: timing(*key) for key in ORDER}
    # Rounds interleave every configuration so a burst of load from elsewhere hits them alike;
    # each row reports its median over the rounds.
    times = {k: [] for k in runs}
    for r in range(repeats):
        for key, fn in runs.items():
            times[key].append(fn())
        print(f"round {r + 1}/{repeats}: " + " ".join(f"{p}/{m}={1e3 * t[-1]:.0f}ms" for (p, m), t in times.items()))
    pick = statistics.median if args.statistic == "median" else min
    rows = {k: pick(v) for k, v in times.items()}
    print(f"rows: the {args.statistic} over {repeats} rounds")
    rows[("in-batch", "ce")] = rows[("fastest", "ce")]
    print("\n| path | CE step ms | CE img/s | CS-KD step ms | CS-KD img/s | CS-KD/CE | CS-KD speed-up vs (a) |")
    print("|---|---|---|---|---|---|---|")
    for path in ("reference", "default", "fastest", "in-batch"):
        ce, ck = rows[(path, "ce")], rows[(path, "cskd")]
        print(f"| {path} | {1e3 * ce:.1f} | {batch / ce:.0f} | {1e3 * ck:.1f} | {batch / ck:.0f} | {ck / ce:.2f} "
              f"| {rows[('reference', 'cskd')] / ck:.2f} |")
    # The trainer evaluates on the validation split after every epoch (compiled under --compile;
    # timed here uncompiled, so the projection errs on the slow side).
    fastest_cskd = loops[("fastest", "cskd")]
    per_image = statistics.median(eval_seconds(fastest_cskd.setup.model, bundle, device, fastest_cskd.bf16)
                                  for _ in range(3)) / len(bundle.test)
    # CIFAR-100: 45,000 training and 5,000 validation images with cskd's default 10 % hold-out
    # (the authors trained on all 50,000); the last, partial batch of an epoch is ignored here.
    epoch_steps, val_images = 45_000 // batch, 5_000
    train_min = 200 * epoch_steps * rows[("fastest", "cskd")] / 60
    eval_min = 200 * val_images * per_image / 60
    print(f"\nprojected 200-epoch CIFAR-100 CS-KD time at the fastest path: {train_min + eval_min:.1f} min "
          f"({epoch_steps} steps/epoch: {train_min:.1f} min training; evaluation of {val_images} validation images "
          f"after each epoch: {eval_min:.1f} min)")
    print(f"ratios: cskd_over_ce_paired={rows[('fastest', 'cskd')] / rows[('fastest', 'ce')]:.2f} "
          f"cskd_over_ce_inbatch={rows[('in-batch', 'cskd')] / rows[('fastest', 'ce')]:.2f} "
          f"fastest_over_reference={rows[('reference', 'cskd')] / rows[('fastest', 'cskd')]:.2f} "
          f"device={device.type}")


if __name__ == "__main__":
    main()
