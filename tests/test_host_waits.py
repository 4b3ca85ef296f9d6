"""Nothing in a training step makes the host wait for the device: on CUDA each such op would stall
the queue. A TorchDispatchMode flags those ops on the CPU, so CI finds them without a GPU."""

import functools
import os
import sys
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import cskd
from cskd import analysis
from cskd.config import resolve

# The packages' own folders, resolved: a frame is ours when its file lies in one of them, wherever the
# checkout lives (a checkout folder named cskd/ must not make the tests' own frames count).
OURS = tuple(str(Path(m.__file__).resolve().parent) + os.sep for m in (cskd, analysis))


@functools.cache
def ours(filename: str | None) -> bool:
    return bool(filename) and str(Path(filename).resolve()).startswith(OURS)


class _HostWaits(TorchDispatchMode):
    """Records the aten ops that make the host wait for a CUDA device, with the innermost cskd
    frame that issued them: reading a value (_local_scalar_dense: .item(), bool(), float(), int()),
    data-dependent output shapes (nonzero, masked_select, unique, repeat_interleave without
    output_size, indexing with a boolean mask) and Python data turned into a tensor (lift_fresh:
    on CUDA a host-to-device copy). On the CPU these ops run as usual, so CI can look for them."""

    ALWAYS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_dim",
              "unique_consecutive", "lift_fresh")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()) if i is not None)
        open_repeat = name == "repeat_interleave" and (kwargs or {}).get("output_size") is None
        if name in self.ALWAYS or bool_index or open_repeat:
            frame = next((f for f in reversed(traceback.extract_stack()) if ours(f.filename)), None)
            self.seen.append((name, frame and frame.filename, frame and frame.lineno, frame and frame.name))
        return func(*args, **(kwargs or {}))


def test_training_step_never_makes_the_host_wait(monkeypatch):
    """No op inside a training step makes the host wait for the device (on CUDA each would stall the
    queue): every aten op of the forward, the backward and the update is inspected, and .tolist()
    (which bypasses the dispatcher) is spied on. The only allowed exception is Mixup's draw from its
    CPU generator."""
    from cskd.data.placement import bundle_for
    from cskd.method.sampler import step_generator
    from cskd.training.epoch import train_step
    from cskd.training.trainer import build_training

    def spy(original):
        def tolist(self, *a, **k):
            caller = sys._getframe(1)
            waits.seen.append(("tolist", caller.f_code.co_filename, caller.f_lineno, caller.f_code.co_name))
            return original(self, *a, **k)
        return tolist

    waits = _HostWaits()
    for method in ("ce", "cskd", "mixup", "mixup_cskd", "adacos", "virtual_softmax", "byot", "ddgsd", "cskd_e",
                   "label_smoothing", "max_entropy"):
        cfg = resolve({"method": method, "batch_size": 16})
        setup = build_training(cfg, bundle_for(cfg), torch.device("cpu"))
        setup.ctx.generator = step_generator(0, 0, 0)
        batches = iter(setup.source.epoch(0))
        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "tolist", spy(torch.Tensor.tolist))
            for _ in range(2):
                with waits:  # drawing the batch (sampler, augmentation) is inspected too
                    train_step(setup.ctx, setup.method, setup.optimizer, next(batches), device=torch.device("cpu"),
                               bf16=False)
    seen = [r for r in waits.seen if ours(r[1])]
    assert seen, "the spy saw nothing: it would not catch a wait either"
    assert [r for r in seen if r[3] != "mixup_batch"] == [], seen


def test_device_augmentations_never_make_the_host_wait():
    """The batched augmentations of the device path, for every kind of data set it serves."""
    from cskd.data.augment import random_crop_flip, random_resized_crop_flip, resize_center_crop
    from cskd.method.sampler import step_generator

    g = step_generator(0, 0, 0)
    images = torch.randint(0, 256, (6, 3, 40, 48), dtype=torch.uint8)
    sizes = torch.tensor([[40, 48], [32, 40], [40, 30], [36, 36], [40, 48], [20, 40]])
    waits = _HostWaits()
    with waits:
        random_crop_flip(images, pad=4, flip=True, generator=g)
        random_resized_crop_flip(images, size=32, generator=g)  # TinyImageNet: one size for all
        random_resized_crop_flip(images, size=16, generator=g, sizes=sizes)  # padded 224-px sets
        resize_center_crop(images, sizes, resize=24, size=16)
    assert waits.seen == []


def test_host_wait_detector_catches_what_cuda_would_wait_for():
    """The detector above is only as good as its op list: each of these would stall on CUDA."""
    x, mask = torch.randn(4, 3), torch.rand(4, 3) > 0.5
    for wait in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x[mask], lambda: mask.nonzero(),
                 lambda: torch.as_tensor(3.0), lambda: x.unique(), lambda: x.masked_fill(mask, 0)[mask]):
        waits = _HostWaits()
        with waits:
            wait()
        assert waits.seen, wait
    waits = _HostWaits()
    with waits:  # and these never do
        torch.full((4,), 3.0).add_(x[:, 0]).gather(0, torch.zeros(2, dtype=torch.long))
        torch.where(mask, x, 0.0).median()
    assert waits.seen == []
