"""Data sets: where the samples come from, how they are split, and how they are augmented.

In-memory sets (`digits`, `cifar100`, `synthetic`) hold uint8 tensors (N, C, H, W) and are
augmented batched on the training device (cskd.loaders.TensorBatches). Image-folder sets hold file
lists and are decoded and augmented by DataLoader workers (cskd.loaders.HostBatches).

Splits: the test split is the data set's own (for `digits`: a fixed stratified 20 % with seed 0);
the validation split is a stratified `val_fraction` of the training data drawn with `split_seed`,
so every run on a data set sees the same samples whatever its training seed. With
`train_per_class` N > 0, N training images per class are then drawn (seeded by `split_seed`)
from what remains: the validation split is the same for every N, and training sees exactly N
images of each class (fewer for a class that has fewer left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UserError, choose, short_reason

# Per-channel statistics used for normalisation (fractions of 255).
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))  # CIFAR-100's own training set
TINYIMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# --protocol authors: the statistics the authors' code normalises with (CIFAR-100 with CIFAR-10's,
# TinyImageNet with ImageNet's); every other data set keeps its own.
AUTHORS_STATS = {"cifar100": CIFAR10_STATS, "tinyimagenet": IMAGENET_STATS}


@dataclass
class Split:
    """One split. Exactly one of `images` (uint8 N,C,H,W) and `files` (image paths) is set."""

    labels: torch.Tensor  # int64 (N,)
    indices: torch.Tensor  # int64 (N,) position of each sample in its source list (train or test)
    images: torch.Tensor | None = None
    files: list[str] | None = None
    sizes: torch.Tensor | None = None  # int64 (N, 2) true (height, width) when `images` are zero-padded

    def image_hwc(self, row: int) -> np.ndarray:
        """Sample `row` of an in-memory split as uint8 HxWxC, without padding."""
        img = self.images[row]
        if self.sizes is not None:
            h, w = self.sizes[row].tolist()
            img = img[:, :h, :w]
        return img.permute(1, 2, 0).numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> Split:
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        return Split(
            labels=self.labels[rows_t],
            indices=self.indices[rows_t],
            images=None if self.images is None else self.images[rows_t],
            files=None if self.files is None else [self.files[i] for i in rows],
            sizes=None if self.sizes is None else self.sizes[rows_t],
        )


@dataclass
class DataBundle:
    """A data set ready for training: splits, class names, normalisation and augmentation recipe."""

    name: str
    class_names: list[str]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split | None
    test: Split
    # "crop_flip": RandomCrop(size, pad)+flip on tensors; "rrc": RandomResizedCrop(size)+flip from files
    augment: str = "crop_flip"
    crop_pad: int = 4
    flip: bool = True
    test_resize: int = 0  # file sets: Resize(test_resize) + CenterCrop(image_size); 0 = Resize(image_size)
    fine_to_coarse: list[int] | None = None
    coarse_names: list[str] | None = None
    decode_cache: Path | None = None  # image-file sets: folder of the decode-once pixel cache
    provenance: dict = field(default_factory=dict)  # recorded in config.json (e.g. `cskd prepare`'s prepared.json)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None


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


def _with_val(bundle: DataBundle, val_fraction: float, split_seed: int, train_per_class: int = 0) -> DataBundle:
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


def _tensor_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """images uint8 (N, H, W, C) -> Split with (N, C, H, W)."""
    return Split(labels=torch.as_tensor(labels, dtype=torch.long), indices=torch.arange(len(labels)),
                 images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))


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
    train = _tensor_split(images[train_rows], labels[train_rows])
    test = _tensor_split(images[test_rows], labels[test_rows])
    test.indices = torch.as_tensor(test_rows)
    train.indices = torch.as_tensor(train_rows)
    mean = float(images[train_rows].mean() / 255.0)
    std = float(images[train_rows].std() / 255.0)
    return DataBundle("digits", [str(i) for i in range(10)], 1, 8, (mean,), (std,), train, None, test,
                      crop_pad=1, flip=False)  # a mirrored digit is another symbol: no flips


def load_synthetic_bundle(num_train: int = 5000, num_test: int = 1000, num_classes: int = 100) -> DataBundle:
    """CIFAR-shaped images (3x32x32 uint8) for throughput benchmarks only, never for reported accuracy.

    Each class has a fixed random template; an image is its class template plus uniform noise,
    so a model can learn the labels and a short run shows the loss falling.
    """
    g = np.random.default_rng(0)
    templates = g.integers(0, 256, (num_classes, 32, 32, 3)).astype(np.int16)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % num_classes
        noise = g.integers(-48, 49, (n, 32, 32, 3), dtype=np.int16)
        return np.clip(templates[labels] * 3 // 4 + 32 + noise, 0, 255).astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = make(num_train), make(num_test)
    return DataBundle("synthetic", [f"class{i}" for i in range(num_classes)], 3, 32, (0.5,) * 3, (0.25,) * 3,
                      _tensor_split(x_train, y_train), None, _tensor_split(x_test, y_test))


def load_cifar100_bundle(root: Path, download: bool) -> DataBundle:
    """CIFAR-100 via torchvision, in memory; exposes the 20 superclasses as `fine_to_coarse`."""
    folder = root / "cifar100"
    if not download and not (folder / "cifar-100-python").is_dir():
        raise UserError(f"CIFAR-100 not found: expected {folder / 'cifar-100-python'}; "
                        f"pass --download to fetch it (about 170 MB) or --data-root to point elsewhere")
    import torchvision
    from torchvision.datasets.utils import check_integrity

    from .cifar100_meta import CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE

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
    train, test = (_tensor_split(s.data, np.asarray(s.targets)) for s in sets)
    return DataBundle("cifar100", list(sets[0].classes), 3, 32, *CIFAR100_STATS, train, None, test,
                      fine_to_coarse=list(CIFAR100_COARSE_OF_FINE), coarse_names=list(CIFAR100_COARSE_NAMES))


FOLDER_SETS = ("tinyimagenet", "cub200", "dogs", "mit67", "imagenet", "imagefolder")
DATASETS = ("digits", "synthetic", "cifar100", "mixed") + FOLDER_SETS


def load_bundle(name: str, *, data_root: str, download: bool = False, val_fraction: float = 0.1,
                split_seed: int = 0, mixed_roots: tuple[str, ...] = (), mixed_per_class: int = 30,
                train_per_class: int = 0) -> DataBundle:
    """Load data set `name` with its validation split held out of the training data (and, with
    `train_per_class`, N training images per class from the rest)."""
    from .image_folders import load_folder_bundle, load_mixed_bundle  # they build on this module's classes

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
    elif name == "mixed":
        bundle = load_mixed_bundle(list(mixed_roots), mixed_per_class, split_seed)
    else:
        bundle = load_folder_bundle(name, root / name)
    present = torch.unique(bundle.train.labels)
    if len(present) < 2:  # checked on the whole set: a mixed set may take one class from each folder
        raise UserError(f"data set {name!r}: only class {bundle.class_names[int(present[0])]!r} has training images; "
                        f"classification needs images of at least 2 classes")
    return _with_val(bundle, val_fraction, split_seed, train_per_class)


def bundle_key(cfg) -> tuple:
    """The config fields that decide which samples a run's DataBundle holds."""
    return (cfg.dataset, cfg.data_root, cfg.download, cfg.val_fraction, cfg.split_seed, tuple(cfg.mixed_roots),
            cfg.mixed_per_class, cfg.train_per_class)


def load_bundle_of(cfg) -> DataBundle:
    """load_bundle with a run config's data fields (files listed, nothing decoded yet)."""
    bundle = load_bundle(cfg.dataset, data_root=cfg.data_root, download=cfg.download, val_fraction=cfg.val_fraction,
                         split_seed=cfg.split_seed, mixed_roots=tuple(cfg.mixed_roots),
                         mixed_per_class=cfg.mixed_per_class, train_per_class=cfg.train_per_class)
    if cfg.protocol == "authors" and cfg.dataset in AUTHORS_STATS:
        bundle.mean, bundle.std = AUTHORS_STATS[cfg.dataset]
    return bundle


def bundle_for(cfg) -> DataBundle:
    """The DataBundle a run's config (cskd.config.TrainConfig) describes, ready to train on."""
    bundle = load_bundle_of(cfg)
    if not bundle.in_memory and cfg.decode_cache != "off":
        bundle.decode_cache = Path(cfg.decode_cache_dir or Path(cfg.data_root) / ".cskd-cache")
        small = bundle.image_size == 32 and cfg.loader != "host"
        # 224-px sets go to the device when asked, or (auto) on CUDA when they fit
        maybe_device = cfg.loader == "device" or (cfg.loader == "auto" and cfg.device != "cpu"
                                                  and torch.cuda.is_available())
        if small or maybe_device:
            caches = _decode_caches(bundle)  # opened once: each one hashes the stat of every file
            if small:
                _load_into_memory(bundle, caches, padded=False)
            elif cfg.loader == "device" or _fits_on_gpu(caches):
                _load_into_memory(bundle, caches, padded=True)
    elif cfg.loader == "device" and not bundle.in_memory:
        raise UserError("--loader device needs the decode cache; drop --decode-cache off")
    return bundle


# Share of free GPU memory the padded images of a 224-px set may take for the automatic choice.
GPU_DATA_FRACTION = 0.4


def _decode_caches(bundle: DataBundle) -> dict:
    """{split name: DecodeCache} of the bundle's image-file splits (built on first use)."""
    from .decode_cache import DecodeCache

    return {name: DecodeCache(getattr(bundle, name).files, bundle.decode_cache)
            for name in ("train", "val", "test") if getattr(bundle, name)}


def _fits_on_gpu(caches: dict) -> bool:
    """Automatic device path for 224-px sets on CUDA: the padded images take at most
    GPU_DATA_FRACTION of the free memory (on CPU, DataLoader workers decode in parallel instead)."""
    need = sum(c.padded_bytes() for c in caches.values())
    return need <= GPU_DATA_FRACTION * torch.cuda.mem_get_info()[0]


def _load_into_memory(bundle: DataBundle, caches: dict, *, padded: bool) -> None:
    """Move an image-file set into memory through its decode caches, for the device path.

    Images that all share one size (TinyImageNet: 64x64) become a plain uint8 tensor per split;
    with `padded` (224-px sets) images of any size are zero-padded into one tensor with their
    sizes kept in `Split.sizes`. Without `padded`, mixed sizes leave the set on the DataLoader path.
    """
    one_size = len(np.unique(np.concatenate([c.index[:, 1:] for c in caches.values()]), axis=0)) == 1
    if not (one_size or padded):
        return
    for name, cache in caches.items():
        part = getattr(bundle, name)
        part.images, sizes = cache.padded()
        part.sizes = sizes if padded else None  # sizes select the 224-px test crop in cskd.loaders
        part.files = None
