"""The data paths: device and host augmentation agree in their statistics; in-batch pairing
behaves as documented; a step's batch depends only on (seed, epoch, step), so skipping steps
(a mid-epoch resume) or splitting the batch over ranks gives the same samples and augmentations."""

import collections

import pytest
import torch

from cskd.config import resolve
from cskd.data.bundle import DataBundle, Split
from cskd.data.loaders import BatchSpec, HostBatches, TensorBatches
from cskd.method.batch import Batch
from cskd.method.objectives import StepContext, cskd_step, paired_logits
from cskd.training.trainer import run_training


def _bundle(n=600):
    # Every image is the same 4x4 ramp with unique pixel values 1..16 (one channel), so each
    # augmented output identifies its crop offset and flip exactly.
    img = (torch.arange(16, dtype=torch.uint8) + 1).reshape(1, 1, 4, 4).repeat(n, 1, 1, 1)
    labels = torch.arange(n) % 3
    split = Split(labels=labels, indices=torch.arange(n), images=img)
    return DataBundle("ramp", ["a", "b", "c"], 1, 4, (0.0,), (1.0,), split, None, split, crop_pad=1, flip=True)


def _offsets(x):
    """(dy, dx, flipped) of every augmented ramp in x (values are pixel/255 since mean 0, std 1)."""
    padded = torch.nn.functional.pad((torch.arange(16) + 1).reshape(4, 4), (1, 1, 1, 1))
    windows = {}
    for dy in range(3):
        for dx in range(3):
            w = padded[dy:dy + 4, dx:dx + 4]
            windows[(dy, dx, False)], windows[(dy, dx, True)] = w, w.flip(1)
    keys, stack = list(windows), torch.stack(list(windows.values()))
    match = ((x[:, 0] * 255).round().long()[:, None] == stack[None]).all(dim=3).all(dim=2)  # (images, windows)
    assert bool(match.any(dim=1).all()), "an output that is no crop of the ramp"
    return [keys[i] for i in match.int().argmax(dim=1).tolist()]


def _stats(source, epochs=3):
    seen = []
    for e in range(epochs):
        for b in source.epoch(e):
            assert b.x.shape[1:] == (1, 4, 4) and b.x.dtype == torch.float32
            assert b.x.min() >= 0 and b.x.max() <= 16 / 255 + 1e-6
            seen += _offsets(b.x)
    flips = sum(k[2] for k in seen) / len(seen)
    per_offset = collections.Counter(k[:2] for k in seen)
    return flips, {k: v / len(seen) for k, v in per_offset.items()}


def _uniform(flips, offsets, n):
    """Flip rate 1/2 and the 9 crop offsets at 1/9 each, within ~3.4 binomial std for `n` images."""
    assert abs(flips - 0.5) < 3.4 * (0.25 / n) ** 0.5
    assert len(offsets) == 9 and all(abs(p - 1 / 9) < 3.4 * (8 / 81 / n) ** 0.5 for p in offsets.values())


def test_device_path_augmentation_statistics():
    bundle = _bundle()
    source = TensorBatches(bundle, bundle.train, BatchSpec(batch_size=100, seed=0), device=torch.device("cpu"))
    _uniform(*_stats(source), 1800)


@pytest.mark.slow  # ~1 s: the host path augments image by image
def test_host_path_has_the_device_paths_augmentation_statistics():
    bundle = _bundle()
    source = HostBatches(bundle, bundle.train, BatchSpec(batch_size=100, seed=0), device=torch.device("cpu"), workers=0)
    _uniform(*_stats(source), 1800)


def test_in_batch_pairing_batches_hold_anchors_then_their_partners():
    bundle = _bundle(60)
    src = TensorBatches(bundle, bundle.train, BatchSpec(batch_size=10, seed=1, partner="in-batch"),
                        device=torch.device("cpu"))
    batches = list(src.epoch(0))
    assert len(batches) == len(src) == 6  # 60 images per epoch: 30 anchors + their 30 partners, 10 per batch
    for b in batches:
        assert b.partner is None and b.x.shape[0] == 10
        assert torch.equal(b.y[:5], b.y[5:])  # row i and row i + B/2 share the class


def test_paired_logits_swaps_pair_members_and_is_detached():
    z = torch.arange(8.0).reshape(4, 2).requires_grad_()
    t = paired_logits(z)
    assert t.tolist() == [[4, 5], [6, 7], [0, 1], [2, 3]] and not t.requires_grad


def test_in_batch_cskd_step_does_a_single_forward():
    calls = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            calls.append(x.shape[0])
            return self.lin(x)

    cfg = resolve({"pairing": "in-batch"})
    out = cskd_step(StepContext(cfg, Net()), Batch(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])))
    assert calls == [6] and out.reg.item() > 0


@pytest.mark.slow
def test_in_batch_and_host_paths_train_on_digits(tmp_path):
    for name, extra in (("inbatch", {"pairing": "in-batch"}), ("host", {"loader": "host", "workers": 0})):
        cfg = resolve({"epochs": 1, "out": str(tmp_path / name), **extra}, "digits-small")
        assert run_training(cfg, progress=False)["test_acc"] > 0.2


def test_device_random_resized_crop_follows_torchvision_statistics():
    from torchvision.transforms import RandomResizedCrop

    from cskd.data.augment import random_resized_crop_boxes, random_resized_crop_flip

    g = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(20000, 64, 48, generator=g)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0 and boxes[:, 2].max() <= 48 and boxes[:, 3].max() <= 64
    torch.manual_seed(0)
    ref = torch.tensor([RandomResizedCrop.get_params(torch.zeros(1, 64, 48), [0.08, 1.0], [3 / 4, 4 / 3])
                        for _ in range(4000)], dtype=torch.float)
    ref_area, area = (ref[:, 2] * ref[:, 3]).mean() / (64 * 48), (w * h).mean() / (64 * 48)
    assert abs(area - ref_area) < 0.02
    log_ratio, ref_log_ratio = (w / h).log(), (ref[:, 3] / ref[:, 2]).log()
    assert abs(log_ratio.mean() - ref_log_ratio.mean()) < 0.03
    assert abs(log_ratio.std() - ref_log_ratio.std()) < 0.02  # spread too: always-square crops would fail here
    x = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    out = random_resized_crop_flip(x, size=32, generator=g)
    assert out.shape == (8, 3, 32, 32) and out.min() >= 0 and out.max() <= 255
    # A crop of a constant image is that constant, whatever the box.
    const = random_resized_crop_flip(torch.full((4, 3, 64, 64), 77, dtype=torch.uint8), size=32, generator=g)
    assert torch.allclose(const, torch.full_like(const, 77.0))


@pytest.mark.parametrize("keep", [slice(1, None, 3), torch.tensor([0, 4, 5])])
def test_a_share_of_a_batch_gets_the_crops_and_flips_of_the_whole_batch(keep):
    """Each process augments only its rows, with the draws one process would make for all of them."""
    from cskd.data.augment import random_crop_flip, random_resized_crop_flip

    x = torch.randint(0, 256, (7, 3, 20, 16), dtype=torch.uint8)
    sizes = torch.tensor([[20, 16], [12, 16], [20, 9], [17, 14], [20, 16], [10, 10], [15, 16]])
    for augment in (lambda y, **k: random_crop_flip(y, pad=3, flip=True, **k),
                    lambda y, **k: random_resized_crop_flip(y, size=8, sizes=sizes, **k)):
        whole = augment(x, generator=torch.Generator().manual_seed(5))
        part = augment(x[keep], generator=torch.Generator().manual_seed(5), keep=keep, total=len(x))
        assert len(part) == len(x[keep]) and torch.equal(part, whole[keep])
    # drawing for the share alone would give other crops (the property above is not trivially true)
    def crop(y):
        return random_crop_flip(y, pad=3, flip=True, generator=torch.Generator().manual_seed(5))

    assert not torch.equal(crop(x[keep]), crop(x)[keep])


@pytest.mark.slow
def test_tinyimagenet_is_moved_onto_the_device_path(tmp_path):
    import numpy as np
    from PIL import Image

    from cskd.data.placement import bundle_for

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("n1", "n2"):
            (tmp_path / "tinyimagenet" / split / c).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                    tmp_path / "tinyimagenet" / split / c / f"{i}.png")
    cfg = resolve({"dataset": "tinyimagenet", "data_root": str(tmp_path), "val_fraction": 0.4})
    bundle = bundle_for(cfg)
    assert bundle.in_memory and bundle.train.images.shape[1:] == (3, 64, 64)
    src = TensorBatches(bundle, bundle.train, BatchSpec(batch_size=4, seed=0, partner="class"),
                        device=torch.device("cpu"))
    b = next(iter(src.epoch(0)))
    assert b.x.shape == b.partner.shape == (4, 3, 32, 32)
    host = bundle_for(resolve({**cfg.to_dict(), "loader": "host"}))
    assert not host.in_memory


def test_random_resized_crop_boxes_stay_inside_each_padded_image():
    from cskd.data.augment import random_resized_crop_boxes

    g = torch.Generator().manual_seed(1)
    heights = torch.tensor([256, 300, 256, 40] * 500)
    widths = torch.tensor([256, 256, 600, 30] * 500)
    b = random_resized_crop_boxes(len(heights), heights, widths, generator=g)
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= widths).all() and (b[:, 3] <= heights).all()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (heights * widths)
    assert 0.07 < area.min() and area.max() <= 1.0
    # per image shape, the mean box area matches torchvision's RandomResizedCrop.get_params
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    for k, (h, w) in enumerate([(256, 256), (300, 256), (256, 600), (40, 30)]):
        ref = [RandomResizedCrop.get_params(torch.zeros(1, h, w), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(2000)]
        ref_area = sum(p[2] * p[3] for p in ref) / len(ref) / (h * w)
        assert abs(area[k::4].mean() - ref_area) < 0.03, (h, w)


@pytest.mark.parametrize("source", ["device", "host"])
@pytest.mark.parametrize("partner", ["none", "class", "in-batch", "view"])
def test_ranks_share_each_global_batch_exactly(source, partner):
    """Rank r of W keeps [r::W] of every global batch: over the ranks, step k holds exactly the
    anchors, partners and augmented images of single-process step k (a last batch of 7 split
    unevenly included), and each batch says its share of the global batch mean."""
    bundle = _bundle(30)
    cls = TensorBatches if source == "device" else HostBatches
    extra = {} if source == "device" else {"workers": 0}

    def batches(rank=0, world=1, start_step=0):
        spec = BatchSpec(batch_size=8 if partner != "in-batch" else 16, seed=3, partner=partner, rank=rank, world=world)
        src = cls(bundle, bundle.train, spec, device=torch.device("cpu"), **extra)
        return list(src.epoch(1, start_step))

    single = batches()
    ranks = [batches(r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)

    def interleave(a, b):
        out = torch.empty((len(a) + len(b), *a.shape[1:]), dtype=a.dtype)
        out[0::2], out[1::2] = a, b
        return out

    for k, whole in enumerate(single):
        parts = [ranks[r][k] for r in range(2)]
        if partner == "in-batch":  # each rank: its anchors, then their partners
            halves = [(p.x[: len(p.x) // 2], p.x[len(p.x) // 2:]) for p in parts]
            n = len(whole.x) // 2
            assert torch.equal(interleave(halves[0][0], halves[1][0]), whole.x[:n])
            assert torch.equal(interleave(halves[0][1], halves[1][1]), whole.x[n:])
        else:
            assert torch.equal(interleave(parts[0].x, parts[1].x), whole.x)
            if whole.partner is not None:
                assert torch.equal(interleave(parts[0].partner, parts[1].partner), whole.partner)
        for p in parts:  # this rank's anchors x W / the global batch's anchors
            assert p.share == pytest.approx(len(p.y) * 2 / len(whole.y))
        assert sum(p.share for p in parts) == pytest.approx(2)
    assert [b.x.tolist() for b in batches(start_step=2)] == [b.x.tolist() for b in single[2:]]


def test_host_augmentation_does_not_depend_on_the_number_of_workers():
    bundle = _bundle(40)
    kw = dict(spec=BatchSpec(batch_size=8, seed=5, partner="class"), device=torch.device("cpu"))
    a = [b.x for b in HostBatches(bundle, bundle.train, workers=0, **kw).epoch(0)]
    b = [b.x for b in HostBatches(bundle, bundle.train, workers=2, **kw).epoch(0)]
    assert len(a) == len(b) == 5 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
