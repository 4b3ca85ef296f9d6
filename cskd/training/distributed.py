"""Training over several processes with torch.distributed, launched by torchrun.

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) nothing here does anything:
`World()` is the single process. Under `torchrun --nproc-per-node N` every process calls
`init_world()`: the process group comes from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT), NCCL on CUDA and gloo on the CPU, one device per local rank.

Only rank 0 writes files; every rank trains its share of each global batch (cskd.method.sampler.share),
and the few host reads of the training loop (once per --log-interval steps) are all-reduced so
that every rank takes the same decisions (stop on a non-finite loss, stop on SIGTERM).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cskd.errors import UserError, short_reason


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()  # the one process of a run started without torchrun


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_world(device_name: str) -> World:
    """Join the process group torchrun describes (once per process), or the single-process World."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        cuda = device_name != "cpu" and torch.cuda.is_available()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            if local_rank >= torch.cuda.device_count():
                raise UserError(f"local rank {local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                                f"lower torchrun's --nproc-per-node")
            torch.cuda.set_device(local_rank)
        try:
            dist.init_process_group("nccl" if cuda else "gloo")
        except RuntimeError as e:
            if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and \
                    os.environ.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE") != "1":
                # The restarted workers read the previous attempt's addresses from torchrun's shared
                # store (PyTorch issue #135712); a store of their own avoids it.
                raise UserError(f"the restarted processes could not connect ({short_reason(e, 60)}); start "
                                f"torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment") from None
            raise
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_world() -> None:
    """Leave the process group (a process that exits with gloo's threads still running aborts)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_of(world: World, device: torch.device) -> torch.device:
    """One device per local rank: cuda:<local rank> under torchrun on CUDA, else `device`."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum `t` over ranks in place (nothing to do for one process)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(obj, world: World):
    """rank 0's `obj` on every rank (a picklable Python value)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree_or_raise(error: Exception | None, world: World) -> None:
    """Make a UserError on rank 0 (e.g. a refused folder) end every rank, with its message."""
    message = broadcast(str(error) if error is not None else None, world)
    if message is not None:
        if error is not None:
            raise error
        raise UserError(message)


def same_buffers(model: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm's running statistics). DDP broadcasts them at the
    start of each training forward, but the last steps of an epoch (and the partner's forward)
    move each rank's own: before evaluating, every rank takes rank 0's, which are also the ones
    the checkpoint saves."""
    if world.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def on_rank0(world: World, write, *args) -> None:
    """Call `write(*args)` on rank 0 only (the one that writes files); a UserError it raises (a full
    disk, a foreign file) ends every rank with its message instead of leaving the others waiting
    in a collective. Doubles as a barrier: no rank goes on before rank 0's files are complete."""
    error = None
    if world.main:
        try:
            write(*args)
        except UserError as e:
            error = e
    agree_or_raise(error, world)


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (already compiled when --compile: compile, then wrap,
    so the partner's forward and evaluation can call the compiled module without the wrapper).
    Buffers are broadcast from rank 0 at each forward (DDP's default) and before each evaluation
    (same_buffers): every rank evaluates with rank 0's BatchNorm statistics, as the authors'
    nn.DataParallel did."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)
