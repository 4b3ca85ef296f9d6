"""Class-wise pair sampling (paper Algorithm 1): every anchor gets a partner of the same class.

`ClassWiseBatchSampler` is both the public sampler (a `torch.utils.data.Sampler` for a
DataLoader's `batch_sampler`) and the one cskd's trainer draws from. The draw for epoch e depends
only on (seed, e), so the sampler's whole state is `{seed, epoch, allow_self_pair}`: a run resumed
from a checkpoint draws exactly the pairs the uninterrupted run would have drawn. Works on CPU or
CUDA index tensors, so a device-resident loader can use it unchanged.

Several processes (torchrun): every rank draws the same global permutation and partners, and rank
r of W takes the strided share `batch[r::W]` of each global batch of B anchors, so step k over all
ranks covers exactly the anchors and partners of single-process step k.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def mixed_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys; distinct key tuples give unrelated seeds."""
    digest = hashlib.blake2b(",".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, epoch) only; distinct epochs get unrelated streams."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1))
    return g


def step_generator(seed: int, epoch: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, epoch, step): the draws of one training step (augmentation,
    Mixup) depend on nothing else, so a run resumed mid-epoch draws the same numbers. Split over
    processes, every rank draws the global batch's augmentation and Mixup's λ alike; Mixup's
    permutation is drawn over each rank's share (cskd.method.baselines.mixup_batch)."""
    g = torch.Generator(device=device)
    g.manual_seed(mixed_seed(seed, epoch, step))
    return g


class ClassWiseBatchSampler(Sampler[list[int]]):
    """Batches of anchors and their same-class partners (paper Algorithm 1), for a DataLoader.

    Each item is a list of 2·B data-set indices: B anchors, then each anchor's partner in the same
    order, so `DataLoader(dataset, batch_sampler=ClassWiseBatchSampler(labels, 64))` collates 2·B
    samples per step and `split_pairs` cuts them into (anchors, partners). Per epoch the anchors are
    a seeded permutation of the data set; the partner of an anchor is drawn uniformly from the
    *other* samples of its class (the anchor itself only when it is alone in its class), or, with
    `allow_self_pair=True`, from all samples of the class, the anchor included (the authors'
    sampler). The draws depend only on (seed, epoch): `set_epoch(e)` changes them, the same
    (seed, epoch) repeats them. `len()` is the number of batches of an epoch.

    Several processes: `batch_size` is the global batch B. With `num_replicas` W and `rank` r
    (default: from torch.distributed when it is initialised, else 1 and 0) every rank draws the
    same global batch and keeps its strided share `batch[r::W]` of anchors and of partners
    (`share`), so the W ranks' items of step k together are the single-process item of step k;
    a last global batch of fewer than W anchors is dropped (a rank without samples would stall the
    others). cskd's trainer draws its batches with this class (`epoch_batches`, the global batches
    as index tensors, on CPU or CUDA) and takes the same shares.

    Parameters: `labels` integer class ids (N,), ids >= 0; `batch_size` B >= 1 anchors per global
    batch; `seed` of the draws; `drop_last` drops a last partial global batch; `anchors_per_epoch`
    (cskd's in-batch pairing) draws only that many anchors per epoch.

    >>> s = ClassWiseBatchSampler([0, 0, 1, 1, 1], batch_size=2, seed=0)
    >>> len(s)
    3
    >>> item = next(iter(s))
    >>> len(item), [([0, 0, 1, 1, 1][i]) for i in item[:2]] == [[0, 0, 1, 1, 1][i] for i in item[2:]]
    (4, True)
    """

    def __init__(self, labels: torch.Tensor | Sequence[int] | np.ndarray, batch_size: int, *, seed: int = 0,
                 drop_last: bool = False,
                 allow_self_pair: bool = False, num_replicas: int | None = None, rank: int | None = None,
                 anchors_per_epoch: int | None = None):
        labels = _class_ids(labels)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if num_replicas is not None or rank is not None:
            _replicas(num_replicas, rank)  # checked now; None parts are read from torch.distributed when drawn
        self._replicas = (num_replicas, rank)
        self.labels = labels
        self.batch_size = batch_size
        self.seed = int(seed)
        self.allow_self_pair = bool(allow_self_pair)
        self.epoch = 0
        # anchors drawn per epoch: all samples, or half with in-batch pairing (each step also holds partners)
        self.anchors_per_epoch = len(labels) if anchors_per_epoch is None else int(anchors_per_epoch)
        if not 1 <= self.anchors_per_epoch <= len(labels):
            raise ValueError(f"anchors_per_epoch must be in [1, {len(labels)}] (the data set's size); "
                             f"got {self.anchors_per_epoch}")
        self.requested_drop_last = bool(drop_last)
        if self.requested_drop_last and self.anchors_per_epoch < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {self.anchors_per_epoch} anchors of an "
                             f"epoch and drop_last leaves no batch; choose batch_size <= {self.anchors_per_epoch}")
        # Members of every class laid out contiguously: members[start[c] : start[c] + count[c]].
        order = torch.argsort(labels, stable=True)
        num_classes = int(labels.max()) + 1
        self.members = order
        self.count = torch.bincount(labels, minlength=num_classes)
        self.start = torch.cumsum(self.count, 0) - self.count
        # rank[i] = position of sample i inside its class's member list
        self.rank = torch.empty_like(order)
        self.rank[order] = torch.arange(len(order), device=order.device) - self.start[labels[order]]

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of `epoch` next (call it before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    @property
    def replicas(self) -> tuple[int, int]:
        """(W, r): as given, else from torch.distributed at the time of asking (a sampler built before
        the process group, as a Lightning DataLoader is, still takes its rank's share)."""
        w, r = _replicas(*self._replicas)
        if self.batch_size < w:
            raise ValueError(f"batch_size {self.batch_size} (the global batch) is smaller than the {w} processes; "
                             f"each process needs at least one anchor per step: use batch_size >= {w}")
        return w, r

    @property
    def drop_last(self) -> bool:
        """Whether the last partial global batch is dropped: asked for, or fewer anchors than processes."""
        w = self.replicas[0]  # checked on every use: W may come from torch.distributed
        return self.requested_drop_last or 0 < self.anchors_per_epoch % self.batch_size < w

    def __iter__(self) -> Iterator[list[int]]:
        w, r = self.replicas
        for anchors, partners in self.epoch_batches(self.epoch):
            yield share(anchors, r, w).tolist() + share(partners, r, w).tolist()

    def __len__(self) -> int:
        n = self.anchors_per_epoch
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def partners(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw one same-class partner index for each anchor index."""
        cls = self.labels[anchors]
        count = self.count[cls]
        u = torch.rand(anchors.shape, generator=generator, device=anchors.device)
        if self.allow_self_pair:
            pos = (u * count).long().clamp_max(count - 1)
        else:
            # Draw among count-1 others, then skip over the anchor's own slot.
            others = (count - 1).clamp_min(1)
            pos = (u * others).long().clamp_max(others - 1)
            pos = pos + (pos >= self.rank[anchors]).long()
            pos = torch.where(count > 1, pos, self.rank[anchors])
        return self.members[self.start[cls] + pos]

    def epoch_batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All global (anchor indices, partner indices) batches of `epoch`, deterministic in
        (seed, epoch); a rank takes its share with `share`."""
        self.epoch = epoch
        g = epoch_generator(self.seed, epoch, self.labels.device)
        perm = torch.randperm(len(self.labels), generator=g, device=self.labels.device)[:self.anchors_per_epoch]
        partners = self.partners(perm, g)
        n = len(self) * self.batch_size if self.drop_last else len(perm)
        return [(perm[i:i + self.batch_size], partners[i:i + self.batch_size]) for i in range(0, n, self.batch_size)]

    def state_dict(self) -> dict:
        """The sampler's whole state {seed, epoch, allow_self_pair}: what a checkpoint keeps."""
        return {"seed": self.seed, "epoch": self.epoch, "allow_self_pair": self.allow_self_pair}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict: the sampler then draws what the saved one would have drawn."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.allow_self_pair = bool(state["allow_self_pair"])


def share(rows: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s strided share of a global batch's rows: rows[rank::world]."""
    return rows[rank::world] if world > 1 else rows


def split_pairs(batch: torch.Tensor | tuple | list | dict) -> tuple:
    """Cut a collated batch of 2·B samples from `ClassWiseBatchSampler` into (anchors, partners).

    `batch` is a tensor whose first dimension is 2·B, or a tuple/list/dict of such tensors (as a
    DataLoader collates `(image, label)` samples); the result has the same structure:
    `(x, y), (x_partner, y_partner) = split_pairs(batch)`.

    >>> import torch
    >>> anchors, partners = split_pairs((torch.arange(4), torch.tensor([0, 1, 0, 1])))
    >>> anchors[0].tolist(), partners[1].tolist()
    ([0, 1], [0, 1])
    """
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0] if batch.ndim else 0
        if n % 2 or n == 0:
            raise ValueError(f"a class-wise batch holds 2·B samples (B anchors, then their partners); got {n}")
        return batch[: n // 2], batch[n // 2:]
    if isinstance(batch, dict):
        halves = {k: split_pairs(v) for k, v in batch.items()}
        return {k: h[0] for k, h in halves.items()}, {k: h[1] for k, h in halves.items()}
    if isinstance(batch, (tuple, list)):
        halves = [split_pairs(v) for v in batch]
        return type(batch)(h[0] for h in halves), type(batch)(h[1] for h in halves)
    raise TypeError(f"split_pairs takes a tensor, or a tuple, list or dict of tensors; got {type(batch).__name__}")


def _class_ids(labels) -> torch.Tensor:
    """`labels` as an int64 tensor of class ids (N,), or a ValueError/TypeError saying what is wrong."""
    if isinstance(labels, torch.Tensor):
        t = labels
    else:
        try:
            t = torch.as_tensor(np.asarray(labels))
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"labels must be a sequence of integer class ids; got {type(labels).__name__} ({e})") \
                from None
    if t.numel() == 0:
        raise ValueError("labels is empty: a data set needs at least one sample")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids; got dtype {t.dtype} (convert with .long() if the values "
                        f"are whole numbers)")
    if t.ndim != 1:
        raise ValueError(f"labels must be one-dimensional (one class id per sample); got shape {tuple(t.shape)}")
    t = t.long()
    if int(t.min()) < 0:
        raise ValueError(f"labels must be class ids >= 0; got {int(t.min())}")
    return t


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(W, r): given, or from torch.distributed when it is initialised, else (1, 0)."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    w = num_replicas if num_replicas is not None else (dist.get_world_size() if initialised else 1)
    r = rank if rank is not None else (dist.get_rank() if initialised else 0)
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise ValueError(f"num_replicas must be a positive integer; got {w!r}")
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < w:
        raise ValueError(f"rank must be an integer in [0, num_replicas - 1] = [0, {w - 1}]; got {r!r}")
    return w, r
