"""The data sets cskd loads by name (`--dataset`), and loading one for a run's config.

In-memory sets (`digits`, `cifar100`, `synthetic`) hold uint8 tensors (N, C, H, W) and are
augmented batched on the training device (cskd.data.loaders.TensorBatches). Image-folder sets hold
file lists and are decoded and augmented by DataLoader workers (cskd.data.loaders.HostBatches).
How splits are drawn: cskd.data.bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cskd.data.bundle import DataBundle, tensor_split
from cskd.data.catalog import DATASET_SPECS
from cskd.data.image_folders import load_folder_bundle, load_mixed_bundle
from cskd.data.prepare.record import read_prepared
from cskd.data.splits import draw_splits
from cskd.errors import UserError, choose, short_reason


def load_digits_bundle() -> DataBundle:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, grey levels 0..16 -> 0..255).

    The test split is a fixed stratified 20 % drawn with seed 0; `indices` of train and test
    refer to the position in the scikit-learn arrays (test) or the 80 % remainder (train).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = d.target.astype(np.int64)
    rows = np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    train_rows, test_rows = train_test_split(rows, test_size=0.2, random_state=0, stratify=labels)
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    train = tensor_split(images[train_rows], labels[train_rows])
    test = tensor_split(images[test_rows], labels[test_rows])
    test.indices = torch.as_tensor(test_rows)
    train.indices = torch.as_tensor(train_rows)
    mean = float(images[train_rows].mean() / 255.0)
    std = float(images[train_rows].std() / 255.0)
    return DataBundle("digits", [str(i) for i in range(10)], 1, 8, (mean,), (std,), train, None, test,
                      crop_pad=1, flip=False)  # a mirrored digit is another symbol: no flips


_SYNTHETIC = DATASET_SPECS["synthetic"]


def load_synthetic_bundle(num_train: int = _SYNTHETIC.train, num_test: int = _SYNTHETIC.test,
                          num_classes: int = _SYNTHETIC.classes) -> DataBundle:
    """CIFAR-shaped images (3x32x32 uint8) for throughput benchmarks only, never for reported accuracy.

    Each class has a fixed random template; an image is its class template plus uniform noise,
    so a model can learn the labels and a short run shows the loss falling.
    """
    g = np.random.default_rng(0)
    size = _SYNTHETIC.image_size
    templates = g.integers(0, 256, (num_classes, size, size, 3)).astype(np.int16)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % num_classes
        noise = g.integers(-48, 49, (n, size, size, 3), dtype=np.int16)
        return np.clip(templates[labels] * 3 // 4 + 32 + noise, 0, 255).astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = make(num_train), make(num_test)
    return DataBundle("synthetic", [f"class{i}" for i in range(num_classes)], 3, _SYNTHETIC.image_size,
                      *_SYNTHETIC.stats,
                      tensor_split(x_train, y_train), None, tensor_split(x_test, y_test))


def load_cifar100_bundle(root: Path, download: bool) -> DataBundle:
    """CIFAR-100 via torchvision, in memory; exposes the 20 superclasses as `fine_to_coarse`."""
    folder = root / "cifar100"
    if not download and not (folder / "cifar-100-python").is_dir():
        raise UserError(f"CIFAR-100 not found: expected {folder / 'cifar-100-python'}; "
                        f"pass --download to fetch it (about 170 MB) or --data-root to point elsewhere")
    import torchvision
    from torchvision.datasets.utils import check_integrity

    from cskd.data.cifar100_meta import CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE

    cifar = torchvision.datasets.CIFAR100
    if not download:
        # The files are pickles: check them against the published MD5s BEFORE torchvision unpickles
        # them, so a damaged or foreign file is a one-line error and never runs code.
        for name, md5 in [*cifar.train_list, *cifar.test_list, (cifar.meta["filename"], cifar.meta["md5"])]:
            path = folder / cifar.base_folder / name
            if not check_integrity(str(path), md5):
                raise UserError(f"{path} is missing, damaged or not CIFAR-100's (its MD5 differs from the "
                                f"published one); delete {folder / cifar.base_folder} and pass --download")
    try:
        sets = [cifar(str(folder), train=t, download=download) for t in (True, False)]
    except (OSError, RuntimeError) as e:  # a failed download, a damaged archive
        raise UserError(f"CIFAR-100 could not be read or fetched into {folder} ({short_reason(e)}); "
                        f"delete that folder and try --download again") from None
    train, test = (tensor_split(s.data, np.asarray(s.targets)) for s in sets)
    spec = DATASET_SPECS["cifar100"]
    return DataBundle("cifar100", list(sets[0].classes), 3, spec.image_size, *spec.stats, train, None, test,
                      fine_to_coarse=list(CIFAR100_COARSE_OF_FINE), coarse_names=list(CIFAR100_COARSE_NAMES))


DATASETS = tuple(DATASET_SPECS)  # the --dataset names (each set's facts: cskd.data.catalog)
FOLDER_SETS = tuple(name for name, spec in DATASET_SPECS.items() if spec.image_folder)


def load_bundle(name: str, *, data_root: str, download: bool = False, val_fraction: float = 0.1,
                split_seed: int = 0, mixed_roots: tuple[str, ...] = (), mixed_per_class: int = 30,
                train_per_class: int = 0) -> DataBundle:
    """Load data set `name` with its validation split held out of the training data (and, with
    `train_per_class`, N training images per class from the rest)."""
    choose("data set", name, {d: None for d in DATASETS})
    root = Path(data_root)
    if name == "digits":
        bundle = load_digits_bundle()
    elif name == "synthetic":
        bundle = load_synthetic_bundle()
    elif name == "cifar100":
        bundle = load_cifar100_bundle(root, download)
    elif name == "imagefolder":
        bundle = load_folder_bundle(name, root)
        bundle.provenance = _prepared(root)
    elif name == "mixed":
        bundle = load_mixed_bundle(list(mixed_roots), mixed_per_class, split_seed)
    else:
        bundle = load_folder_bundle(name, root / name)
        bundle.provenance = _prepared(root / name)
    present = torch.unique(bundle.train.labels)
    if len(present) < 2:  # checked on the whole set: a mixed set may take one class from each folder
        raise UserError(f"data set {name!r}: only class {bundle.class_names[int(present[0])]!r} has training images; "
                        f"classification needs images of at least 2 classes")
    return draw_splits(bundle, val_fraction, split_seed, train_per_class)


def _prepared(folder: Path) -> dict:
    """{"prepared": ...} when `cskd prepare` made this folder (its prepared.json), else {}."""
    record = read_prepared(folder)
    return {"prepared": record} if record else {}


def bundle_key(cfg) -> tuple:
    """The config fields that decide which samples a run's DataBundle holds."""
    return (cfg.dataset, cfg.data_root, cfg.download, cfg.val_fraction, cfg.split_seed, tuple(cfg.mixed_roots),
            cfg.mixed_per_class, cfg.train_per_class)


def load_bundle_of(cfg) -> DataBundle:
    """load_bundle with a run config's data fields (files listed, nothing decoded yet)."""
    bundle = load_bundle(cfg.dataset, data_root=cfg.data_root, download=cfg.download, val_fraction=cfg.val_fraction,
                         split_seed=cfg.split_seed, mixed_roots=tuple(cfg.mixed_roots),
                         mixed_per_class=cfg.mixed_per_class, train_per_class=cfg.train_per_class)
    authors = DATASET_SPECS[cfg.dataset].authors_stats
    if cfg.protocol == "authors" and authors is not None:
        bundle.mean, bundle.std = authors
    return bundle
