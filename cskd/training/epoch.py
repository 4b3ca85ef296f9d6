"""One epoch of training and what it is made of: the lr schedule, the optimisation step, the
epoch's running sums, stop signals, and evaluation.

No host synchronisation inside the step: loss/accuracy sums and a "first bad step" marker stay on
the device and are read once per `log_interval` steps and at the end of the epoch (with several
processes, that read is one all-reduce, so every rank takes the same decisions). The run around the
epochs (folders, checkpoints, selection) is cskd.training.trainer's.
"""

from __future__ import annotations

import contextlib
import math
import signal
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cskd.config import TrainConfig
from cskd.errors import UserError
from cskd.method.batch import Batch
from cskd.method.objectives import Method, Step, StepContext
from cskd.method.sampler import step_generator
from cskd.training.device import autocast
from cskd.training.distributed import SINGLE, World, all_sum

METHOD_SEED_OFFSET = 99_991  # the method's per-step draws (Mixup) differ from augmentation's


class Diverged(UserError):
    """The loss became NaN or infinite."""


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """lr for 0-based `epoch`: cfg.lr, divided by 10 at each milestone (fractions of cfg.epochs).

    With 200 epochs and milestones (0.5, 0.75): 0.1 for epochs 1-100, 0.01 for 101-150, 0.001 after
    (1-based), i.e. "divided by 10 after epochs 100 and 150" as in the paper. The authors' code
    adjusts the lr after each epoch, so its drops land one epoch later (0.1 for epochs 1-101):
    `--protocol authors` does the same.
    """
    delay = 1 if cfg.protocol == "authors" else 0
    drops = sum(epoch >= milestone(m, cfg.epochs) + delay for m in cfg.lr_milestones)
    return cfg.lr * 0.1**drops


def milestone(fraction: float, epochs: int) -> int:
    """First 0-based epoch after a drop: ceil(fraction * epochs), at least 1 so epoch 0 keeps the base lr."""
    return max(1, math.ceil(fraction * epochs))


@torch.no_grad()
def evaluate(model, batches, *, device: torch.device, bf16: bool, world: World = SINGLE) -> dict:
    """Top-1 accuracy (fraction) and mean cross-entropy over an evaluation source (this rank's
    share; the sums are added over ranks, so every sample counts exactly once)."""
    model.eval()
    sums = torch.zeros(2, device=device, dtype=torch.float64)
    n = 0  # counted on the host: building it on the device would copy (and sync) every batch
    for x, y, _ in batches:
        with autocast(device, bf16):
            logits = model(x).float()
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                             (logits.argmax(1) == y).sum().double()])
        n += len(y)
    totals = all_sum(torch.cat([sums, torch.tensor([float(n)], dtype=torch.float64, device=device)]), world)
    loss, correct, n = totals.tolist()
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1), "n": int(n)}


def train_step(ctx: StepContext, method: Method, optimizer, batch: Batch, *, device, bf16: bool) -> Step:
    """One optimisation step on `batch`; returns the method's Step (tensors on the device, no sync)."""
    with autocast(device, bf16):
        out = method.step(ctx, batch)
    optimizer.zero_grad(set_to_none=True)
    # this rank's share of the global batch mean (DDP averages the ranks' gradients)
    (out.loss * batch.share if batch.share != 1.0 else out.loss).backward()
    optimizer.step()
    return out


class StopSignals:
    """SIGTERM (how clusters stop jobs) and SIGUSR1 (SLURM's --signal warning) ask the loop to stop
    after the current step; the handlers are installed only while training (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self) -> StopSignals:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to install
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


@dataclass
class EpochState:
    """One epoch's running sums: on the device total loss, CE, regulariser (each x batch size) and
    correct predictions; on the host the samples seen and the steps done. A mid-epoch checkpoint
    saves them (added over ranks) as `partial`."""

    sums: torch.Tensor
    seen: int = 0
    step: int = 0

    @classmethod
    def fresh(cls, device) -> EpochState:
        return cls(torch.zeros(4, device=device, dtype=torch.float64))

    def packed(self) -> torch.Tensor:
        return torch.cat([self.sums.cpu(), torch.tensor([float(self.seen)], dtype=torch.float64)])

    def unpack(self, values: torch.Tensor) -> None:
        self.sums = values[:4].to(self.sums.device, torch.float64).clone()
        self.seen = int(values[4])


@dataclass(frozen=True)
class EpochContext:
    """What every epoch of a run trains with (the same objects from epoch to epoch).

    - ctx: the method's StepContext: ctx.model the gradient path (compiled and/or DDP-wrapped),
      ctx.fixed the same module without DDP, ctx.cfg the run's config (seed, log_interval).
    - method: what a step computes (cskd.method.objectives).
    - optimizer: the SGD optimiser over the model's parameters (its lr set per epoch by the caller).
    - source: the training source (cskd.data.loaders.train_batches): .epoch(e, start_step) -> Batches.
    - device: where the model, batches and running sums live.
    - bf16: the step runs under bf16 autocast.
    - world: the processes sharing each global batch (SINGLE for one).
    - stop: the installed SIGTERM/SIGUSR1 handlers; a signal ends the epoch early.
    """

    ctx: StepContext
    method: Method
    optimizer: torch.optim.Optimizer
    source: object
    device: torch.device
    bf16: bool
    world: World
    stop: StopSignals


def train_epoch(training: EpochContext, epoch: int, *, state: EpochState, bar) -> bool:
    """The rest of 0-based `epoch` from `state` (its sums end up added over ranks), shown on the tqdm
    `bar`. Returns True when a stop signal ended it early, with `state` at that step."""
    ctx, device, world, stop = training.ctx, training.device, training.world, training.stop
    cfg = ctx.cfg
    ctx.model.train()
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    for step, batch in enumerate(training.source.epoch(epoch, state.step), start=state.step):
        ctx.generator = step_generator(cfg.seed + METHOD_SEED_OFFSET, epoch, step)  # CPU: Mixup draws on the host
        out = train_step(ctx, training.method, training.optimizer, batch, device=device, bf16=training.bf16)
        n = out.labels.shape[0]
        state.seen += n
        state.sums += torch.stack([out.loss.detach().double() * n, out.ce.detach().double() * n,
                                   out.reg.detach().double() * n,
                                   (out.logits.detach().argmax(1) == out.labels).sum().double()])
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(out.loss.detach()), step, first_bad)
        state.step = step + 1
        # One process looks at the stop flag every step (a Python bool, no sync); several agree on
        # it at the interval's all-reduce.
        if (step + 1) % cfg.log_interval == 0 or (stop.signum and not world.distributed):
            if _check_and_show(training, state, first_bad, epoch, bar):
                return True
    _check_and_show(training, state, first_bad, epoch, bar, final=True)
    return False


def _check_and_show(training: EpochContext, state: EpochState, first_bad, epoch: int, bar, *,
                    final: bool = False) -> bool:
    """The once-per-interval host read (one all-reduce with several processes): stop on a
    non-finite loss, agree on a stop signal, update the progress bar. Returns True when a stop
    signal ends the epoch here; at the epoch's end (`final`) the sums become the global ones and a
    signal is left for after the epoch's checkpoint."""
    world, stop = training.world, training.stop
    local = torch.cat([state.sums, (first_bad >= 0).double().view(1)])
    shared = all_sum(torch.cat([local, torch.tensor([float(state.seen), float(stop.signum > 0)], device=local.device,
                                                    dtype=torch.float64)]), world).cpu()
    bad, signalled = shared[4].item(), shared[6].item()
    if bad > 0:
        where = f"step {int(first_bad) + 1}" if int(first_bad) >= 0 else "a step on another process"
        raise Diverged(f"loss became NaN/inf at epoch {epoch + 1}, {where}")
    if signalled:
        stop.signum = stop.signum or signal.SIGTERM
    if final or signalled:
        global_state = torch.cat([shared[:4], shared[5:6]])
        if final or world.main:
            state.unpack(global_state)
        else:  # rank 0 saves the sums of every rank; the others restart from zero
            state.unpack(torch.zeros(5, dtype=torch.float64))
    if signalled and not final:
        return True
    total, _, _, correct, seen = (*shared[:4].tolist(), max(shared[5].item(), 1))
    bar.update(state.step - bar.n)
    bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                    lr=f"{training.optimizer.param_groups[0]['lr']:.4g}", refresh=False)
    return False


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """optimizer.load_state_dict, then every per-parameter buffer laid out like its parameter. A run
    resumed on another device may switch memory format (channels_last is on for CUDA only), and
    CUDA's fused SGD requires parameter, gradient and momentum buffer to share strides."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for p in group["params"]:
            buffers = optimizer.state.get(p, {})
            for key, buf in buffers.items():
                if isinstance(buf, torch.Tensor) and buf.shape == p.shape and buf.stride() != p.stride():
                    buffers[key] = torch.empty_like(p, dtype=buf.dtype).copy_(buf)
