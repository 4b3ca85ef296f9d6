"""`import cskd` as a library: the public names, the class-wise batch sampler with a plain
DataLoader, the loss against a hand computation, bad input, the docstring examples, the example
script."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cskd
import cskd.method.losses
import cskd.method.sampler
from cskd.data.loaders import BatchSpec, TensorBatches
from cskd.data.sets import load_bundle

ROOT = Path(__file__).resolve().parents[1]
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # class 3 has a single sample


def test_public_names_resolve_and_are_documented():
    assert set(cskd.__all__) == {*cskd._WHERE, "__version__"}
    for name in cskd.__all__:
        value = getattr(cskd, name)
        if name != "__version__" and name != "MODELS":
            assert value.__doc__ and len(value.__doc__.strip()) > 40, name
    assert "CSKDLoss" in dir(cskd)
    with pytest.raises(AttributeError):
        cskd.no_such_name  # noqa: B018


def test_importing_the_package_does_not_import_torch():
    code = "import sys, cskd.errors, cskd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _pairs(item: list[int]) -> tuple[list[int], list[int]]:
    b = len(item) // 2
    return item[:b], item[b:]


def test_every_partner_shares_its_anchors_class_and_differs_from_it():
    s = cskd.ClassWiseBatchSampler(LABELS, batch_size=4, seed=3)
    for epoch in range(20):
        s.set_epoch(epoch)
        seen = []
        for item in s:
            anchors, partners = _pairs(item)
            assert len(anchors) == len(partners)
            for a, p in zip(anchors, partners):
                assert LABELS[a] == LABELS[p]
                assert (a != p) or a == 9  # only the lone sample of class 3 is its own partner
            seen += anchors
        assert sorted(seen) == list(range(len(LABELS)))  # every sample is an anchor once per epoch


def test_set_epoch_changes_the_draws_and_the_same_epoch_repeats_them():
    s = cskd.ClassWiseBatchSampler(LABELS, batch_size=4, seed=0)
    s.set_epoch(5)
    first = list(s)
    s.set_epoch(6)
    other = list(s)
    s.set_epoch(5)
    assert list(s) == first and other != first
    again = cskd.ClassWiseBatchSampler(LABELS.tolist(), batch_size=4, seed=0)  # a list works too
    again.set_epoch(5)
    assert list(again) == first
    assert len(s) == 3 == len(first)  # ceil(10 / 4)
    assert len(cskd.ClassWiseBatchSampler(LABELS, batch_size=4, drop_last=True)) == 2


def test_two_ranks_items_together_are_the_single_process_item():
    single = cskd.ClassWiseBatchSampler(LABELS, batch_size=4, seed=1)
    ranks = [cskd.ClassWiseBatchSampler(LABELS, batch_size=4, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for s in (single, *ranks):
        s.set_epoch(2)
    # 10 anchors in global batches of 4: the last global batch (2 anchors) splits 1 + 1
    assert len(ranks[0]) == len(single) == 3
    for whole, mine, theirs in zip(single, *ranks):
        anchors, partners = _pairs(whole)
        a0, p0 = _pairs(mine)
        a1, p1 = _pairs(theirs)
        assert a0 == anchors[0::2] and a1 == anchors[1::2]  # the strided share, as the trainer's ranks take it
        assert p0 == partners[0::2] and p1 == partners[1::2]
    # a last global batch of fewer anchors than ranks is dropped (a rank without samples would stall)
    assert len(cskd.ClassWiseBatchSampler(LABELS[:9], batch_size=4, num_replicas=2, rank=1)) == 2


def test_a_sampler_built_before_the_process_group_takes_its_ranks_share(monkeypatch):
    s = cskd.ClassWiseBatchSampler(LABELS, batch_size=4, seed=1)  # as a DataLoader built before fit()
    whole = list(s)
    dist = torch.distributed  # then the process group starts: rank 1 of 2
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    mine = list(s)
    assert s.replicas == (2, 1) and len(mine) == len(whole)
    assert all(_pairs(m)[0] == _pairs(w)[0][1::2] for m, w in zip(mine, whole))


def test_the_trainer_draws_from_the_same_sampler():
    bundle = load_bundle("digits", data_root="unused", val_fraction=0.0)
    spec = BatchSpec(batch_size=32, seed=4, partner="class")
    src = TensorBatches(bundle, bundle.train, spec, device=torch.device("cpu"))
    assert type(src.sampler) is cskd.ClassWiseBatchSampler
    public = cskd.ClassWiseBatchSampler(bundle.train.labels, 32, seed=4)
    public.set_epoch(3)
    anchors, partners = src.sampler.epoch_batches(3)[0]
    assert next(iter(public)) == anchors.tolist() + partners.tolist()


def test_a_plain_dataloader_collates_anchors_then_partners():
    x = torch.arange(10.0).unsqueeze(1)
    loader = DataLoader(TensorDataset(x, LABELS), batch_sampler=cskd.ClassWiseBatchSampler(LABELS, 4, seed=0))
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    (xa, ya), (xp, yp) = cskd.split_pairs(batches[0])
    assert torch.equal(ya, yp) and xa.shape == xp.shape == (4, 1)
    assert torch.equal(LABELS[xa.squeeze(1).long()], ya)
    anchors, partners = cskd.split_pairs({"y": batches[0][1]})
    assert torch.equal(anchors["y"], partners["y"])


def _numpy_cskd(logits, partner, labels, t, lam):
    """Eq. (1) written out in float64 numpy."""
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ce = -log_softmax(logits)[np.arange(len(labels)), labels].mean()
    log_p, log_q = log_softmax(logits / t), log_softmax(partner / t)
    kl = (np.exp(log_q) * (log_q - log_p)).sum(1).mean()
    return ce + lam * t * t * kl


@pytest.mark.parametrize("t, lam", [(4.0, 1.0), (1.0, 3.0), (0.5, 0.0)])
def test_loss_equals_a_hand_computation(t, lam):
    g = torch.Generator().manual_seed(0)
    logits, partner = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    got = cskd.CSKDLoss(temperature=t, lambda_cls=lam)(logits, partner, labels)
    assert got.ndim == 0
    want = _numpy_cskd(logits.double().numpy(), partner.double().numpy(), labels.numpy(), t, lam)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_the_partner_gets_no_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    partner = torch.randn(4, 3, requires_grad=True)
    cskd.CSKDLoss()(logits, partner, torch.tensor([0, 1, 2, 0])).backward()
    assert partner.grad is None and logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("make, error, words", [
    (lambda: cskd.ClassWiseBatchSampler(torch.tensor([0.0, 1.0]), 1), TypeError, "integer class ids"),
    (lambda: cskd.ClassWiseBatchSampler([], 1), ValueError, "empty"),
    (lambda: cskd.ClassWiseBatchSampler([0, -1], 1), ValueError, ">= 0"),
    (lambda: cskd.ClassWiseBatchSampler([[0, 1]], 1), ValueError, "one-dimensional"),
    (lambda: cskd.ClassWiseBatchSampler([0, 1, 1], 4, drop_last=True), ValueError, "larger than"),
    (lambda: cskd.ClassWiseBatchSampler([0, 1, 1], 0), ValueError, "positive integer"),
    (lambda: cskd.ClassWiseBatchSampler([0, 1, 1], 2, num_replicas=2, rank=2), ValueError, "rank must be"),
    (lambda: cskd.ClassWiseBatchSampler([0, 1, 1], 2, num_replicas=0, rank=0), ValueError, "num_replicas"),
    (lambda: len(cskd.ClassWiseBatchSampler([0, 1, 1, 0], 2, num_replicas=4, rank=0)), ValueError,
     "smaller than the 4 processes"),
    (lambda: cskd.ClassWiseBatchSampler([0, 1, 1], 1, anchors_per_epoch=5), ValueError, "anchors_per_epoch"),
    (lambda: cskd.CSKDLoss(temperature=0), ValueError, "temperature"),
    (lambda: cskd.CSKDLoss()(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1])), ValueError, "3 class ids"),
    (lambda: cskd.CSKDLoss()(torch.zeros(3, 2), torch.zeros(2, 2), torch.tensor([0, 1, 0])), ValueError,
     "shape of logits"),
    (lambda: cskd.CSKDLoss()(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0.0, 1.0])), TypeError, "integer"),
    (lambda: cskd.split_pairs(torch.zeros(3)), ValueError, "2·B"),
])
def test_bad_input_says_what_is_wrong(make, error, words):
    with pytest.raises(error, match=words):
        make()


@pytest.mark.parametrize("module", [cskd.method.losses, cskd.method.sampler])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_the_plain_pytorch_example_trains(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "plain_pytorch.py"), "--epochs", "2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert out.returncode == 0, out.stderr
    assert "CS-KD, 2 epochs: test accuracy" in out.stdout
    accuracy = float(out.stdout.split("accuracy ")[1].split("%")[0])
    assert accuracy > 50  # 10 classes: chance is 10 %


@pytest.mark.slow
def test_the_lightning_example_trains_with_new_pairs_every_epoch(tmp_path):
    pytest.importorskip("lightning", reason="Lightning is an optional extra (pip install lightning); "
                                            "examples/lightning_module.py is not run without it")
    import importlib.util

    import lightning as L

    spec = importlib.util.spec_from_file_location("lightning_example", ROOT / "examples" / "lightning_module.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    epochs = []

    class Recording(cskd.ClassWiseBatchSampler):
        def __iter__(self):
            epochs.append(self.epoch)  # the epoch whose pairs this pass draws
            return super().__iter__()

    labels = torch.tensor([0, 1] * 16)
    data = TensorDataset(torch.randn(32, 1, 8, 8), labels)
    loader = DataLoader(data, batch_sampler=Recording(labels, batch_size=8))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, use_distributed_sampler=False, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(example.CSKDModule(num_classes=2), loader)
    assert epochs[:2] == [0, 1]  # new pairs every epoch, as in cskd's trainer
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_module.py"), "--epochs", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "CS-KD (Lightning), 1 epochs: test accuracy" in out.stdout
