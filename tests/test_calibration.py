import math

import numpy as np
import pytest

from analysis.calibration import (adaptive_ece, apply_temperature, classwise_ece, ece,
                                  ece_from_bins, fit_temperature, mce, reliability_bins)
from analysis.metrics import nll, softmax

# Four samples, two classes; with n_bins=4 the bins are [0, .25], (.25, .5], (.5, .75], (.75, 1].
#   a: [1.0, 0.0] y=0 -> conf 1.0, correct -> bin 3 (1.0 belongs to the LAST bin)
#   b: [0.6, 0.4] y=1 -> conf 0.6, wrong   -> bin 2
#   c: [0.5, 0.5] y=0 -> conf 0.5, correct (argmax tie -> class 0) -> bin 1 (0.5 closes bin 1)
#   d: [0.8, 0.2] y=0 -> conf 0.8, correct -> bin 3
P = np.array([[1.0, 0.0], [0.6, 0.4], [0.5, 0.5], [0.8, 0.2]])
Y = np.array([0, 1, 0, 0])


def test_reliability_bins_hand_computed():
    b = reliability_bins(P, Y, n_bins=4)
    np.testing.assert_allclose(b.lower, [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(b.upper, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(b.count, [0, 1, 1, 2])
    # empty bin 0 -> NaN; bin 3 holds a and d: acc (1+1)/2 = 1, conf (1.0+0.8)/2 = 0.9
    np.testing.assert_allclose(b.accuracy, [np.nan, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(b.confidence, [np.nan, 0.5, 0.6, 0.9])
    assert b.n_samples == 4


def test_ece_and_mce_hand_computed():
    # ECE = 1/4*|1-.5| + 1/4*|0-.6| + 2/4*|1-.9| = .125 + .15 + .05 = .325
    assert ece(P, Y, n_bins=4) == pytest.approx(0.325)
    assert ece_from_bins(reliability_bins(P, Y, n_bins=4)) == pytest.approx(0.325)
    # MCE = max(.5, .6, .1) over the non-empty bins (the empty bin's NaN is ignored)
    assert mce(P, Y, n_bins=4) == pytest.approx(0.6)


def test_confidence_one_lands_in_last_of_20_bins():
    # A phantom 21st bin (the known bug) would leave count[19] == 0 or add an entry.
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    b = reliability_bins(p, [0, 0, 0], n_bins=20)
    assert b.count.shape == (20,) and b.count.sum() == 3
    assert b.count[19] == 2 and b.count[9] == 1  # 0.5 closes bin 9 = (0.45, 0.5]
    assert b.upper[-1] == 1.0
    # bin 19: one right (conf 1), one wrong (conf 1) -> gap .5, weight 2/3; bin 9: acc 1, conf .5
    assert ece(p, [0, 0, 0]) == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 0.5)


def test_default_is_20_bins_and_perfect_confidence_gives_zero_ece():
    p = np.eye(3)
    assert reliability_bins(p, [0, 1, 2]).count.shape == (20,)
    assert ece(p, [0, 1, 2]) == 0.0


def test_single_class_is_perfectly_calibrated():
    p = np.ones((3, 1))
    y = [0, 0, 0]
    assert ece(p, y) == 0.0 and mce(p, y) == 0.0
    assert adaptive_ece(p, y) == 0.0 and classwise_ece(p, y) == 0.0
    assert reliability_bins(p, y).count[-1] == 3


def test_adaptive_ece_hand_computed():
    # sorted by confidence: c .5 (right), b .6 (wrong), d .8 (right), a 1.0 (right)
    # 2 equal-mass bins: {c, b}: acc .5, conf .55 -> 2*.05; {d, a}: acc 1, conf .9 -> 2*.1
    # -> (0.1 + 0.2) / 4 = 0.075
    assert adaptive_ece(P, Y, n_bins=2) == pytest.approx(0.075)
    # more bins than samples: 4 singleton groups + empty ones; = mean |correct - conf|
    # = (|1-.5| + |0-.6| + |1-.8| + |1-1|) / 4 = 1.3 / 4
    assert adaptive_ece(P, Y, n_bins=10) == pytest.approx(1.3 / 4)


def test_classwise_ece_hand_computed():
    # class 0: p0 = [1, .6, .5, .8], y0 = [1, 0, 1, 1]; bins 3, 2, 1, 3
    #   bin1 {c}: |1 - .5| = .5; bin2 {b}: |0 - .6| = .6; bin3 {a, d}: |2 - 1.8| = .2 -> 1.3/4
    # class 1: p1 = [0, .4, .5, .2], y1 = [0, 1, 0, 0]; bins 0, 1, 1, 0
    #   bin0 {a, d}: |0 - .2| = .2; bin1 {b, c}: |1 - .9| = .1 -> .3/4
    # mean = (.325 + .075) / 2 = .2
    assert classwise_ece(P, Y, n_bins=4) == pytest.approx(0.2)


def test_fit_temperature_exact_two_class_solution():
    # Every sample has logits [10, 0]; label 0 for 3 of 4. NLL is minimal where
    # sigmoid(10 / T) = 3/4, i.e. 10 / T = ln 3 -> T = 10 / ln 3 = 9.1024...
    z = np.tile([[10.0, 0.0]], (4, 1))
    y = np.array([0, 0, 0, 1])
    t = fit_temperature(z, y)
    assert t == pytest.approx(10 / math.log(3), rel=1e-4)


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    pred = np.where(rng.random(400) < 0.6, y, (y + 1) % 5)  # 60 % right
    z = 8.0 * np.eye(5)[pred] + rng.normal(0, 0.5, (400, 5))  # ~99.9 % confident
    t = fit_temperature(z, y)
    assert t > 1.0
    zt = apply_temperature(z, t)
    assert nll(zt, y) < nll(z, y) - 0.5
    assert ece(softmax(zt), y) < ece(softmax(z), y) / 2
    # the fitted T is a minimum: nudging it either way does not lower the NLL
    assert nll(z / t, y) <= min(nll(z / (t * 1.05), y), nll(z / (t / 1.05), y))


def test_apply_temperature():
    np.testing.assert_allclose(apply_temperature([[2.0, 4.0]], 2), [[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"^temperature must be a finite number > 0; got 0$"):
        apply_temperature([[1.0, 2.0]], 0)


@pytest.mark.parametrize("fn", [ece, mce, adaptive_ece, classwise_ece, reliability_bins])
def test_n_bins_must_be_positive(fn):
    with pytest.raises(ValueError) as err:
        fn(P, Y, n_bins=0)
    assert str(err.value) == "n_bins must be a positive integer; got 0"


def test_logits_instead_of_probs_are_refused():
    with pytest.raises(ValueError, match=r"^probs must lie in \[0, 1\]; got values in \[-1, 3\] "
                                         r"\(pass softmax\(logits\), not logits\)$"):
        ece([[3.0, -1.0]], [0])
    with pytest.raises(ValueError, match=r"^each row of probs must sum to 1; worst row is off"):
        ece([[0.2, 0.2]], [0])
    with pytest.raises(ValueError, match=r"^labels has 3 entries but probs has 4 rows$"):
        ece(P, [0, 1, 0])
