import math

import numpy as np
import pytest

from cskd.analysis.metrics import log_softmax, nll, softmax, top_k_error


def test_softmax_hand_computed():
    # exp(0) = 1, exp(ln 3) = 3 -> [1/4, 3/4]
    p = softmax([[0.0, math.log(3.0)]])
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-12)


def test_softmax_is_stable_for_huge_logits():
    # naive exp(1000) overflows to inf and gives NaN; shifting by the max gives exactly 1/2
    p = softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    assert np.all(np.isfinite(p)) and p[1, 1] == pytest.approx(1.0)


def test_log_softmax_matches_log_of_softmax():
    z = np.array([[0.0, math.log(3.0)], [2.0, -1.0]])
    np.testing.assert_allclose(log_softmax(z), np.log(softmax(z)), rtol=1e-12)


def _ranked():
    z = np.array([[3.0, 2.0, 1.0],
                  [3.0, 2.0, 1.0],
                  [3.0, 2.0, 1.0],
                  [1.0, 1.0, 0.0]])
    # row 0: label 0 has 0 classes above it; row 1: label 1 has 1 above; row 2: label 2 has 2
    # above; row 3: label 1 ties with class 0 -> 0 strictly above -> counts as correct.
    return z, np.array([0, 1, 2, 1])


def test_top_k_error_hand_computed():
    z, y = _ranked()
    assert top_k_error(z, y, k=1) == pytest.approx(2 / 4)  # rows 1 and 2 wrong
    assert top_k_error(z, y, k=2) == pytest.approx(1 / 4)  # only row 2 wrong
    assert top_k_error(z, y, k=3) == 0.0


def test_nll_hand_computed():
    # row 0: p(y=1) = 3/4 -> -ln(3/4); row 1: p(y=0) = 1/2 -> ln 2
    z = [[0.0, math.log(3.0)], [0.0, 0.0]]
    assert nll(z, [1, 0]) == pytest.approx((-math.log(0.75) + math.log(2.0)) / 2, rel=1e-12)
    assert nll([[0.0, math.log(3.0)]], [0]) == pytest.approx(math.log(4.0), rel=1e-12)


def test_single_class():
    # one class: p = 1 for every sample, nothing can be wrong, NLL = -ln 1 = 0
    z = np.array([[5.0], [-2.0], [0.0]])
    y = np.zeros(3, dtype=np.int64)
    assert top_k_error(z, y) == 0.0
    assert nll(z, y) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_array_equal(softmax(z), np.ones((3, 1)))


@pytest.mark.parametrize("call, message", [
    (lambda: softmax(np.zeros(5)), "logits must be a 2-D array (N, C); got shape (5,)"),
    (lambda: top_k_error(np.zeros((5, 3)), np.zeros(4, int)),
     "labels has 4 entries but logits has 5 rows"),
    (lambda: top_k_error(np.zeros((2, 3)), [0, 3]),
     "labels must lie in [0, 3) for 3 classes; got 3"),
    (lambda: nll(np.zeros((2, 3)), [0, -1]), "labels must be >= 0; got -1"),
    (lambda: nll(np.zeros((2, 3)), [0.5, 1]), "labels must hold integer class ids; got dtype float64"),
    (lambda: top_k_error(np.zeros((2, 3)), [0, 1], k=0), "k must be a positive integer; got 0"),
    (lambda: top_k_error(np.zeros((2, 3)), [0, 1], k=4),
     "k must be at most the number of classes (3); got 4"),
    (lambda: nll([[0.0, np.nan]], [0]),
     "logits contains NaN or infinite values; remove or fix those rows"),
])
def test_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
