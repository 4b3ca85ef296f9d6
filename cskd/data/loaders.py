"""Batch sources: the swappable data path between a DataBundle and the trainer.

Every training source yields `Batch(x, y, partner, clean, share)` on the training device (see
PARTNER_MODES) and `eval_batches` yields `(x, y, indices)` without augmentation. The trainer only
sees this interface.

- TensorBatches: uint8 images live on the device; crop/flip/normalise and pair sampling run
  there, batched. Used for in-memory data sets: digits, CIFAR-100, TinyImageNet, and on CUDA the
  224-px sets whose decode cache fits in GPU memory (zero-padded, with their sizes).
- HostBatches: DataLoader workers decode (or read from the decode cache) and augment image files
  with torchvision transforms.

Randomness: a step's augmentation depends only on (seed, epoch, step) — per-step generators on the
device path, a per-sample seed on the DataLoader path — and is drawn for the step's GLOBAL batch,
of which rank r of W keeps `[r::W]`. So a run resumed mid-epoch, or split over any number of
processes, sees the same augmented images as one uninterrupted process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from cskd.config import LOADERS
from cskd.data.augment import normalize, random_crop_flip, random_resized_crop_flip, resize, resize_center_crop
from cskd.data.bundle import DataBundle, Split
from cskd.data.decode_cache import open_rgb
from cskd.errors import UserError
from cskd.method.batch import PARTNER_MODES, Batch
from cskd.method.sampler import ClassWiseBatchSampler, mixed_seed, share, step_generator

# Offset so the augmentation stream differs from the sampler's stream for the same (seed, epoch).
AUGMENT_SEED_OFFSET = 7_777
# Images per evaluation batch (selection, test and predictions): no gradients are kept, so larger than training's.
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class BatchSpec:
    """What a training source draws at each step, and which share of it this process keeps.

    - batch_size: images per step over all processes (the global batch; with partner "in-batch",
      anchors plus their partners, so it must be even).
    - seed: the run's seed; the pair sampler's draws and (offset by AUGMENT_SEED_OFFSET) the
      augmentation depend only on (seed, epoch, step).
    - partner: one of cskd.method.batch.PARTNER_MODES ("none", "class", "view", "in-batch").
    - clean: also yield each anchor's un-augmented evaluation view (Batch.clean).
    - allow_self_pair: a class partner may be the anchor itself (the authors' sampler).
    - rank, world: this process's index in 0..world-1 and the number of processes; rank r keeps
      `[r::world]` of every global batch.
    """

    batch_size: int
    seed: int
    partner: str = "none"
    clean: bool = False
    allow_self_pair: bool = False
    rank: int = 0
    world: int = 1


class TensorBatches:
    """Training batches from an in-memory split, augmented on `device`."""

    def __init__(self, bundle: DataBundle, split: Split, spec: BatchSpec, *, device: torch.device):
        self.bundle, self.rank, self.world = bundle, spec.rank, spec.world
        self.device = device
        self.images = split.images.to(device)
        self.sizes = None if split.sizes is None else split.sizes.to(device)
        self.labels = split.labels.to(device)
        self.mean = torch.tensor(bundle.mean, device=device)
        self.std = torch.tensor(bundle.std, device=device)
        self.partner, self.clean, self.seed = spec.partner, spec.clean, spec.seed
        self.sampler = _sampler(self.labels, spec)

    def __len__(self) -> int:
        return len(self.sampler)

    def _augment(self, rows: torch.Tensor, g: torch.Generator, keep=slice(None)) -> torch.Tensor:
        """The `keep` share of the global batch `rows`, augmented with the draws of the whole batch
        (so each image gets the same crop and flip whatever the number of processes)."""
        images, total = self.images[rows[keep]], len(rows)
        if self.bundle.augment == "rrc":  # TinyImageNet's 64-px images, or padded 224-px sets
            x = random_resized_crop_flip(images, size=self.bundle.image_size, generator=g, flip=self.bundle.flip,
                                         sizes=None if self.sizes is None else self.sizes[rows], keep=keep,
                                         total=total)
            return normalize(x, self.mean, self.std)
        x = random_crop_flip(images, pad=self.bundle.crop_pad, flip=self.bundle.flip, generator=g, keep=keep,
                             total=total)
        return normalize(x, self.mean, self.std)

    def _clean(self, rows: torch.Tensor) -> torch.Tensor:
        sizes = None if self.sizes is None else self.sizes[rows]
        return _plain(self.bundle, self.images[rows], self.mean, self.std, sizes)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """This rank's batches of `epoch` from step `start_step` on (a resumed run skips the rest)."""
        r, w = self.rank, self.world
        for step, (anchors, partners) in enumerate(self.sampler.epoch_batches(epoch)):
            if step < start_step:
                continue
            g = step_generator(self.seed + AUGMENT_SEED_OFFSET, epoch, step, self.device)
            keep = slice(r, None, w)  # this rank's strided share (cskd.method.sampler.share)
            if self.partner == "in-batch":  # each rank keeps its anchors followed by their partners
                half = len(anchors)
                if w > 1:
                    mine = torch.arange(r, half, w, device=self.device)
                    keep = torch.cat([mine, mine + half])
                both = torch.cat([anchors, partners])
                x = self._augment(both, g, keep)
                yield Batch(x, self.labels[both[keep]], None, None, len(x) * w / (2 * half))
                continue
            extra = {"class": partners, "view": anchors}.get(self.partner)
            x = self._augment(anchors, g, keep)
            other = None if extra is None else self._augment(extra, g, keep)
            mine = share(anchors, r, w)
            yield Batch(x, self.labels[mine], other, self._clean(mine) if self.clean else None,
                        len(mine) * w / len(anchors))


def _sampler(labels, spec: BatchSpec) -> ClassWiseBatchSampler:
    """In-batch pairing draws B/2 anchors per step, each followed by its partner in the same batch.
    With several processes, a last global batch of fewer anchors than processes is dropped (a
    rank without samples would stall the others); otherwise every sample is used once."""
    batch_size, partner, world = spec.batch_size, spec.partner, spec.world
    if partner not in PARTNER_MODES:
        raise ValueError(f"partner must be one of {PARTNER_MODES}; got {partner!r}")
    if partner == "in-batch":
        if batch_size < 2 or batch_size % 2:
            raise UserError(f"--pairing in-batch needs an even --batch-size >= 2; got {batch_size}")
        batch_size //= 2
    # In-batch pairing: one epoch = N images, N/2 anchors plus their N/2 partners.
    anchors = len(labels) // 2 if partner == "in-batch" else len(labels)
    # The data path takes each rank's share itself (after drawing the whole global batch's augmentation),
    # from the global batches of epoch_batches: the sampler is built as for one process.
    return ClassWiseBatchSampler(labels, batch_size, seed=spec.seed, allow_self_pair=spec.allow_self_pair,
                                 drop_last=0 < anchors % batch_size < world, num_replicas=1, rank=0,
                                 anchors_per_epoch=anchors if partner == "in-batch" else None)


def tensor_eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device):
    """(x, y, indices) over an in-memory split in order, normalised, no augmentation."""
    mean = torch.tensor(bundle.mean, device=device)
    std = torch.tensor(bundle.std, device=device)
    for i in range(0, len(split), batch_size):
        sizes = None if split.sizes is None else split.sizes[i:i + batch_size].to(device)
        x = _plain(bundle, split.images[i:i + batch_size].to(device), mean, std, sizes)
        yield x, split.labels[i:i + batch_size].to(device), split.indices[i:i + batch_size]


def _plain(bundle: DataBundle, x: torch.Tensor, mean, std, sizes=None) -> torch.Tensor:
    """Evaluation view of uint8 images, normalised: padded 224-px images get the test transform
    Resize(test_resize) + CenterCrop(size); others are resized to the training size when stored larger."""
    if sizes is not None:
        crop = resize_center_crop(x, sizes, resize=bundle.test_resize or bundle.image_size, size=bundle.image_size)
        return normalize(crop, mean, std)
    if x.shape[-1] != bundle.image_size or x.shape[-2] != bundle.image_size:
        return normalize(resize(x, bundle.image_size), mean, std)
    return normalize(x, mean, std)


def host_transforms(bundle: DataBundle, train: bool):
    """Per-sample transforms for DataLoader workers: the paper's / authors' recipe.

    Image files (PIL): train RandomResizedCrop(size) + flip, test Resize(test_resize or size) +
    CenterCrop(size). In-memory sets (uint8 CHW tensors): train RandomCrop(size, pad) (+ flip).
    Both end with scaling to [0, 1] and per-channel normalisation.
    """
    from torchvision.transforms import v2 as T

    size = bundle.image_size
    norm = [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(bundle.mean, bundle.std)]
    if bundle.in_memory:
        if not train:
            return T.Compose(norm)
        flip = [T.RandomHorizontalFlip()] if bundle.flip else []
        return T.Compose([T.RandomCrop(size, padding=bundle.crop_pad), *flip, *norm])
    if train:
        return T.Compose([T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(), *norm])
    return T.Compose([T.Resize(bundle.test_resize or size, antialias=True), T.CenterCrop(size), *norm])


class SplitImages(Dataset):
    """Sample `i` of a split through `transform` (and `clean_transform`, when given).

    Returns (image, label, index) or (image, clean image, label, index).
    """

    def __init__(self, split: Split, transform, clean_transform=None, cache_root=None):
        self.split, self.transform, self.clean_transform = split, transform, clean_transform
        # Image files: decoded once into a memory-mapped cache when the bundle asks for one.
        self.cache = None
        if split.files is not None and cache_root is not None:
            from cskd.data.decode_cache import DecodeCache

            self.cache = DecodeCache(split.files, cache_root)

    def __len__(self) -> int:
        return len(self.split)

    def _load(self, i: int):
        if self.split.images is not None:
            return self.split.images[i]
        if self.cache is not None:
            return self.cache.image(i)
        return open_rgb(self.split.files[i])

    def __getitem__(self, item):
        """`item` is a row, or (row, seed) for a training sample: its random transform is then drawn
        from that seed alone (whichever worker or process loads it)."""
        i, seed = item if isinstance(item, tuple) else (item, None)
        img = self._load(i)
        if seed is None:
            x = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):  # leave the process's own stream untouched
                torch.manual_seed(seed)
                x = self.transform(img)
        if self.clean_transform is None:
            return x, self.split.labels[i], self.split.indices[i]
        return x, self.clean_transform(img), self.split.labels[i], self.split.indices[i]


class _IndexBatches:
    """Batch sampler for one epoch from `start_step` on: this rank's (row, sample seed) anchors,
    followed by their partners when asked. A sample's seed is (spec.seed + AUGMENT_SEED_OFFSET,
    epoch, step, position in the global batch, role)."""

    def __init__(self, sampler: ClassWiseBatchSampler, spec: BatchSpec, epoch: int, *, start_step: int = 0):
        self.batches = sampler.epoch_batches(epoch)
        self.partner, self.seed = spec.partner, spec.seed + AUGMENT_SEED_OFFSET
        self.epoch, self.start_step = epoch, start_step
        self.rank, self.world = spec.rank, spec.world

    def __len__(self) -> int:
        return len(self.batches) - self.start_step

    def __iter__(self):
        for step, (a, p) in enumerate(self.batches):
            if step < self.start_step:
                continue
            items = []
            extra = {"class": p, "in-batch": p, "view": a}.get(self.partner)
            for role, rows in enumerate((a, extra)):
                if rows is None:
                    continue
                positions = share(torch.arange(len(rows)), self.rank, self.world).tolist()
                mine = share(rows, self.rank, self.world).tolist()
                items += [(row, mixed_seed(self.seed, self.epoch, step, j, role)) for row, j in zip(mine, positions)]
            yield items


class HostBatches:
    """Training batches decoded and augmented per sample by DataLoader workers."""

    def __init__(self, bundle: DataBundle, split: Split, spec: BatchSpec, *, device: torch.device, workers: int = 2):
        clean_tf = host_transforms(bundle, train=False) if spec.clean else None
        self.dataset = SplitImages(split, host_transforms(bundle, train=True), clean_tf, bundle.decode_cache)
        self.sampler = _sampler(split.labels, spec)
        self.spec, self.device, self.workers = spec, device, workers
        self.partner, self.clean, self.world = spec.partner, spec.clean, spec.world

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        batches = _IndexBatches(self.sampler, self.spec, epoch, start_step=start_step)
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        sizes = [len(a) for a, _ in batches.batches[start_step:]]  # global anchors per step
        for item, n_global in zip(loader, sizes):
            x, y = item[0].to(self.device, non_blocking=True), item[-2].to(self.device, non_blocking=True)
            clean = item[1].to(self.device, non_blocking=True) if self.clean else None
            if self.partner in ("class", "view", "in-batch"):
                half = len(y) // 2
                if self.partner == "in-batch":
                    yield Batch(x, y, None, clean, half * self.world / n_global)
                else:
                    yield Batch(x[:half], y[:half], x[half:], None if clean is None else clean[:half],
                                half * self.world / n_global)
            else:
                yield Batch(x, y, None, clean, len(y) * self.world / n_global)


def host_eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device, workers: int = 2):
    loader = DataLoader(SplitImages(split, host_transforms(bundle, train=False), cache_root=bundle.decode_cache),
                        batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    for x, y, idx in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), idx


def to_channels_last(batch: Batch) -> Batch:
    """The batch's image tensors in channels_last memory format (the model's, on CUDA by default)."""
    return batch._replace(**{k: getattr(batch, k).contiguous(memory_format=torch.channels_last)
                             for k in ("x", "partner", "clean") if getattr(batch, k) is not None
                             and getattr(batch, k).dim() == 4})


class ChannelsLast:
    """A training source whose batches come in channels_last format."""

    def __init__(self, source):
        self.source, self.sampler = source, source.sampler

    def __len__(self) -> int:
        return len(self.source)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        return (to_channels_last(b) for b in self.source.epoch(epoch, start_step))


def train_batches(bundle: DataBundle, spec: BatchSpec, *, device: torch.device, loader: str = "auto",
                  workers: int = 2, channels_last: bool = False):
    """The training source: on the device for in-memory sets (unless loader="host"), else DataLoader
    with `workers` worker processes (0: in this process); batches in channels_last memory format when
    asked. Its `epoch(e, start_step)` yields this rank's Batches; `sampler` holds the pair sampler."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}; got {loader!r}")
    if loader == "device" and not bundle.in_memory:
        raise UserError(f"--loader device needs an in-memory data set; {bundle.name} is read from image files")
    if bundle.in_memory and loader != "host":
        source = TensorBatches(bundle, bundle.train, spec, device=device)
    else:
        source = HostBatches(bundle, bundle.train, spec, device=device, workers=workers)
    return ChannelsLast(source) if channels_last else source


def eval_batches(bundle: DataBundle, split: Split, *, batch_size: int, device: torch.device, workers: int = 2):
    """(x, y, indices) over a split in order, without augmentation."""
    if split.images is not None:
        return tensor_eval_batches(bundle, split, batch_size=batch_size, device=device)
    return host_eval_batches(bundle, split, batch_size=batch_size, device=device, workers=workers)
