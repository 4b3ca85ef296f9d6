import numpy as np
import pytest

from cskd.analysis.confusion import confusion_matrix, most_confused_pairs, per_class_accuracy

# true  [0, 0, 0, 1, 1, 2, 2, 2]
# pred  [0, 1, 1, 0, 1, 1, 0, 2]
TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PRED = np.array([0, 1, 1, 0, 1, 1, 0, 2])


def test_confusion_matrix_hand_computed():
    m = confusion_matrix(PRED, TRUE)
    assert m.dtype == np.int64
    # row t counts where the samples of true class t went
    np.testing.assert_array_equal(m, [[1, 2, 0],
                                      [1, 1, 0],
                                      [1, 1, 1]])
    # n_classes adds an empty class 3
    assert confusion_matrix(PRED, TRUE, n_classes=4).shape == (4, 4)


def test_per_class_accuracy_hand_computed():
    # class 0: 1 of 3; class 1: 1 of 2; class 2: 1 of 3; class 3: no sample -> NaN
    acc = per_class_accuracy(PRED, TRUE, n_classes=4)
    np.testing.assert_allclose(acc, [1 / 3, 1 / 2, 1 / 3, np.nan])


def test_most_confused_pairs_directed():
    m = confusion_matrix(PRED, TRUE)
    # off-diagonal counts: (0->1) 2, (1->0) 1, (2->0) 1, (2->1) 1; ties by (true, predicted) id
    assert most_confused_pairs(m, k=10) == [(0, 1, 2), (1, 0, 1), (2, 0, 1), (2, 1, 1)]
    assert most_confused_pairs(m, k=2) == [(0, 1, 2), (1, 0, 1)]


def test_most_confused_pairs_symmetric():
    m = confusion_matrix(PRED, TRUE)
    # {0, 1}: 2 + 1 = 3; {0, 2}: 0 + 1 = 1; {1, 2}: 0 + 1 = 1
    assert most_confused_pairs(m, k=5, symmetric=True) == [(0, 1, 3), (0, 2, 1), (1, 2, 1)]


def test_most_confused_pairs_leaves_out_zero_counts():
    assert most_confused_pairs(np.eye(3, dtype=np.int64) * 5, k=3) == []


@pytest.mark.parametrize("call, message", [
    (lambda: confusion_matrix([0, 1], [0]), "pred has 2 entries but labels has 1 rows"),
    (lambda: confusion_matrix([0, 3], [0, 1], n_classes=3), "pred must lie in [0, 3) for 3 classes; got 3"),
    (lambda: confusion_matrix([], []), "labels is empty; need at least one sample"),
    (lambda: most_confused_pairs(np.zeros((2, 3), int)), "confusion must be a square (C, C) matrix; got shape (2, 3)"),
    (lambda: most_confused_pairs(np.zeros((2, 2))), "confusion must hold non-negative integer counts"),
    (lambda: most_confused_pairs(np.zeros((2, 2), int), k=0), "k must be a positive integer; got 0"),
])
def test_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
