import torch

from cskd.method.sampler import ClassWiseBatchSampler

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 1, 0])


def all_pairs(sampler, epoch):
    batches = sampler.epoch_batches(epoch)
    return torch.cat([a for a, _ in batches]), torch.cat([p for _, p in batches])


def test_every_sample_is_an_anchor_once_and_partners_share_the_class():
    s = ClassWiseBatchSampler(LABELS, batch_size=5, seed=3)
    for epoch in range(20):
        anchors, partners = all_pairs(s, epoch)
        assert sorted(anchors.tolist()) == list(range(len(LABELS)))
        assert torch.equal(LABELS[anchors], LABELS[partners])


def test_partner_differs_from_anchor_unless_class_is_a_singleton():
    s = ClassWiseBatchSampler(LABELS, batch_size=4, seed=0)
    for epoch in range(50):
        anchors, partners = all_pairs(s, epoch)
        singleton = LABELS[anchors] == 2  # class 2 has one sample: it can only pair with itself
        assert torch.all(anchors[~singleton] != partners[~singleton])
        assert torch.all(anchors[singleton] == partners[singleton])


def test_partners_are_uniform_over_the_other_class_members():
    # Anchor 0 (class 0, members 0,1,2,11): partners 1, 2, 11 each about a third of the time.
    s = ClassWiseBatchSampler(LABELS, batch_size=12, seed=5)
    counts = torch.zeros(len(LABELS))
    for epoch in range(3000):
        anchors, partners = all_pairs(s, epoch)
        counts[partners[anchors == 0]] += 1
    assert counts[0] == 0 and counts[3:11].sum() == 0
    freq = counts[[1, 2, 11]] / 3000
    assert torch.all((freq - 1 / 3).abs() < 0.04), freq


def test_allow_self_pair_reproduces_the_authors_sampler():
    s = ClassWiseBatchSampler(LABELS, batch_size=12, seed=1, allow_self_pair=True)
    self_pairs = sum(int((a == p).sum()) for e in range(200) for a, p in s.epoch_batches(e))
    # Expected self-pairs per epoch: Σ_classes 1 = 4 (one per class, n_c * 1/n_c); 200 epochs ≈ 800.
    assert 650 < self_pairs < 950


def test_same_seed_same_pairs_different_seed_different_pairs():
    a = ClassWiseBatchSampler(LABELS, batch_size=4, seed=7)
    b = ClassWiseBatchSampler(LABELS, batch_size=4, seed=7)
    c = ClassWiseBatchSampler(LABELS, batch_size=4, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(all_pairs(a, 2), all_pairs(b, 2)))
    assert not all(torch.equal(x, y) for x, y in zip(all_pairs(a, 2), all_pairs(c, 2)))


def test_state_round_trip_restores_seed_epoch_and_self_pairing():
    """The state a checkpoint keeps is {seed, epoch, allow_self_pair}: a sampler built with other
    values and loaded from it holds every one of them, and draws what the original draws."""
    a = ClassWiseBatchSampler(LABELS, batch_size=4, seed=7, allow_self_pair=True)
    a.epoch_batches(4)
    state = a.state_dict()
    assert state == {"seed": 7, "epoch": 4, "allow_self_pair": True}
    restored = ClassWiseBatchSampler(LABELS, batch_size=4, seed=0, allow_self_pair=False)
    assert restored.epoch == 0
    restored.load_state_dict(state)
    assert (restored.seed, restored.epoch, restored.allow_self_pair) == (7, 4, True)
    assert restored.state_dict() == state
    assert all(torch.equal(x, y) for x, y in zip(all_pairs(a, 5), all_pairs(restored, 5)))
    assert restored.epoch == a.epoch == 5


def test_drop_last_gives_full_batches_only():
    s = ClassWiseBatchSampler(LABELS, batch_size=5, seed=0, drop_last=True)
    assert len(s) == 2 and all(len(a) == 5 for a, _ in s.epoch_batches(0))
