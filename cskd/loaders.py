"""Batch sources: the swappable data path between a DataBundle and the trainer.

Every source yields `(x, y, x_partner)` on the training device — `x_partner` is None unless pairs
were asked for — and `eval_batches` yields `(x, y, indices)` without augmentation. The trainer only
sees this interface, so a faster source (e.g. a GPU-resident one for 224-px caches) slots in.

- TensorBatches: uint8 images live on the device; crop/flip/normalise and pair sampling run
  there, batched. Used for in-memory data sets.
- HostBatches: DataLoader workers decode and augment image files with torchvision transforms.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .augment import normalize, random_crop_flip
from .data import DataBundle, Split
from .sampler import ClassPairSampler, epoch_generator

# Offset so the augmentation stream differs from the sampler's stream for the same (seed, epoch).
AUGMENT_SEED_OFFSET = 7_777


class TensorBatches:
    """Training batches from an in-memory split, augmented on `device`."""

    def __init__(self, bundle: DataBundle, split: Split, *, batch_size: int, seed: int, device: torch.device,
                 pairs: bool, allow_self_pair: bool = False):
        self.bundle = bundle
        self.device = device
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.mean = torch.tensor(bundle.mean, device=device)
        self.std = torch.tensor(bundle.std, device=device)
        self.pairs = pairs
        self.seed = seed
        self.sampler = ClassPairSampler(self.labels, batch_size=batch_size, seed=seed,
                                        allow_self_pair=allow_self_pair)

    def __len__(self) -> int:
        return len(self.sampler)

    def _augment(self, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = random_crop_flip(self.images[rows], pad=self.bundle.crop_pad, flip=self.bundle.flip, generator=g)
        return normalize(x, self.mean, self.std)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        g = epoch_generator(self.seed + AUGMENT_SEED_OFFSET, epoch, self.device)
        for anchors, partners in self.sampler.epoch_batches(epoch):
            x = self._augment(anchors, g)
            xp = self._augment(partners, g) if self.pairs else None
            yield x, self.labels[anchors], xp


def tensor_eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device):
    """(x, y, indices) over an in-memory split in order, normalised, no augmentation."""
    mean = torch.tensor(bundle.mean, device=device)
    std = torch.tensor(bundle.std, device=device)
    for i in range(0, len(split), batch_size):
        x = normalize(split.images[i:i + batch_size].to(device), mean, std)
        yield x, split.labels[i:i + batch_size].to(device), split.indices[i:i + batch_size]


def file_transforms(bundle: DataBundle, train: bool):
    """torchvision transforms of the paper/authors' code for image-file data sets."""
    from torchvision import transforms as T

    norm = [T.ToTensor(), T.Normalize(bundle.mean, bundle.std)]
    size = bundle.image_size
    if train:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *norm])
    resize = bundle.test_resize or size
    return T.Compose([T.Resize(resize), T.CenterCrop(size), *norm])


class FileImages(Dataset):
    """Decodes image `i` of a split (RGB) and applies `transform`; returns (image, label, index)."""

    def __init__(self, split: Split, transform):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.split.files[i]) as im:
            x = self.transform(im.convert("RGB"))
        return x, self.split.labels[i], self.split.indices[i]


class _PairBatchSampler:
    """Yields anchors followed by their partners as one index list (one loader batch of 2B)."""

    def __init__(self, sampler: ClassPairSampler, epoch: int, pairs: bool):
        self.batches = sampler.epoch_batches(epoch)
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for a, p in self.batches:
            yield (torch.cat([a, p]) if self.pairs else a).tolist()


class HostBatches:
    """Training batches decoded and augmented by DataLoader workers (image-file data sets)."""

    def __init__(self, bundle: DataBundle, split: Split, *, batch_size: int, seed: int, device: torch.device,
                 pairs: bool, allow_self_pair: bool = False, workers: int = 2):
        self.dataset = FileImages(split, file_transforms(bundle, train=True))
        self.sampler = ClassPairSampler(split.labels, batch_size=batch_size, seed=seed,
                                        allow_self_pair=allow_self_pair)
        self.device, self.pairs, self.seed, self.workers = device, pairs, seed, workers

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int):
        # A fresh loader per epoch seeded from (seed, epoch): worker augmentation is reproducible
        # and a resumed run continues with the same streams.
        loader = DataLoader(self.dataset, batch_sampler=_PairBatchSampler(self.sampler, epoch, self.pairs),
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            generator=epoch_generator(self.seed + AUGMENT_SEED_OFFSET, epoch))
        for x, y, _ in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.pairs:
                half = len(y) // 2
                yield x[:half], y[:half], x[half:]
            else:
                yield x, y, None


def host_eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device, workers: int = 2):
    loader = DataLoader(FileImages(split, file_transforms(bundle, train=False)), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    for x, y, idx in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), idx


def train_batches(bundle: DataBundle, *, batch_size: int, seed: int, device: torch.device, pairs: bool,
                  allow_self_pair: bool, workers: int):
    """The training source for `bundle`: on the device when the data set is in memory, else DataLoader."""
    if bundle.in_memory:
        return TensorBatches(bundle, bundle.train, batch_size=batch_size, seed=seed, device=device, pairs=pairs,
                             allow_self_pair=allow_self_pair)
    return HostBatches(bundle, bundle.train, batch_size=batch_size, seed=seed, device=device, pairs=pairs,
                       allow_self_pair=allow_self_pair, workers=workers)


def eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device, workers: int = 2):
    if split.images is not None:
        return tensor_eval_batches(bundle, split, batch_size=batch_size, device=device)
    return host_eval_batches(bundle, split, batch_size=batch_size, device=device, workers=workers)
