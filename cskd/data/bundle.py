"""What a loaded data set is: its splits (`Split`) and the `DataBundle` a run trains on. Each named
set's image size and normalisation statistics: cskd.data.catalog. How the validation and per-class
subsets are drawn: cskd.data.splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


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


def tensor_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """images uint8 (N, H, W, C) -> Split with (N, C, H, W)."""
    return Split(labels=torch.as_tensor(labels, dtype=torch.long), indices=torch.arange(len(labels)),
                 images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
