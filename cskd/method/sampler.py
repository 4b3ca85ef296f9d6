"""Class-wise pair sampling (paper Algorithm 1): every anchor gets a partner of the same class.

The draw for epoch e depends only on (seed, e), so the sampler's whole state is
`{seed, epoch, allow_self_pair}`:
a run resumed from a checkpoint draws exactly the pairs the uninterrupted run would have drawn.
Works on CPU or CUDA index tensors, so a device-resident loader can use it unchanged.

Several processes (torchrun): every rank draws the same global permutation and partners, and rank
r of W takes the strided share `batch[r::W]` of each global batch of B anchors, so step k over all
ranks covers exactly the anchors and partners of single-process step k.
"""

from __future__ import annotations

import hashlib

import torch


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
    permutation is drawn over each rank's share (cskd.method.baselines.mixup)."""
    g = torch.Generator(device=device)
    g.manual_seed(mixed_seed(seed, epoch, step))
    return g


class ClassPairSampler:
    """Per epoch: a seeded permutation of the anchors, and for each anchor a same-class partner.

    With `allow_self_pair=False` (default) the partner is drawn uniformly from the *other* samples
    of the class whenever the class has more than one sample; with `allow_self_pair=True` it is
    drawn uniformly from all samples of the class, the anchor included (the authors' sampler).
    """

    def __init__(self, labels: torch.Tensor, *, batch_size: int, seed: int, allow_self_pair: bool = False,
                 drop_last: bool = False, anchors_per_epoch: int | None = None):
        labels = torch.as_tensor(labels, dtype=torch.long)
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed
        self.allow_self_pair = allow_self_pair
        self.drop_last = drop_last
        self.epoch = 0
        # anchors drawn per epoch: all samples, or half with in-batch pairing (each step also holds partners)
        self.anchors_per_epoch = len(labels) if anchors_per_epoch is None else anchors_per_epoch
        # Members of every class laid out contiguously: members[start[c] : start[c] + count[c]].
        order = torch.argsort(labels, stable=True)
        num_classes = int(labels.max()) + 1 if len(labels) else 0
        self.members = order
        self.count = torch.bincount(labels, minlength=num_classes)
        self.start = torch.cumsum(self.count, 0) - self.count
        # rank[i] = position of sample i inside its class's member list
        self.rank = torch.empty_like(order)
        self.rank[order] = torch.arange(len(order), device=order.device) - self.start[labels[order]]

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
        return {"seed": self.seed, "epoch": self.epoch, "allow_self_pair": self.allow_self_pair}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.allow_self_pair = bool(state["allow_self_pair"])


def share(rows: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s strided share of a global batch's rows: rows[rank::world]."""
    return rows[rank::world] if world > 1 else rows
