"""The paper's five data sets as their publishers distribute them, and how each becomes `train/` and `test/`.

For every data set: the *parts* `cskd prepare` needs (each the publisher's archive, the folder it was extracted
to, or a plain file) and a *plan*: the (split, class folder, source image) of every image,
read from the publisher's own split files. Class folders keep the publisher's names (CUB's
`001.Black_footed_Albatross`, Dogs' `n02085620-Chihuahua`, MIT67's `airport_inside`, WordNet ids for
TinyImageNet and ImageNet), so the class order `cskd train` derives from sorted folder names is the same
everywhere. ImageNet is built by torchvision's own parsers of its three archives instead of a plan. The official
counts every copy is checked against, and which sets are prepared at all: cskd.data.catalog (tests/test_specs.py
checks that SETS names exactly the specs marked `prepared`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cskd.data.image_files import IMAGE_EXTENSIONS
from cskd.data.prepare.archives import ARCHIVE_ERRORS, extract, progress_bar, safe_relative
from cskd.errors import UserError, short_reason

# MD5 of the three ImageNet archives, as torchvision.datasets.imagenet.ARCHIVE_META records them: checked in the
# same read as the sha256, so torchvision need not read 150 GB a second time (tests replace this table).
IMAGENET_MD5 = {
    "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf",
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
}


def _is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(*prefixes: str, also: tuple[str, ...] = ()) -> Callable[[str], bool]:
    """keep(): the named metadata files, and images below the prefixes."""
    return lambda rel: rel in also or (rel.startswith(prefixes) and _is_image(rel))


@dataclass(frozen=True)
class Part:
    """One thing a data set needs. `archive`: the publisher's file that holds it (None: a plain file named
    `marker`); `marker`: the path, below one of `tops` (the archive's top folders), whose presence identifies
    the part in an archive or an extracted folder (None: only the archive is accepted); `keep`: which members
    below a top are extracted."""

    key: str
    what: str
    archive: str | None
    marker: str | None
    tops: tuple[str, ...] = ("",)
    keep: Callable[[str], bool] = lambda rel: False
    single: bool = False  # the part is the one file `marker` (a split list), given alone or inside a folder


@dataclass(frozen=True)
class Found:
    """Where a part's files are once its archive is extracted: `root` (the archive's top folder inside the
    temporary folder, or the user's folder); `label` names the source in messages, `prefix` is root's path inside
    it; `staged`: root is ours, so its files may be moved instead of linked or copied."""

    root: Path
    label: str
    prefix: str = ""
    staged: bool = False

    def path(self, rel: str) -> Path:
        """The file `rel` below root; a UserError naming it when it is missing."""
        p = self.root / rel
        if not p.is_file():
            raise UserError(f"{self.label} has no {self.prefix}{rel}; it is incomplete or not the official file")
        return p

    def lines(self, rel: str) -> list[str]:
        """The non-blank lines of the text file `rel`, stripped (Windows line ends too)."""
        try:
            text = self.path(rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{self.prefix}{rel} in {self.label} is not a text file; not the official file") from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise UserError(f"{self.prefix}{rel} in {self.label} is empty; not the official file")
        return lines


@dataclass
class Plan:
    """Every image of a data set: `items` (split, class folder, source file, source is ours to move), the
    `classes` (every class gets a folder in both splits), and the listed images that do not exist
    (`missing`: (split file, source label, path))."""

    classes: list[str]
    items: list[tuple[str, str, Path, bool]] = field(default_factory=list)
    missing: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, split: str, cls: str, found: Found, rel: str, listing: str) -> None:
        rel = safe_relative(rel, f"{listing} in {found.label}")
        path = found.root / rel
        if path.is_file():
            self.items.append((split, cls, path, found.staged))
        else:
            self.missing.append((listing, found.label, found.prefix + rel))


def _class_of(entry: str, listing: str, known: set[str] | None = None) -> str:
    """The class folder of a split-file entry "<class>/<file>"; a UserError when the entry has another shape."""
    parts = entry.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or (known is not None and parts[0] not in known):
        raise UserError(f"{listing} lists {entry!r}, not a '<class>/<file>' of this data set; not the official file")
    return parts[0]


def _id_table(found: Found, rel: str) -> dict[str, str]:
    """CUB's "<id> <value>" files as {id: value}."""
    table = {}
    for n, line in enumerate(found.lines(rel), 1):
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or fields[0] in table:
            raise UserError(f"line {n} of {found.prefix}{rel} in {found.label} is not '<id> <value>'; "
                            f"not CUB-200-2011's file")
        table[fields[0]] = fields[1]
    return table


def plan_cub(found: dict[str, Found]) -> Plan:
    """CUB-200-2011: images.txt (id, path), train_test_split.txt (id, 1 = train / 0 = test), classes.txt."""
    f = found["cub"]
    paths, flags = _id_table(f, "images.txt"), _id_table(f, "train_test_split.txt")
    plan = Plan(sorted(set(_id_table(f, "classes.txt").values())))
    if set(paths) != set(flags) or set(flags.values()) - {"0", "1"}:
        raise UserError(f"{f.prefix}images.txt and {f.prefix}train_test_split.txt in {f.label} do not list the same "
                        f"images with flags 0/1; not the official files")
    listing, known = f"{f.prefix}images.txt", set(plan.classes)
    for image_id, rel in paths.items():
        cls = _class_of(rel, listing, known)
        plan.add("train" if flags[image_id] == "1" else "test", cls, f, f"images/{rel}", listing)
    return plan


def _mat_file_list(found: Found, rel: str) -> tuple[list[str], list[int] | None]:
    """(file_list, labels) of a Stanford Dogs list: MATLAB cells of one string each, and 1-based labels."""
    from scipy.io import loadmat

    path = found.path(rel)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises many types for a file that is not MATLAB's; all mean a wrong file
        raise UserError(f"{found.prefix}{rel} in {found.label} is not a MATLAB file ({short_reason(e)})") from None
    if "file_list" not in mat:
        raise UserError(f"{found.prefix}{rel} in {found.label} has no file_list; not a Stanford Dogs list")
    entries = []
    for cell in np.asarray(mat["file_list"], dtype=object).ravel():
        value = np.asarray(cell).ravel()
        if value.size != 1 or not isinstance(value[0], str):
            raise UserError(f"{found.prefix}{rel} in {found.label}: file_list holds {cell!r}, not a file name")
        entries.append(str(value[0]))
    labels = mat.get("labels")
    labels = None if labels is None else [int(v) for v in np.asarray(labels).ravel()]
    if labels is not None and len(labels) != len(entries):
        raise UserError(f"{found.prefix}{rel} in {found.label}: file_list and labels differ in length")
    return entries, labels


def plan_dogs(found: dict[str, Found]) -> Plan:
    """Stanford Dogs: file_list of train_list.mat / test_list.mat, paths below Images/; the class folder is the
    entry's folder (`n02085620-Chihuahua`), and the lists' labels must agree with it."""
    lists = {split: _mat_file_list(found[f"{split}_list"], f"{split}_list.mat") for split in ("train", "test")}
    label_of: dict[str, int] = {}
    rows = []
    for split, (entries, labels) in lists.items():
        listing = f"{split}_list.mat"
        for i, entry in enumerate(entries):
            cls = _class_of(entry, listing)
            if labels is not None and label_of.setdefault(cls, labels[i]) != labels[i]:
                raise UserError(f"{listing}: class {cls!r} carries two labels; not Stanford Dogs' lists")
            rows.append((split, cls, entry, listing))
    plan = Plan(sorted({cls for _, cls, _, _ in rows}))
    for split, cls, entry, listing in rows:
        plan.add(split, cls, found["images"], f"Images/{entry}", listing)
    return plan


def plan_mit67(found: dict[str, Found]) -> Plan:
    """MIT67: TrainImages.txt / TestImages.txt list "<class>/<file>" below Images/."""
    rows = []
    for split, key, listing in (("train", "train_list", "TrainImages.txt"), ("test", "test_list", "TestImages.txt")):
        rows += [(split, _class_of(entry, listing), entry, listing) for entry in found[key].lines(listing)]
    plan = Plan(sorted({cls for _, cls, _, _ in rows}))
    for split, cls, entry, listing in rows:
        plan.add(split, cls, found["images"], f"Images/{entry}", listing)
    return plan


def plan_tinyimagenet(found: dict[str, Found]) -> Plan:
    """TinyImageNet: wnids.txt names the classes; train/<wnid>/images/ is the training set as is, and the labelled
    val/ (val/val_annotations.txt: file, wnid, box, tab-separated) becomes the test set (test/ has no labels)."""
    f = found["tiny"]
    wnids = f.lines("wnids.txt")
    plan = Plan(sorted(set(wnids)))
    for wnid in plan.classes:
        folder = f.root / "train" / safe_relative(wnid, f"{f.prefix}wnids.txt in {f.label}") / "images"
        names = sorted(n for n in os.listdir(folder) if _is_image(n) and not n.startswith(".")) \
            if folder.is_dir() else []  # hidden files: another system's metadata (macOS "._x.JPEG"), not images
        if not names:
            plan.missing.append((f"{f.prefix}wnids.txt", f.label, f"{f.prefix}train/{wnid}/images/"))
        for name in names:
            plan.add("train", wnid, f, f"train/{wnid}/images/{name}", f"{f.prefix}wnids.txt")
    listing, known = f"{f.prefix}val/val_annotations.txt", set(plan.classes)
    for n, line in enumerate(f.lines("val/val_annotations.txt"), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in known:
            raise UserError(f"line {n} of {listing} in {f.label} is not '<file>\\t<wnid of wnids.txt>...'; "
                            f"not the official file")
        plan.add("test", fields[1], f, f"val/images/{fields[0]}", listing)
    return plan


@dataclass(frozen=True)
class DataSet:
    """A data set `cskd prepare` knows: its parts and its plan (None: built by build_imagenet)."""

    name: str
    title: str
    parts: tuple[Part, ...]
    plan: Callable[[dict[str, Found]], Plan] | None


_DOGS_LISTS = ("train_list.mat", "test_list.mat")
SETS = {s.name: s for s in (
    DataSet("cub200", "CUB-200-2011", (
        Part("cub", "CUB_200_2011.tgz (or the folder it was extracted to)", "CUB_200_2011.tgz", "images",
             ("CUB_200_2011",), _images_under("images/", also=("images.txt", "train_test_split.txt", "classes.txt"))),
    ), plan_cub),
    DataSet("dogs", "Stanford Dogs", (
        Part("images", "images.tar (or the folder holding its Images/)", "images.tar", "Images",
             keep=_images_under("Images/")),
        Part("train_list", "lists.tar (or its train_list.mat and test_list.mat)", "lists.tar", "train_list.mat",
             keep=lambda rel: rel in _DOGS_LISTS, single=True),
        Part("test_list", "lists.tar (or its train_list.mat and test_list.mat)", "lists.tar", "test_list.mat",
             keep=lambda rel: rel in _DOGS_LISTS, single=True),
    ), plan_dogs),
    DataSet("mit67", "MIT Indoor 67", (
        Part("images", "indoorCVPR_09.tar (or the folder holding its Images/)", "indoorCVPR_09.tar", "Images",
             ("", "indoorCVPR_09"), _images_under("Images/")),
        Part("train_list", "TrainImages.txt", None, "TrainImages.txt", single=True),
        Part("test_list", "TestImages.txt", None, "TestImages.txt", single=True),
    ), plan_mit67),
    DataSet("tinyimagenet", "Tiny ImageNet", (
        Part("tiny", "tiny-imagenet-200.zip (or the folder it was extracted to)", "tiny-imagenet-200.zip",
             "wnids.txt", ("tiny-imagenet-200",),
             _images_under("train/", "val/images/", also=("wnids.txt", "val/val_annotations.txt"))),
    ), plan_tinyimagenet),
    DataSet("imagenet", "ImageNet (ILSVRC2012)", tuple(
        Part(key, name, name, None) for key, name in (("devkit", "ILSVRC2012_devkit_t12.tar.gz"),
                                                      ("train", "ILSVRC2012_img_train.tar"),
                                                      ("val", "ILSVRC2012_img_val.tar"))
    ), None),
)}


@contextmanager
def _replaced(module, name: str, value) -> Iterator[None]:
    """module.name = value for the duration (AttributeError at once if torchvision renamed it)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


class _Extractor:
    """Stands in for torchvision's extract_archive inside its ImageNet parsers: the same signature, but our safe
    extraction (torchvision's extracts tar members unfiltered) and progress bars: one per official archive, and
    one counting the class archives inside the training archive."""

    def __init__(self, official: dict[Path, str], progress: bool | None):
        self.official, self.progress = official, progress
        self.outer: str = ""
        self.classes_bar = None

    def __call__(self, from_path, to_path=None, remove_finished: bool = False):
        path = Path(from_path)
        to = Path(to_path) if to_path is not None else path.parent
        if path.resolve() in self.official:  # the devkit, training or validation archive itself
            self.close()  # the class archives of the training archive are done
            self.outer = self.official[path.resolve()]
            extract(path, to, lambda rel: True, progress=self.progress, label=self.outer)
        else:  # a class archive (n01440764.tar) unpacked from the training archive
            label = f"{path.name} inside {self.outer}"  # torchvision unpacked it into our temporary folder
            if not path.name.endswith(".tar"):
                raise UserError(f"{self.outer} holds {path.name}, not a class archive; not the official file")
            if self.classes_bar is None:
                count = sum(1 for n in os.listdir(path.parent) if n.endswith(".tar"))
                self.classes_bar = progress_bar(count, f"{Path(self.outer).name}: class archives", self.progress,
                                                unit="class")
            extract(path, to, _is_image, progress=False, label=label)
            self.classes_bar.update()
        if remove_finished:
            os.remove(path)
        return to_path

    def close(self) -> None:
        if self.classes_bar is not None:
            self.classes_bar.close()
            self.classes_bar = None


def build_imagenet(archives: dict[str, Path], md5: dict[str, str], tmp: Path, progress: bool | None) -> list[str]:
    """ImageNet into tmp/train/<wnid>/ and tmp/test/<wnid>/ by torchvision's parse_devkit_archive,
    parse_train_archive and parse_val_archive (the validation images become the test split); returns the wnids
    of the devkit's 1,000 leaf classes. `archives`: part key -> file; `md5`: part key -> the file's MD5."""
    for key, path in archives.items():
        expected = IMAGENET_MD5.get(path.name)
        if md5[key] != expected:
            raise UserError(f"{path} is not the official {path.name} (MD5 {md5[key]}, expected {expected}); "
                            f"a damaged or partial download?")
    from torchvision.datasets import imagenet as tv

    # torchvision joins `file` onto the output folder: absolute paths keep it pointing at the user's archives
    absolute = {key: str(path.resolve()) for key, path in archives.items()}
    extractor = _Extractor({p.resolve(): str(p) for p in archives.values()}, progress)
    try:
        # The MD5s were checked above in the sha256 pass: skip torchvision's second read of every archive.
        with _replaced(tv, "extract_archive", extractor), _replaced(tv, "_verify_archive", lambda *a, **k: None):
            devkit = archives["devkit"]
            try:
                tv.parse_devkit_archive(str(tmp), file=absolute["devkit"])
                wnid_to_classes, val_wnids = tv.load_meta_file(str(tmp))
            except UserError:
                raise
            except (OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError) + ARCHIVE_ERRORS as e:
                raise UserError(f"{devkit} is not the ILSVRC2012 devkit ({short_reason(e)})") from None
            tv.parse_train_archive(str(tmp), file=absolute["train"], folder="train")
            tv.parse_val_archive(str(tmp), file=absolute["val"], wnids=val_wnids, folder="test")
        # torchvision pairs sorted images with the ground truth by zip(): images beyond it stay unsorted
        extra = sorted(e.name for e in os.scandir(tmp / "test") if not e.is_dir())
        if extra:
            raise UserError(f"{archives['val']} holds more images than the devkit's ground truth (e.g. {extra[0]}); "
                            f"not the official pair of files")
    finally:
        extractor.close()
    (tmp / "meta.bin").unlink(missing_ok=True)  # torchvision's cache of the devkit; prepared.json is our record
    classes = sorted(wnid_to_classes)
    strays = sorted(set(os.listdir(tmp / "train")) - set(classes))
    if strays:
        raise UserError(f"{archives['train']} holds {strays[0]!r}, not a class of the devkit; not the official file")
    return classes
