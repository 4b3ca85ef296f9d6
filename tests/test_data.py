import numpy as np
import pytest
import torch
from PIL import Image

from cskd.config import resolve
from cskd.data.augment import normalize, random_crop_flip
from cskd.data.loaders import BatchSpec, HostBatches, TensorBatches, eval_batches
from cskd.data.sets import load_bundle
from cskd.errors import UserError
from cskd.training.trainer import run_training


def test_digits_split_is_fixed_stratified_and_disjoint():
    a = load_bundle("digits", data_root="unused", val_fraction=0.1, split_seed=0)
    b = load_bundle("digits", data_root="unused", val_fraction=0.1, split_seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert torch.equal(a.test.indices, b.test.indices) and torch.equal(a.val.indices, b.val.indices)
    # train/val indices refer to the same 80 % pool and never overlap
    assert not set(a.train.indices.tolist()) & set(a.val.indices.tolist())
    for split in (a.val, a.test):
        counts = torch.bincount(split.labels, minlength=10).float()
        assert counts.min() >= 0.8 * counts.mean()  # stratified: every class about equally present
    c = load_bundle("digits", data_root="unused", val_fraction=0.1, split_seed=1)
    assert torch.equal(a.test.indices, c.test.indices)  # the test split never moves
    assert not torch.equal(a.val.indices, c.val.indices)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (1, 8, 8)


def test_random_crop_flip_matches_torchvision_semantics():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(4000, 1, 1, 1) + 1
    out = random_crop_flip(x, pad=1, flip=True, generator=g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    # Each output is a 4x4 window of the zero-padded 6x6 image, possibly mirrored.
    padded = torch.nn.functional.pad(x[:1], (1, 1, 1, 1))[0, 0]
    windows = {}
    for dy in range(3):
        for dx in range(3):
            w = padded[dy:dy + 4, dx:dx + 4]
            windows[(dy, dx, 0)] = w
            windows[(dy, dx, 1)] = w.flip(1)
    seen = {}
    for img in out[:, 0]:
        key = next(k for k, w in windows.items() if torch.equal(w, img))
        seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 18  # all 9 offsets x 2 flips occur
    flipped = sum(v for k, v in seen.items() if k[2]) / len(out)
    assert abs(flipped - 0.5) < 0.04
    centre = sum(v for k, v in seen.items() if k[:2] == (1, 1)) / len(out)
    assert abs(centre - 1 / 9) < 0.03


def test_normalize_uses_per_channel_statistics():
    x = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.5, 2.0, 1.0]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.0]))
    as_float = x.float()  # the float input of the 224-px paths (crops, resizes) gives the same, left unchanged
    assert torch.equal(normalize(as_float, torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.5, 2.0, 1.0])), out)
    assert torch.equal(as_float, x.float())


def test_tensor_batches_give_pairs_of_the_same_class_in_range():
    bundle = load_bundle("digits", data_root="unused")
    src = TensorBatches(bundle, bundle.train, BatchSpec(batch_size=100, seed=0, partner="class"),
                        device=torch.device("cpu"))
    b = next(iter(src.epoch(0)))
    x, y, xp = b.x, b.y, b.partner
    assert x.shape == xp.shape == (100, 1, 8, 8) and x.dtype == torch.float32
    # partners share the anchor's class: check it through the sampler's draw for this epoch
    anchors, partners = src.sampler.epoch_batches(0)[0]
    assert torch.equal(bundle.train.labels[anchors], bundle.train.labels[partners])
    assert torch.equal(y, bundle.train.labels[anchors])
    lo, hi = (0 - bundle.mean[0]) / bundle.std[0], (1 - bundle.mean[0]) / bundle.std[0]
    assert x.min() >= lo - 1e-5 and x.max() <= hi + 1e-5
    assert len(src) == -(-len(bundle.train) // 100)


def _write_images(folder, classes, per_class, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / c / f"{i}.png")


@pytest.mark.slow
def test_imagefolder_layout_trains_through_dataloader(tmp_path):
    root = tmp_path / "set"
    _write_images(root / "train", ["a", "b", "c"], 6)
    _write_images(root / "test", ["a", "b", "c"], 2)
    bundle = load_bundle("imagefolder", data_root=str(root), val_fraction=0.3)
    assert bundle.class_names == ["a", "b", "c"] and len(bundle.test) == 6 and len(bundle.val) == 6
    src = HostBatches(bundle, bundle.train, BatchSpec(batch_size=4, seed=0, partner="class"),
                      device=torch.device("cpu"), workers=0)
    b = next(iter(src.epoch(0)))
    x, xp = b.x, b.partner
    assert x.shape == (4, 3, 224, 224) and xp.shape == x.shape
    xs, ys, idx = next(iter(eval_batches(bundle, bundle.test, batch_size=8, device=torch.device("cpu"), workers=0)))
    assert xs.shape == (6, 3, 224, 224) and idx.tolist() == list(range(6))
    cfg = resolve({"dataset": "imagefolder", "data_root": str(root), "model": "small", "epochs": 1, "batch_size": 4,
                   "val_fraction": 0.3, "workers": 0, "out": str(tmp_path / "run")})
    summary = run_training(cfg, progress=False)
    assert summary["test_n"] == 6


def test_tinyimagenet_official_val_layout(tmp_path):
    root = tmp_path / "tinyimagenet"
    _write_images(root / "train", ["n01", "n02"], 3, size=(64, 64))
    (root / "val" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(root / "val" / "images" / "val_0.JPEG")
    Image.new("RGB", (64, 64)).save(root / "val" / "images" / "val_1.JPEG")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t1\t1\nval_1.JPEG\tn01\t0\t0\t1\t1\n")
    bundle = load_bundle("tinyimagenet", data_root=str(tmp_path), val_fraction=0.34)
    assert bundle.test.labels.tolist() == [1, 0] and bundle.image_size == 32
    xs, _, _ = next(iter(eval_batches(bundle, bundle.test, batch_size=8, device=torch.device("cpu"), workers=0)))
    assert xs.shape == (2, 3, 32, 32)


def test_mislaid_folder_set_names_the_expected_folder(tmp_path):
    (tmp_path / "cub200" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found under"):
        load_bundle("cub200", data_root=str(tmp_path))
    _write_images(tmp_path / "mit67" / "train", ["only"], 2)
    _write_images(tmp_path / "mit67" / "test", ["only"], 1)
    with pytest.raises(UserError, match="only class 'only' has training images; classification needs"):
        load_bundle("mit67", data_root=str(tmp_path))
    _write_images(tmp_path / "dogs" / "train", ["x", "y"], 2)
    with pytest.raises(UserError, match=r"expected test images in .*dogs/test"):
        load_bundle("dogs", data_root=str(tmp_path), val_fraction=0.5)


def test_mixed_data_set_draws_per_class_samples_and_keeps_test_sets(tmp_path):
    for name, classes in (("birds", ["b1", "b2"]), ("dogs", ["d1", "d2", "d3"])):
        _write_images(tmp_path / name / "train", classes, 5)
        _write_images(tmp_path / name / "test", classes, 2)
    roots = (str(tmp_path / "birds"), str(tmp_path / "dogs"))
    bundle = load_bundle("mixed", data_root="unused", mixed_roots=roots, mixed_per_class=3, val_fraction=0.4)
    assert bundle.class_names == ["birds/b1", "birds/b2", "dogs/d1", "dogs/d2", "dogs/d3"]
    assert bundle.fine_to_coarse == [0, 0, 1, 1, 1] and bundle.coarse_names == ["birds", "dogs"]
    assert len(bundle.train) + len(bundle.val) == 5 * 3  # 3 training images per fine class
    assert torch.bincount(bundle.test.labels).tolist() == [2] * 5  # the original test sets, whole
    with pytest.raises(UserError, match="at least two --mixed-roots"):
        load_bundle("mixed", data_root="unused", mixed_roots=roots[:1])
    # one class in each folder still makes a set of two classes
    for name in ("cats", "cars"):
        _write_images(tmp_path / name / "train", [name[:2]], 5)
        _write_images(tmp_path / name / "test", [name[:2]], 2)
    single = load_bundle("mixed", data_root="unused", mixed_roots=(str(tmp_path / "cats"), str(tmp_path / "cars")),
                         mixed_per_class=3, val_fraction=0.4)
    assert single.class_names == ["cats/ca", "cars/ca"]


@pytest.mark.slow
def test_mixed_run_reports_hierarchical_accuracy(tmp_path):
    import json

    from cskd.evaluation.analyze import analyze

    for name, classes in (("birds", ["b1", "b2"]), ("rooms", ["r1", "r2"])):
        _write_images(tmp_path / name / "train", classes, 4, size=(12, 12))
        _write_images(tmp_path / name / "test", classes, 2, size=(12, 12))
    cfg = resolve({"dataset": "mixed", "mixed_roots": (str(tmp_path / "birds"), str(tmp_path / "rooms")),
                   "mixed_per_class": 4, "model": "small", "epochs": 1, "batch_size": 4, "val_fraction": 0.5,
                   "workers": 0, "out": str(tmp_path / "run")})
    run_training(cfg, progress=False)
    metrics = analyze([str(tmp_path / "run")], str(tmp_path / "report"), progress=False, tsne_max_points=100)
    assert 0 <= metrics["run"]["hierarchical_accuracy"] <= 1
    assert (tmp_path / "report" / "figures").is_dir()
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["run"]["hierarchical_accuracy"] >= \
        1 - metrics["run"]["top1_error"] - 1e-9  # a right fine label is always a right coarse label
