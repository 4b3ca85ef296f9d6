"""Image-folder data sets: an ImageFolder layout (train/<class>/..., test/<class>/...), the official
TinyImageNet layout, and the paper's mixed set built from several of them. They hold file lists;
DataLoader workers (or the decode cache, cskd.data.decode_cache) decode them. cskd.data.sets.load_bundle is
the entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cskd.data.bundle import DataBundle, Split
from cskd.data.catalog import DATASET_SPECS, folder_spec
from cskd.data.image_files import IMAGE_EXTENSIONS
from cskd.errors import UserError


def _class_folders(folder: Path) -> tuple[list[str], list[str], list[int]]:
    """ImageFolder layout: folder/<class>/**/<image>. Returns (classes, files, labels)."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    for name in classes:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 come back as lone surrogates
            raise UserError(f"class folder {os.fsencode(name)!r} in {folder} is not valid UTF-8; "
                            f"rename it (class names are shown and stored as text)") from None
    files, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, _, names in sorted(os.walk(folder / name)):
            for f in sorted(names):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, f))
                    labels.append(label)
    return classes, files, labels


def _no_empty_class(classes: list[str], labels: list[int], folder: Path) -> None:
    """A training class without images cannot be learned (and breaks the stratified splits)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise UserError(f"class folder {folder / empty[0]} holds no images ({len(empty)} such folder(s)); "
                        f"add images or remove the folder")


def _tinyimagenet_val(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """The official TinyImageNet layout: val/images/*.JPEG listed in val/val_annotations.txt."""
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for line in (folder / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            if parts[1] not in index:
                raise UserError(f"{folder / 'val_annotations.txt'} names class {parts[1]!r} that train/ lacks")
            files.append(str(folder / "images" / parts[0]))
            labels.append(index[parts[1]])
    return files, labels


def load_folder_bundle(name: str, folder: Path) -> DataBundle:
    """An ImageFolder data set: folder/train/<class>/... and folder/test/<class>/... (or val/)."""
    train_dir = folder / "train"
    if not train_dir.is_dir():
        raise UserError(f"data set {name!r}: expected training images in {train_dir}/<class>/; "
                        f"lay it out as train/ and test/ class folders or pass --data-root")
    classes, files, labels = _class_folders(train_dir)
    if not files:
        raise UserError(f"data set {name!r}: no images found under {train_dir}/<class>/")
    _no_empty_class(classes, labels, train_dir)
    if name == "tinyimagenet" and (folder / "val" / "val_annotations.txt").is_file() and not (folder / "test").is_dir():
        test_files, test_labels = _tinyimagenet_val(folder / "val", classes)
    else:
        test_dir = folder / "test" if (folder / "test").is_dir() else folder / "val"
        if not test_dir.is_dir():
            raise UserError(f"data set {name!r}: expected test images in {folder / 'test'}/<class>/")
        test_classes, test_files, test_labels = _class_folders(test_dir)
        if test_classes != classes:
            raise UserError(f"data set {name!r}: the class folders of {test_dir} differ from those of {train_dir}")
    if not test_files:
        raise UserError(f"data set {name!r}: the test split has no images (class folders under {folder} are empty); "
                        f"put the test images there, or run `cskd prepare {name}`")
    train = Split(torch.as_tensor(labels), torch.arange(len(labels)), files=files)
    test = Split(torch.as_tensor(test_labels, dtype=torch.long), torch.arange(len(test_labels)), files=test_files)
    spec = folder_spec(name)
    if name == "tinyimagenet":  # 32 px: RandomResizedCrop(32) on train, Resize(32) on test, as the authors
        return DataBundle(name, classes, 3, spec.image_size, *spec.stats, train, None, test, augment="rrc")
    return DataBundle(name, classes, 3, spec.image_size, *spec.stats, train, None, test, augment="rrc",
                      test_resize=256)


def load_mixed_bundle(roots: list[str], per_class: int, seed: int) -> DataBundle:
    """The paper's mixed data set (§3.3, Fig. 4): several ImageFolder sets, each one coarse group.

    Root g (with train/ and test/ class folders) contributes its classes as fine labels with
    coarse label g; `per_class` training images are drawn per fine class with `seed` (paper: 30,
    CUB-200 + Stanford Dogs + MIT67 = 387 fine labels, 3 coarse), and the original test sets are kept.
    Class names are "<root folder>/<class>".
    """
    if len(roots) < 2:
        raise UserError("--dataset mixed needs at least two --mixed-roots folders (each with train/ and test/)")
    if per_class <= 0:
        raise UserError(f"--mixed-per-class must be a positive integer; got {per_class}")
    rng = np.random.default_rng(seed)
    names, fine_to_coarse, coarse_names = [], [], []
    parts = {"train": ([], []), "test": ([], [])}
    for g, root in enumerate(roots):
        root_path = Path(root)
        sub = load_folder_bundle(root_path.name, root_path)
        offset = len(names)
        names += [f"{root_path.name}/{c}" for c in sub.class_names]
        fine_to_coarse += [g] * sub.num_classes
        coarse_names.append(root_path.name)
        labels = sub.train.labels.numpy()
        for c in range(sub.num_classes):
            rows = np.flatnonzero(labels == c)
            for r in np.sort(rng.choice(rows, size=min(per_class, len(rows)), replace=False)):
                parts["train"][0].append(sub.train.files[r])
                parts["train"][1].append(c + offset)
        parts["test"][0].extend(sub.test.files)
        parts["test"][1].extend((sub.test.labels + offset).tolist())
    train, test = (Split(torch.as_tensor(parts[k][1], dtype=torch.long), torch.arange(len(parts[k][1])),
                         files=parts[k][0]) for k in ("train", "test"))
    spec = DATASET_SPECS["mixed"]
    return DataBundle("mixed", names, 3, spec.image_size, *spec.stats, train, None, test, augment="rrc",
                      test_resize=256, fine_to_coarse=fine_to_coarse, coarse_names=coarse_names)
