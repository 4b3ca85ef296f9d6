"""`cskd prepare`: miniature archives in each publisher's format become the train/ and test/ folders with
exactly the split files' membership; damaged, foreign or missing files give one line and leave nothing behind.

The miniatures use the real archive names, top folders, file names and split-file formats (CUB's id tables,
Dogs' MATLAB cell arrays written with scipy.io.savemat, MIT67's text lists with Windows line ends in one of
them, TinyImageNet's tab-separated val_annotations.txt, ImageNet's devkit meta.mat and nested class archives)
with a few 8x8 images; the official counts are replaced by the miniatures' own (`official` fixture).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

import cskd
from cskd.data import catalog
from cskd.data.prepare import command as prep
from cskd.data.prepare import sets as sets
from cskd.errors import UserError

# --- miniature archives ---------------------------------------------------------------------------------------


def jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (i * 37 % 256, i * 91 % 256, 128)).save(buf, "JPEG")
    return buf.getvalue()


def write_tar(path: Path | io.BytesIO, files: dict[str, bytes], mode: str = "w") -> Path:
    """A tar like the publishers': a directory member before the files of each folder."""
    where = {"fileobj": path} if isinstance(path, io.BytesIO) else {"name": path}
    with tarfile.open(mode=mode, **where) as tar:
        dirs = set()
        for name, data in files.items():
            folder = name.rpartition("/")[0]
            if folder and folder not in dirs:
                dirs.add(folder)
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def text(lines: list[str], end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode()


# CUB-200-2011: per class, the is_training flags of its images (so membership is not a simple pattern).
CUB = {"001.Black_footed_Albatross": [1, 0, 1, 1], "002.Laysan_Albatross": [0, 1, 1, 0],
       "003.Sooty_Albatross": [1, 1, 0, 0, 1]}


def cub_files(drop: tuple[str, ...] = ()) -> tuple[dict[str, bytes], set]:
    files = {"attributes.txt": b"1 has_bill_shape::curved_(up_or_down)\n", "CUB_200_2011/README": b"CUB-200-2011\n"}
    images, flags, labels, expected = [], [], [], set()
    for c, (cls, cls_flags) in enumerate(CUB.items(), 1):
        for j, flag in enumerate(cls_flags):
            image_id = len(images) + 1
            name = f"{cls.split('.')[1]}_{j:04d}_{100 + image_id}.jpg"
            images.append(f"{image_id} {cls}/{name}")
            flags.append(f"{image_id} {flag}")
            labels.append(f"{image_id} {c}")
            files[f"CUB_200_2011/images/{cls}/{name}"] = jpeg(image_id)
            expected.add(("train" if flag else "test", cls, name))
    files.update({"CUB_200_2011/images.txt": text(images), "CUB_200_2011/train_test_split.txt": text(flags),
                  "CUB_200_2011/classes.txt": text([f"{i} {c}" for i, c in enumerate(CUB, 1)]),
                  "CUB_200_2011/image_class_labels.txt": text(labels),
                  "CUB_200_2011/parts/parts.txt": b"1 back\n"})
    return {k: v for k, v in files.items() if not k.endswith(drop)}, expected


def cub_archive(folder: Path, drop: tuple[str, ...] = ()) -> tuple[Path, set]:
    files, expected = cub_files(drop)
    return write_tar(folder / "CUB_200_2011.tgz", files, "w:gz"), expected


DOGS = {"n02085620-Chihuahua": (3, 2), "n02085782-Japanese_spaniel": (2, 1), "n02085936-Maltese_dog": (3, 1)}


def mat_list(entries: list[str], labels: list[int]) -> bytes:
    """A Stanford Dogs list as the official .mat: file_list/annotation_list cells of one string, labels."""
    def cells(values):
        out = np.empty((len(values), 1), dtype=object)
        for i, v in enumerate(values):
            out[i, 0] = np.array([v])
        return out
    buf = io.BytesIO()
    sio.savemat(buf, {"file_list": cells(entries), "annotation_list": cells([e[:-4] for e in entries]),
                      "labels": np.array(labels, dtype=float).reshape(-1, 1)})
    return buf.getvalue()


def dogs_archives(folder: Path) -> tuple[Path, Path, set]:
    images, lists, expected = {}, {"train": ([], []), "test": ([], [])}, set()
    for label, (cls, (n_train, n_test)) in enumerate(DOGS.items(), 1):
        wnid = cls.split("-")[0]
        for j in range(n_train + n_test + 1):  # one image more than the lists name: never prepared
            name = f"{wnid}_{1000 + j}.jpg"
            images[f"Images/{cls}/{name}"] = jpeg(label * 10 + j)
            if j < n_train + n_test:
                split = "train" if j < n_train else "test"
                lists[split][0].append(f"{cls}/{name}")
                lists[split][1].append(label)
                expected.add((split, cls, name))
    everything = lists["train"][0] + lists["test"][0]
    mats = {f"{split}_list.mat": mat_list(*lists[split]) for split in ("train", "test")}
    mats["file_list.mat"] = mat_list(everything, lists["train"][1] + lists["test"][1])
    return (write_tar(folder / "images.tar", images), write_tar(folder / "lists.tar", mats), expected)


MIT = {"airport_inside": ["airport_inside_0001.jpg", "airport_inside_0002.jpg", "gate 3.jpg"],
       "bowling": ["bowling_04_22_altavista.jpg", "bowling_0012.jpg"], "kitchen": ["int474.jpg", "cdmc1059.jpg"]}


def mit67_files(folder: Path) -> tuple[Path, Path, Path, set]:
    images, train, test, expected = {}, [], [], set()
    for i, (cls, names) in enumerate(MIT.items()):
        for j, name in enumerate(names + ["unlisted.jpg"]):
            images[f"Images/{cls}/{name}"] = jpeg(i * 10 + j)
        train += [f"{cls}/{n}" for n in names[:-1]]
        test.append(f"{cls}/{names[-1]}")
        expected |= {("train", cls, n) for n in names[:-1]} | {("test", cls, names[-1])}
    (folder / "TrainImages.txt").write_bytes(text(train))
    (folder / "TestImages.txt").write_bytes(text(test, "\r\n"))  # the official lists may come with CRLF
    tar = write_tar(folder / "indoorCVPR_09.tar", images)
    return tar, folder / "TrainImages.txt", folder / "TestImages.txt", expected


TINY = ["n01443537", "n01629819", "n01641577"]


def tiny_files(drop: tuple[str, ...] = ()) -> tuple[dict[str, bytes], set]:
    top, files, expected, ann = "tiny-imagenet-200/", {}, set(), []
    files[top + "wnids.txt"] = text(TINY)
    files[top + "words.txt"] = text([f"{w}\tsomething" for w in TINY])
    for i, wnid in enumerate(TINY):
        for j in range(i + 2):
            files[f"{top}train/{wnid}/images/{wnid}_{j}.JPEG"] = jpeg(i * 10 + j)
            expected.add(("train", wnid, f"{wnid}_{j}.JPEG"))
        files[f"{top}train/{wnid}/{wnid}_boxes.txt"] = text([f"{wnid}_0.JPEG\t0\t0\t63\t63"])
    for k, wnid in enumerate([TINY[1], TINY[0], TINY[2], TINY[1]]):
        files[f"{top}val/images/val_{k}.JPEG"] = jpeg(50 + k)
        ann.append(f"val_{k}.JPEG\t{wnid}\t0\t32\t44\t62")
        expected.add(("test", wnid, f"val_{k}.JPEG"))
    files[top + "val/val_annotations.txt"] = text(ann)
    files[top + "test/images/test_0.JPEG"] = jpeg(99)
    return {k: v for k, v in files.items() if not k.endswith(drop)}, expected


def counts_of(expected: set) -> dict[str, int]:
    return {"train": sum(1 for e in expected if e[0] == "train"), "test": sum(1 for e in expected if e[0] == "test"),
            "classes": len({e[1] for e in expected})}


@pytest.fixture(autouse=True)
def official(monkeypatch):
    """The miniatures' counts in place of the official ones."""
    expected = {"cub200": cub_files()[1], "tinyimagenet": tiny_files()[1],
                "dogs": {("train", c, i) for c, (n, _) in DOGS.items() for i in range(n)}
                | {("test", c, i) for c, (_, n) in DOGS.items() for i in range(n)},
                "mit67": {("train", c, n) for c, names in MIT.items() for n in names[:-1]}
                | {("test", c, names[-1]) for c, names in MIT.items()}}
    for name, exp in expected.items():
        monkeypatch.setitem(catalog.OFFICIAL, name, counts_of(exp))
    monkeypatch.setitem(catalog.OFFICIAL, "imagenet", {"train": 6, "test": 4, "classes": 3})


# --- running it -----------------------------------------------------------------------------------------------


def run(*argv) -> int:
    parser = argparse.ArgumentParser()
    prep.add_arguments(parser)
    return prep.cmd_prepare(parser.parse_args([str(a) for a in argv] + ["--no-progress"]))


def fails(*argv) -> str:
    """The one-line UserError of a prepare that must fail."""
    with pytest.raises(UserError) as e:
        run(*argv)
    assert "\n" not in str(e.value)
    return str(e.value)


def listing(folder: Path) -> set:
    return {(split, c.name, f.name) for split in ("train", "test") for c in (folder / split).iterdir()
            for f in c.iterdir()}


def assert_nothing_left(root: Path, name: str) -> None:
    assert not (root / name).exists()
    assert not list(root.glob(f".{name}.prepare-*"))


# --- each data set --------------------------------------------------------------------------------------------


def test_cub_from_its_archive(tmp_path, capsys):
    archive, expected = cub_archive(tmp_path)
    root = tmp_path / "data"
    assert run("cub200", "--from", archive, "--data-root", root) == 0
    out = capsys.readouterr().out
    assert "train 8 and test 5 images, 3 classes (the official counts)" in out
    assert "files: copies, from CUB_200_2011.tgz" in out
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "cub200").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert listing(root / "cub200") == expected
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["cub200"]
    assert sorted(p.name for p in (root / "cub200").iterdir()) == ["prepared.json", "test", "train"]
    rec = prep.read_prepared(root / "cub200")
    assert rec == json.loads((root / "cub200" / "prepared.json").read_text())
    assert rec["counts"] == {"train": 8, "test": 5} and rec["classes"] == 3 and rec["partial"] is False
    assert rec["cskd_version"] == cskd.__version__ and rec["files"] == "copies"
    assert rec["sources"] == [{"name": "CUB_200_2011.tgz", "kind": "archive", "size": archive.stat().st_size,
                               "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}]
    # the prepared images are the archive's bytes
    img = root / "cub200/train/001.Black_footed_Albatross/Black_footed_Albatross_0000_101.jpg"
    assert img.read_bytes() == jpeg(1)


def test_cskd_data_reads_the_result(tmp_path):
    from cskd.data.sets import load_bundle

    archive, expected = cub_archive(tmp_path)
    run("cub200", "--from", archive, "--data-root", tmp_path / "data")
    bundle = load_bundle("cub200", data_root=str(tmp_path / "data"), val_fraction=0)
    assert bundle.class_names == sorted(CUB) and bundle.num_classes == 3
    assert (len(bundle.train), len(bundle.test)) == (8, 5)
    names = [bundle.class_names[i] for i in bundle.test.labels.tolist()]
    assert {("test", c, Path(f).name) for c, f in zip(names, bundle.test.files)} == \
        {e for e in expected if e[0] == "test"}


@pytest.mark.parametrize("which", ["parent", "top"])
def test_cub_from_an_extracted_folder_uses_hard_links(tmp_path, capsys, which):
    archive, expected = cub_archive(tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    source = tmp_path / "extracted" / ("CUB_200_2011" if which == "top" else "")
    run("cub200", "--from", source, "--data-root", tmp_path / "data")
    assert "files: hard links, from" in capsys.readouterr().out
    assert listing(tmp_path / "data/cub200") == expected
    cls, name = "002.Laysan_Albatross", "Laysan_Albatross_0000_105.jpg"
    assert os.path.samefile(tmp_path / "data/cub200/test" / cls / name,
                            tmp_path / "extracted/CUB_200_2011/images" / cls / name)
    src = prep.read_prepared(tmp_path / "data/cub200")["sources"]
    assert [(s["name"], s["kind"]) for s in src] == [("CUB_200_2011", "folder")]  # where its files are


def test_hard_links_fall_back_to_copies(tmp_path, capsys, monkeypatch):
    archive, expected = cub_archive(tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(prep.os, "link", no_links)
    run("cub200", "--from", tmp_path / "extracted", "--data-root", tmp_path / "data")
    assert "files: copies, from CUB_200_2011" in capsys.readouterr().out
    assert listing(tmp_path / "data/cub200") == expected


def test_dogs_from_its_two_archives(tmp_path):
    images, lists, expected = dogs_archives(tmp_path)
    run("dogs", "--from", images, lists, "--data-root", tmp_path / "data")
    assert listing(tmp_path / "data/dogs") == expected
    assert sorted(os.listdir(tmp_path / "data/dogs/train")) == sorted(DOGS)
    assert [s["name"] for s in prep.read_prepared(tmp_path / "data/dogs")["sources"]] == ["images.tar", "lists.tar"]


def test_dogs_from_a_download_folder_and_from_extracted_files(tmp_path):
    images, lists, expected = dogs_archives(tmp_path)
    run("dogs", "--from", tmp_path, "--data-root", tmp_path / "a")  # the folder holding both archives
    assert listing(tmp_path / "a/dogs") == expected
    for archive in (images, lists):
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / "x", filter="data")
    run("dogs", "--from", tmp_path / "x", "--data-root", tmp_path / "b")  # Images/ and the .mat lists together
    assert listing(tmp_path / "b/dogs") == expected
    run("dogs", "--from", tmp_path / "x", tmp_path / "x/train_list.mat", tmp_path / "x/test_list.mat",
        "--data-root", tmp_path / "c")  # the lists named once more: the same files, accepted
    assert listing(tmp_path / "c/dogs") == expected


def test_mit67_from_its_archive_and_split_lists(tmp_path):
    tar, train, test, expected = mit67_files(tmp_path)
    run("mit67", "--from", tar, train, test, "--data-root", tmp_path / "data")
    assert listing(tmp_path / "data/mit67") == expected  # "gate 3.jpg": names with spaces survive
    assert {s["kind"] for s in prep.read_prepared(tmp_path / "data/mit67")["sources"]} == {"archive", "file"}


def test_mit67_archive_with_a_top_folder(tmp_path):
    tar, train, test, expected = mit67_files(tmp_path)
    with tarfile.open(tar) as t:
        files = {f"indoorCVPR_09/{m.name}": t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    write_tar(tar, files)
    run("mit67", "--from", tar, train, test, "--data-root", tmp_path / "data")
    assert listing(tmp_path / "data/mit67") == expected


def test_tinyimagenet_from_its_zip(tmp_path):
    files, expected = tiny_files()
    archive = write_zip(tmp_path / "tiny-imagenet-200.zip", files)
    run("tinyimagenet", "--from", archive, "--data-root", tmp_path / "data")
    assert listing(tmp_path / "data/tinyimagenet") == expected  # labelled val/ became test/; test/ dropped
    assert not (tmp_path / "data/tinyimagenet/val").exists()
    from cskd.data.sets import load_bundle

    bundle = load_bundle("tinyimagenet", data_root=str(tmp_path / "data"), val_fraction=0)
    assert bundle.class_names == TINY and (len(bundle.train), len(bundle.test)) == (9, 4)


def imagenet_archives(folder: Path) -> dict[str, Path]:
    """The three ImageNet archives in miniature: devkit meta.mat (three leaf synsets and their parent) and
    validation ground truth, a training tar of per-class tars, a flat validation tar."""
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.array([(1, "n01440764", "tench, Tinca tinca", "a fish", 0, np.zeros(0), 0, 2),
                        (2, "n01443537", "goldfish, Carassius auratus", "a fish", 0, np.zeros(0), 0, 2),
                        (3, "n01484850", "great white shark", "a shark", 0, np.zeros(0), 0, 2),
                        (4, "n00000001", "fish", "a parent", 3, np.array([1, 2, 3]), 1, 0)],
                       dtype=[(f, "O") for f in fields]).reshape(-1, 1)
    meta = io.BytesIO()
    sio.savemat(meta, {"synsets": synsets})
    kit = "ILSVRC2012_devkit_t12/data/"
    devkit = write_tar(folder / "ILSVRC2012_devkit_t12.tar.gz", {
        kit + "meta.mat": meta.getvalue(), kit + "ILSVRC2012_validation_ground_truth.txt": text(["2", "1", "3", "2"]),
        "ILSVRC2012_devkit_t12/COPYING": b"devkit\n"}, "w:gz")
    inner = {}
    for i, wnid in enumerate(("n01440764", "n01443537", "n01484850")):
        buf = io.BytesIO()
        write_tar(buf, {f"{wnid}_{j}.JPEG": jpeg(i * 10 + j) for j in range(2)})
        inner[f"{wnid}.tar"] = buf.getvalue()
    train = write_tar(folder / "ILSVRC2012_img_train.tar", inner)
    val = write_tar(folder / "ILSVRC2012_img_val.tar",
                    {f"ILSVRC2012_val_{k:08d}.JPEG": jpeg(40 + k) for k in range(1, 5)})
    return {"devkit": devkit, "train": train, "val": val}


@pytest.fixture
def imagenet(tmp_path, monkeypatch):
    archives = imagenet_archives(tmp_path)
    monkeypatch.setattr(sets, "IMAGENET_MD5", {p.name: hashlib.md5(p.read_bytes()).hexdigest()
                                               for p in archives.values()})
    return archives


@pytest.mark.slow  # imports torchvision
def test_imagenet_through_torchvisions_parsers(tmp_path, imagenet, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, which torchvision would join onto its output folder
    run("imagenet", "--from", *(p.name for p in imagenet.values()), "--data-root", "data")
    assert "train 6 and test 4 images, 3 classes" in capsys.readouterr().out
    got = listing(tmp_path / "data/imagenet")
    assert {e for e in got if e[0] == "test"} == {("test", "n01443537", "ILSVRC2012_val_00000001.JPEG"),
                                                   ("test", "n01440764", "ILSVRC2012_val_00000002.JPEG"),
                                                   ("test", "n01484850", "ILSVRC2012_val_00000003.JPEG"),
                                                   ("test", "n01443537", "ILSVRC2012_val_00000004.JPEG")}
    assert ("train", "n01484850", "n01484850_1.JPEG") in got and len(got) == 10
    assert sorted(os.listdir(tmp_path / "data/imagenet")) == ["prepared.json", "test", "train"]
    assert not list((tmp_path / "data/imagenet/train").glob("*.tar"))


@pytest.mark.slow  # imports torchvision
def test_imagenet_wrong_or_damaged_archives(tmp_path, imagenet, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setitem(sets.IMAGENET_MD5, "ILSVRC2012_img_val.tar", "0" * 32)
    assert "is not the official ILSVRC2012_img_val.tar (MD5" in fails("imagenet", "--from", tmp_path, "--data-root",
                                                                       root)
    assert_nothing_left(root, "imagenet")
    # a damaged class archive inside the training archive (its MD5 recorded as if official)
    with tarfile.open(imagenet["train"]) as t:
        inner = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    inner["n01443537.tar"] = inner["n01443537.tar"][:700]
    write_tar(imagenet["train"], inner)
    monkeypatch.setattr(sets, "IMAGENET_MD5", {p.name: hashlib.md5(p.read_bytes()).hexdigest()
                                               for p in imagenet.values()})
    msg = fails("imagenet", "--from", tmp_path, "--data-root", root)
    assert f"n01443537.tar inside {imagenet['train']} is damaged" in msg
    assert_nothing_left(root, "imagenet")
    # a devkit without meta.mat
    write_tar(imagenet["devkit"], {"ILSVRC2012_devkit_t12/COPYING": b"devkit\n"}, "w:gz")
    monkeypatch.setitem(sets.IMAGENET_MD5, imagenet["devkit"].name, hashlib.md5(imagenet["devkit"].read_bytes())
                        .hexdigest())
    msg = fails("imagenet", "--from", tmp_path, "--data-root", root)
    assert f"{imagenet['devkit']} is not the ILSVRC2012 devkit" in msg
    assert_nothing_left(root, "imagenet")


# --- safe and resumable ---------------------------------------------------------------------------------------


def test_second_run_is_a_noop_without_reading_the_archive_again(tmp_path, capsys, monkeypatch):
    archive, _ = cub_archive(tmp_path)
    root = tmp_path / "data"
    run("cub200", "--from", archive, "--data-root", root)
    before = (root / "cub200/prepared.json").stat().st_mtime_ns
    capsys.readouterr()

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")
    monkeypatch.setattr(prep, "file_digests", no_hashing)
    monkeypatch.setattr(prep, "extract", no_hashing)
    assert run("cub200", "--from", archive, "--data-root", root) == 0
    assert "is already prepared from CUB_200_2011.tgz (train 8 and test 5 images, 3 classes); nothing to do" \
        in capsys.readouterr().out
    assert (root / "cub200/prepared.json").stat().st_mtime_ns == before


def test_other_sources_for_a_prepared_copy_are_refused(tmp_path):
    archive, _ = cub_archive(tmp_path)
    root = tmp_path / "data"
    run("cub200", "--from", archive, "--data-root", root)
    other, _ = cub_archive(tmp_path / "data", drop=("parts.txt",))
    assert "data/cub200 was prepared from other files (CUB_200_2011.tgz); delete it" in fails(
        "cub200", "--from", other, "--data-root", root)
    assert listing(root / "cub200")  # untouched


@pytest.mark.parametrize("stage", ["extract", "place"])
def test_an_interrupted_prepare_leaves_nothing(tmp_path, monkeypatch, stage):
    archive, expected = cub_archive(tmp_path)
    root = tmp_path / "data"
    real = getattr(prep, stage)

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(prep, stage, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("cub200", "--from", archive, "--data-root", root)
    assert_nothing_left(root, "cub200")
    monkeypatch.setattr(prep, stage, real)
    run("cub200", "--from", archive, "--data-root", root)
    assert listing(root / "cub200") == expected


def test_a_stale_temporary_folder_of_a_killed_prepare_is_removed(tmp_path, capsys):
    archive, expected = cub_archive(tmp_path)
    root = tmp_path / "data"
    stale = root / ".cub200.prepare-k1ll3d/train/001.Black_footed_Albatross"
    stale.mkdir(parents=True)
    (stale / "half.jpg").write_bytes(b"\xff\xd8")
    run("cub200", "--from", archive, "--data-root", root)
    assert "removed 1 stale temporary folder(s)" in capsys.readouterr().out
    assert not (root / ".cub200.prepare-k1ll3d").exists() and listing(root / "cub200") == expected


def test_a_prepare_already_running_is_not_disturbed(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    archive, _ = cub_archive(tmp_path)
    root = tmp_path / "data"
    live = root / ".cub200.prepare-alive"
    live.mkdir(parents=True)
    with open(root / ".cub200.prepare.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert "another cskd prepare of cub200 is running" in fails("cub200", "--from", archive, "--data-root", root)
    assert live.is_dir() and not (root / "cub200").exists()


def test_a_folder_not_written_by_prepare_is_never_touched(tmp_path):
    archive, _ = cub_archive(tmp_path)
    root = tmp_path / "data"
    mine = root / "cub200/train/my_class"
    mine.mkdir(parents=True)
    (mine / "a.jpg").write_bytes(b"mine")
    for record in (None, "{not json", json.dumps({"name": "cub200"})):
        if record is not None:
            (root / "cub200/prepared.json").write_text(record)
        msg = fails("cub200", "--from", archive, "--data-root", root)
        assert f"{root / 'cub200'} exists and was not written by cskd prepare" in msg
        assert (mine / "a.jpg").read_bytes() == b"mine"


def test_counts_are_checked_against_the_official_ones(tmp_path, monkeypatch, capsys):
    archive, _ = cub_archive(tmp_path)
    root = tmp_path / "data"
    monkeypatch.setitem(catalog.OFFICIAL, "cub200", {"train": 5994, "test": 5794, "classes": 200})
    msg = fails("cub200", "--from", archive, "--data-root", root)
    assert "cub200: the train split has 8 images, the official one 5,994; the test split has 5 images, the " \
           "official one 5,794; there are 3 classes, officially 200" in msg
    assert_nothing_left(root, "cub200")
    run("cub200", "--from", archive, "--data-root", root, "--allow-partial")
    assert "PARTIAL: the official split has train 5,994 and test 5,794 images, 200 classes" in capsys.readouterr().out
    rec = prep.read_prepared(root / "cub200")
    assert rec["partial"] is True and rec["allow_partial"] is True
    assert "is a partial copy" in fails("cub200", "--from", archive, "--data-root", root)
    assert run("cub200", "--from", archive, "--data-root", root, "--allow-partial") == 0


# --- damaged, foreign and missing files -----------------------------------------------------------------------


def truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name", ["cub200", "dogs", "tinyimagenet"])
def test_a_truncated_archive_gives_one_line(tmp_path, name):
    if name == "cub200":
        sources = [truncate(cub_archive(tmp_path)[0], 0.5)]
    elif name == "dogs":
        images, lists, _ = dogs_archives(tmp_path)
        with tarfile.open(images) as t:
            member = [m for m in t.getmembers() if m.isfile()][4]
        images.write_bytes(images.read_bytes()[:member.offset_data + member.size // 2])  # cut inside its data
        sources = [images, lists]
    else:
        sources = [truncate(write_zip(tmp_path / "tiny-imagenet-200.zip", tiny_files()[0]), 0.9)]
    msg = fails(name, "--from", *sources, "--data-root", tmp_path / "data")
    assert f"{sources[0]} is damaged or not the expected archive" in msg
    assert_nothing_left(tmp_path / "data", name)


def test_a_tar_cut_between_members_names_the_missing_images(tmp_path):
    images, lists, _ = dogs_archives(tmp_path)
    with tarfile.open(images) as t:
        members = t.getmembers()
    cut = members[len(members) // 2].offset  # the tar ends cleanly before this member's header
    images.write_bytes(images.read_bytes()[:cut])
    msg = fails("dogs", "--from", images, lists, "--data-root", tmp_path / "data")
    assert "image(s) that " in msg and f"lists are missing from {images}, e.g. Images/n0208" in msg
    assert_nothing_left(tmp_path / "data", "dogs")
    run("dogs", "--from", images, lists, "--data-root", tmp_path / "data", "--allow-partial")
    assert prep.read_prepared(tmp_path / "data/dogs")["partial"] is True


@pytest.mark.parametrize("name,drop,expected", [
    ("cub200", "train_test_split.txt", "CUB_200_2011.tgz has no CUB_200_2011/train_test_split.txt"),
    ("cub200", "images.txt", "CUB_200_2011.tgz has no CUB_200_2011/images.txt"),
    ("tinyimagenet", "val_annotations.txt", "tiny-imagenet-200.zip has no tiny-imagenet-200/val/val_annotations.txt"),
    ("mit67", "TestImages.txt", "mit67 needs TestImages.txt as well; add it to --from"),
    ("dogs", "lists.tar", "dogs needs lists.tar (or its train_list.mat and test_list.mat) as well; add it"),
    ("dogs", "test_list.mat", "lists.tar has no test_list.mat; it is not the official lists.tar"),
])
def test_a_missing_split_file_gives_one_line(tmp_path, name, drop, expected):
    if name == "cub200":
        sources = [write_tar(tmp_path / "CUB_200_2011.tgz", cub_files(drop=(drop,))[0], "w:gz")]
    elif name == "tinyimagenet":
        sources = [write_zip(tmp_path / "tiny-imagenet-200.zip", tiny_files(drop=(drop,))[0])]
    elif name == "mit67":
        sources = list(mit67_files(tmp_path)[:2])
    else:
        images, lists, _ = dogs_archives(tmp_path)
        if drop == "test_list.mat":
            with tarfile.open(lists) as t:
                kept = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.name != drop}
            write_tar(lists, kept)
        sources = [images] if drop == "lists.tar" else [images, lists]
    assert expected in fails(name, "--from", *sources, "--data-root", tmp_path / "data")
    assert_nothing_left(tmp_path / "data", name)


def test_wrong_files_for_the_data_set_give_one_line(tmp_path):
    root = tmp_path / "data"
    images, lists, _ = dogs_archives(tmp_path)
    cub, _ = cub_archive(tmp_path)
    # the Dogs lists given for CUB: known by name
    assert f"{lists} is a file of Stanford Dogs, not of CUB-200-2011; cub200 needs CUB_200_2011.tgz" in fails(
        "cub200", "--from", lists, "--data-root", root)
    # the Dogs lists renamed as CUB's archive: found out by their contents
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "CUB_200_2011.tgz").write_bytes(lists.read_bytes())
    assert "CUB_200_2011.tgz is not the expected archive: none of its first 3 files is one cskd prepare needs" \
        in fails("cub200", "--from", renamed / "CUB_200_2011.tgz", "--data-root", root)
    # CUB's archive renamed as the Dogs lists
    (renamed / "lists.tar").write_bytes(cub.read_bytes())
    assert "lists.tar is not the expected archive" in fails("dogs", "--from", images, renamed / "lists.tar",
                                                            "--data-root", root)
    # a text file in place of a MATLAB list
    (renamed / "train_list.mat").write_text("n02085620-Chihuahua/n02085620_1000.jpg\n")
    (renamed / "test_list.mat").write_bytes(tarfile.open(lists).extractfile("test_list.mat").read())
    assert "train_list.mat in " in (msg := fails("dogs", "--from", images, renamed / "train_list.mat",
                                                  renamed / "test_list.mat", "--data-root", root))
    assert "is not a MATLAB file" in msg
    # MIT67's lists given for TinyImageNet, and a folder of nothing useful
    _, train, _, _ = mit67_files(tmp_path)
    assert "is a file of MIT Indoor 67, not of Tiny ImageNet" in fails("tinyimagenet", "--from", train,
                                                                          "--data-root", root)
    assert "a folder without any file of Tiny ImageNet" in fails("tinyimagenet", "--from", renamed / "..",
                                                                 "--data-root", root)
    assert "no such file or folder" in fails("cub200", "--from", tmp_path / "nowhere", "--data-root", root)
    for name in ("cub200", "dogs", "tinyimagenet"):
        assert_nothing_left(root, name)


def test_an_archive_and_its_extracted_folder_side_by_side_are_ambiguous(tmp_path):
    archive, _ = cub_archive(tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    assert "holds both CUB_200_2011.tgz and its extracted files" in fails("cub200", "--from", tmp_path,
                                                                          "--data-root", tmp_path / "data")


def test_archive_members_never_leave_the_target(tmp_path):
    files, _ = cub_files()
    files["CUB_200_2011/../../escaped.jpg"] = jpeg(0)
    archive = write_tar(tmp_path / "CUB_200_2011.tgz", files, "w:gz")
    assert "holds an unsafe path 'CUB_200_2011/../.." in fails("cub200", "--from", archive,
                                                                            "--data-root", tmp_path / "d/data")
    assert not list(tmp_path.rglob("escaped.jpg"))
    # split files naming a path outside the archive's images
    files, _ = cub_files()
    files["CUB_200_2011/images.txt"] += b"99 ../../../../etc/passwd\n"
    files["CUB_200_2011/train_test_split.txt"] += b"99 1\n"
    archive = write_tar(tmp_path / "CUB_200_2011.tgz", files, "w:gz")
    assert "lists '../../../../etc/passwd', not a '<class>/<file>'" in fails("cub200", "--from", archive,
                                                                             "--data-root", tmp_path / "d/data")
    files, _ = tiny_files()
    files["tiny-imagenet-200/val/val_annotations.txt"] += b"../../../../etc/passwd\tn01443537\t0\t0\t1\t1\n"
    archive = write_zip(tmp_path / "tiny-imagenet-200.zip", files)
    assert "val/val_annotations.txt in " in (msg := fails("tinyimagenet", "--from", archive,
                                                          "--data-root", tmp_path / "d/data"))
    assert "holds an unsafe path 'val/images/../../../../etc/passwd'" in msg
    assert_nothing_left(tmp_path / "d/data", "cub200")
    assert_nothing_left(tmp_path / "d/data", "tinyimagenet")


def test_read_prepared(tmp_path):
    assert prep.read_prepared(tmp_path) is None
    archive, _ = cub_archive(tmp_path)
    run("cub200", "--from", archive, "--data-root", tmp_path / "data")
    rec = prep.read_prepared(tmp_path / "data/cub200")
    assert json.loads(json.dumps(rec)) == rec
    assert set(rec) == {"format", "name", "cskd_version", "counts", "classes", "partial", "allow_partial", "files",
                        "sources"}
    path = tmp_path / "data/cub200/prepared.json"
    path.write_text(json.dumps({**rec, "classes": "3"}))
    with pytest.raises(UserError, match="is not a record cskd prepare wrote"):
        prep.read_prepared(path.parent)
    path.write_text("{")
    with pytest.raises(UserError, match="prepared.json is damaged"):
        prep.read_prepared(path.parent)


def test_options(tmp_path):
    parser = argparse.ArgumentParser()
    prep.add_arguments(parser)
    args = parser.parse_args(["mit67", "--from", "a", "b"])
    assert (args.name, args.sources, args.data_root, args.allow_partial, args.progress) == \
        ("mit67", ["a", "b"], "data", False, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["cifar100", "--from", "a"])
    with pytest.raises(SystemExit):
        parser.parse_args(["cub200"])


def test_a_data_root_inside_the_source_folder_keeps_the_second_run_a_noop(tmp_path, capsys):
    archive, expected = cub_archive(tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "ex", filter="data")
    for _ in range(2):
        run("cub200", "--from", tmp_path / "ex", "--data-root", tmp_path / "ex/CUB_200_2011/data")
    assert "nothing to do" in capsys.readouterr().out
    assert listing(tmp_path / "ex/CUB_200_2011/data/cub200") == expected


@pytest.mark.slow  # 48 prepares
def test_damaged_archives_never_give_a_traceback(tmp_path):
    """Archives cut short or with flipped bits: a one-line UserError and nothing left, or (a flip inside image
    data, which tar does not checksum) a complete copy."""
    import random

    rng = random.Random(0)
    for trial in range(48):
        d = tmp_path / str(trial)
        d.mkdir()
        if trial % 3 == 0:
            name, sources = "cub200", [cub_archive(d)[0]]
        elif trial % 3 == 1:
            name, sources = "tinyimagenet", [write_zip(d / "tiny-imagenet-200.zip", tiny_files()[0])]
        else:
            name, sources = "dogs", list(dogs_archives(d)[:2])
        victim = rng.choice(sources)
        data = bytearray(victim.read_bytes())
        if trial % 2:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(3):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(data))
        try:
            run(name, "--from", *sources, "--data-root", d / "data")
        except UserError as e:
            assert "\n" not in str(e)
            assert_nothing_left(d / "data", name)
        else:
            assert prep.read_prepared(d / "data" / name)["partial"] is False


@pytest.mark.slow
def test_cskd_train_reads_a_prepared_set_and_records_it(tmp_path):
    """The issue's check: `cskd train --dataset cub200 --data-root DIR` reads the prepared folder,
    and the run's config.json names what prepare recorded."""
    import json

    from cskd.cli.main import main

    archive, _ = cub_archive(tmp_path)
    run("cub200", "--from", archive, "--data-root", tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--dataset", "cub200", "--data-root", str(tmp_path / "data"), "--model", "small",
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--protocol", "authors",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["num_train"] == 8 and meta["num_test"] == 5
    prepared = meta["data"]["prepared"]
    assert prepared["name"] == "cub200" and prepared["counts"] == {"train": 8, "test": 5}
    assert prepared["sources"][0]["name"] == archive.name
