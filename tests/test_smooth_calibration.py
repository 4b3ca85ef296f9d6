"""Smooth ECE and the smooth reliability curve: equal to relplot's own computation on the same
arrays, about 0 for calibrated predictions, large for over-confident ones, reproducible."""

import doctest

import numpy as np
import pytest
import relplot

import cskd.analysis.smooth_calibration as sc
from cskd.analysis.calibration import confidence_and_correctness, ece_from_bins, reliability_bins_from_confidence


def _calibrated(n, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0, 1, n)
    return f, rng.uniform(size=n) < f  # P(correct | confidence f) = f


def test_equals_relplot_on_the_same_arrays():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(400, 5)) * 3
    labels = rng.integers(0, 5, 400)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    conf, right = confidence_and_correctness(probs, labels)
    want = relplot.smECE(conf, right.astype(float))
    assert sc.smooth_ece(probs, labels) == pytest.approx(want, abs=1e-12)
    assert sc.smooth_ece_from_confidence(conf, right) == pytest.approx(want, abs=1e-12)


def test_calibrated_predictions_have_a_smooth_ece_near_zero():
    f, y = _calibrated(20_000)
    assert sc.smooth_ece_from_confidence(f, y) < 0.02


def test_over_confident_predictions_have_a_large_smooth_ece():
    rng = np.random.default_rng(2)
    f = np.full(5_000, 0.95)
    y = rng.uniform(size=5_000) < 0.5  # 95 % sure, right half of the time
    assert sc.smooth_ece_from_confidence(f, y) == pytest.approx(0.45, abs=0.02)


def test_it_does_not_depend_on_a_bin_count_as_the_binned_ece_does():
    f, y = _calibrated(500, seed=3)
    binned = {m: ece_from_bins(reliability_bins_from_confidence(f, y, n_bins=m)) for m in (5, 20, 100)}
    assert binned[100] - binned[5] > 0.03  # the binned ECE of the same predictions grows with M
    assert sc.smooth_ece_from_confidence(f, y) < binned[20]


def test_the_curve_and_band_are_reproducible_and_leave_numpys_random_state_alone():
    f, y = _calibrated(3_000, seed=4)
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    a = sc.smooth_reliability(f, y, n_boot=20)
    assert np.random.random() == before  # the caller's global stream is untouched
    b = sc.smooth_reliability(f, y, n_boot=20)
    assert np.array_equal(a.lower, b.lower) and np.array_equal(a.upper, b.upper)
    assert (a.lower <= a.accuracy + 1e-9).mean() > 0.95 and (a.accuracy <= a.upper + 1e-9).mean() > 0.95
    assert a.smooth_ece == pytest.approx(sc.smooth_ece_from_confidence(f, y))
    inside = (a.mesh > 0.2) & (a.mesh < 0.8)  # calibrated: the curve follows the diagonal
    assert np.abs(a.accuracy[inside] - a.mesh[inside]).mean() < 0.03


@pytest.mark.parametrize("conf, right, words", [
    ([1.5, 0.2], [True, False], r"\[0, 1\]"),
    ([0.5, 0.2], [True], "shape"),
    ([], [], "non-empty"),
])
def test_bad_input_says_what_is_wrong(conf, right, words):
    with pytest.raises(ValueError, match=words):
        sc.smooth_ece_from_confidence(conf, right)


def test_docstring_examples_run():
    result = doctest.testmod(sc, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
