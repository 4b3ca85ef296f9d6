"""Facts about the data sets cskd knows by name (`--dataset`), independent of how they are loaded: one
frozen DataSetSpec each, in DATASET_SPECS, the one place they are written. cskd.data.sets (the names,
the image-folder sets), its loaders (image size, statistics), cskd.experiments (which sets are
32 px, the sizes of the GPU-hour estimate) and `cskd prepare` (OFFICIAL) derive theirs from it.

This module imports nothing: it sits on the lowest level of the import graph.

OFFICIAL: the publishers' counts of the data sets `cskd prepare` makes, {name: {"train", "test",
"classes"}}, derived from the specs; every prepared copy is checked against this dict and nothing else,
so tests replace its entries (monkeypatch.setitem) for their miniature archives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Stats(NamedTuple):
    """Per-channel normalisation statistics, fractions of 255."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


CIFAR100 = Stats((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))  # CIFAR-100's own training set
CIFAR10 = Stats((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
TINYIMAGENET = Stats((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))
IMAGENET = Stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DataSetSpec:
    """One data set. Counts are of the split cskd loads (train before the validation hold-out):
    the publisher's official split, or cskd's own fixed one (digits, synthetic); None where they are
    not fixed (a mixed set depends on --mixed-roots, an image folder on its contents)."""

    name: str  # the --dataset value
    image_size: int  # side in px of the square images the models see
    train: int | None
    test: int | None
    classes: int | None
    stats: Stats | None  # normalisation; None: computed from the training images when loaded (digits)
    # --protocol authors: what the authors' code normalises with; None: the set's own `stats`
    authors_stats: Stats | None = None
    prepared: bool = False  # `cskd prepare` makes it (cskd.data.prepare.sets.SETS), checked against OFFICIAL
    image_folder: bool = False  # loaded from one train/ + test/ ImageFolder layout (cskd.data.image_folders)


# In the order of the --dataset help text.
DATASET_SPECS: dict[str, DataSetSpec] = {s.name: s for s in (
    # scikit-learn's 1,797 8x8 digits, split 80/20 by cskd (stratified, seed 0)
    DataSetSpec("digits", 8, 1_437, 360, 10, None),
    # CIFAR-shaped class templates plus noise, for throughput benchmarks (cskd.data.sets.load_synthetic_bundle)
    DataSetSpec("synthetic", 32, 5_000, 1_000, 100, Stats((0.5,) * 3, (0.25,) * 3)),
    DataSetSpec("cifar100", 32, 50_000, 10_000, 100, CIFAR100, authors_stats=CIFAR10),
    DataSetSpec("mixed", 224, None, None, None, IMAGENET),  # Figure 4: several image folders, one coarse group each
    # The authors train TinyImageNet at 32x32 (RandomResizedCrop(32)).
    DataSetSpec("tinyimagenet", 32, 100_000, 10_000, 200, TINYIMAGENET, authors_stats=IMAGENET, prepared=True,
                image_folder=True),
    DataSetSpec("cub200", 224, 5_994, 5_794, 200, IMAGENET, prepared=True, image_folder=True),
    DataSetSpec("dogs", 224, 12_000, 8_580, 120, IMAGENET, prepared=True, image_folder=True),
    DataSetSpec("mit67", 224, 5_360, 1_340, 67, IMAGENET, prepared=True, image_folder=True),
    DataSetSpec("imagenet", 224, 1_281_167, 50_000, 1_000, IMAGENET, prepared=True, image_folder=True),
    DataSetSpec("imagefolder", 224, None, None, None, IMAGENET, image_folder=True),  # --data-root is the set itself
)}

OFFICIAL = {name: {"train": s.train, "test": s.test, "classes": s.classes}
            for name, s in DATASET_SPECS.items() if s.prepared}


def folder_spec(name: str) -> DataSetSpec:
    """The spec an image folder named `name` is loaded with: its own when it names an image-folder
    set, else imagefolder's (a --mixed-roots folder may have any name)."""
    spec = DATASET_SPECS.get(name)
    return spec if spec is not None and spec.image_folder else DATASET_SPECS["imagefolder"]
