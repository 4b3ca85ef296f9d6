import numpy as np
import pytest

from cskd.analysis.retrieval import recall_at_k


def brute_force_recall(x, y, k):
    """Independent reference: full distance matrix, self excluded by an infinite diagonal."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nbr = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float(np.mean((y[nbr] == y[:, None]).any(axis=1)))


def test_hand_computed_1d():
    # points 0, 1, 10, 11, 20 with labels 0, 0, 1, 0, 1
    x = np.array([[0.0], [1.0], [10.0], [11.0], [20.0]])
    y = np.array([0, 0, 1, 0, 1])
    # k=1: 0->1 hit, 1->0 hit, 10->11 miss, 11->10 miss, 20->11 (9 < 10) miss -> 2/5
    assert recall_at_k(x, y, k=1) == pytest.approx(2 / 5)
    # k=2: 0->{1,10} hit, 1->{0,10} hit, 10->{11,1} miss, 11->{10,20} miss, 20->{11,10} hit
    assert recall_at_k(x, y, k=2) == pytest.approx(3 / 5)


def test_duplicates_drop_self_not_first_column():
    # rows 0 and 1 are the same point with different labels: each one's nearest other sample
    # is the other copy (distance 0) -> both miss. Dropping the first column instead of the
    # query's own index would leave one of them matched with itself (a false hit).
    # rows 2-4: three copies with one label -> hits. rows 5, 6: near each other, same label.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [50.0, 50.0], [50.0, 50.0], [50.0, 50.0],
                  [100.0, 0.0], [101.0, 0.0]])
    y = np.array([0, 1, 2, 2, 2, 3, 3])
    assert recall_at_k(x, y, k=1) == pytest.approx(5 / 7)
    assert recall_at_k(x, y, k=1) == pytest.approx(brute_force_recall(x, y, 1))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_brute_force(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, 6, 300)
    x = rng.normal(size=(6, 8))[y] * 0.7 + rng.normal(size=(300, 8))
    expected = brute_force_recall(x, y, k)
    assert 0.2 < expected < 1.0  # a non-trivial case
    assert recall_at_k(x, y, k=k) == pytest.approx(expected)
    # batching must not change the result
    assert recall_at_k(x, y, k=k, batch_size=7) == pytest.approx(expected)


def test_accepts_float16_and_non_contiguous():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    x = rng.normal(size=(50, 16))
    view = np.asfortranarray(x)[:, ::2]  # non-contiguous
    assert recall_at_k(view.astype(np.float16), y) == pytest.approx(
        brute_force_recall(view.astype(np.float16).astype(np.float64), y, 1))


@pytest.mark.parametrize("call, message", [
    (lambda: recall_at_k(np.zeros(5), np.zeros(5, int)),
     "features must be a 2-D array (N, D); got shape (5,)"),
    (lambda: recall_at_k(np.zeros((5, 2)), np.zeros(4, int)),
     "labels has 4 entries but features has 5 rows"),
    (lambda: recall_at_k(np.zeros((3, 2)), np.zeros(3, int), k=3),
     "k must be at most N - 1 = 2 (each sample's own match is excluded); got 3"),
    (lambda: recall_at_k(np.zeros((3, 2)), np.zeros(3, int), k=0),
     "k must be a positive integer; got 0"),
])
def test_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
