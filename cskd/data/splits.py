"""How a data set's splits are drawn.

The test split is the data set's own (for `digits`: a fixed stratified 20 % with seed 0); the
validation split is a stratified `val_fraction` of the training data drawn with `split_seed`, so
every run on a data set sees the same samples whatever its training seed. With `train_per_class`
N > 0, N training images per class are then drawn (seeded by `split_seed`) from what remains: the
validation split is the same for every N, and training sees exactly N images of each class (fewer
for a class that has fewer left).
"""

from __future__ import annotations

import numpy as np

from cskd.data.bundle import DataBundle
from cskd.errors import UserError


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (keep, held_out) with `fraction` of every class held out (at least one sample per class
    that has two or more), drawn with `seed`."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    counts = np.bincount(labels)
    if counts[counts > 0].min() < 2:
        raise UserError("a class has a single training sample; cannot hold out a stratified validation split "
                        "(use --val-fraction 0 --select-on test)")
    n_classes = int((counts > 0).sum())
    held_out = int(np.ceil(fraction * len(labels)))
    if held_out < n_classes or len(labels) - held_out < n_classes:
        raise UserError(f"--val-fraction {fraction} of {len(labels)} training samples cannot hold every one of "
                        f"{n_classes} classes on both sides; choose a fraction in "
                        f"[{n_classes / len(labels):.3f}, {1 - n_classes / len(labels):.3f}]")
    keep, held = train_test_split(rows, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(keep), np.sort(held)


def draw_splits(bundle: DataBundle, val_fraction: float, split_seed: int, train_per_class: int = 0) -> DataBundle:
    if val_fraction > 0:
        keep, held = _stratified_split(bundle.train.labels.numpy(), val_fraction, split_seed)
        bundle.train, bundle.val = bundle.train.subset(keep), bundle.train.subset(held)
    if train_per_class > 0:
        largest = int(np.bincount(bundle.train.labels.numpy()).max())
        if train_per_class >= largest:
            raise UserError(f"--train-per-class {train_per_class} keeps every training image (the largest class has "
                            f"{largest} after the validation split); choose fewer, or leave the option out")
        bundle.train = bundle.train.subset(per_class_rows(bundle.train.labels.numpy(), train_per_class, split_seed))
    return bundle


def per_class_rows(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted rows of min(n, count) samples of every class, drawn without replacement with
    numpy's default_rng(seed) (class by class in label order)."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == c), size=min(n, int((labels == c).sum())), replace=False)
            for c in np.unique(labels)]
    return np.sort(np.concatenate(rows))
