import math

import numpy as np
import pytest

from cskd.analysis.calibration import (
    adaptive_ece,
    apply_temperature,
    brier_score,
    classwise_ece,
    confidence_and_correctness,
    ece,
    ece_bootstrap_ci,
    ece_from_bins,
    fit_temperature,
    mce,
    mce_from_bins,
    overconfidence,
    reliability_bins,
    reliability_bins_from_confidence,
)
from cskd.analysis.metrics import nll, softmax

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
    assert b.n_samples == 4 and b.strategy == "uniform"
    np.testing.assert_allclose(b.edges, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(b.gap, [np.nan, -0.5, 0.6, -0.1])


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


def test_confidence_and_correctness_hand_computed():
    conf, correct = confidence_and_correctness(P, Y)
    np.testing.assert_allclose(conf, [1.0, 0.6, 0.5, 0.8])
    assert correct.dtype == bool and correct.tolist() == [True, False, True, True]  # c: tie -> class 0


def test_bins_from_cached_confidence_equal_bins_from_probs():
    conf, correct = confidence_and_correctness(P, Y)
    for strategy in ("uniform", "quantile"):
        a = reliability_bins_from_confidence(conf, correct, n_bins=3, strategy=strategy)
        b = reliability_bins(P, Y, n_bins=3, strategy=strategy)
        for field in ("lower", "upper", "accuracy", "confidence", "count"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # correctness as 0 / 1 integers is accepted too
    ints = reliability_bins_from_confidence(conf, correct.astype(int), n_bins=4)
    np.testing.assert_array_equal(ints.count, [0, 1, 1, 2])


def test_equal_mass_bins_hand_computed():
    # sorted by confidence: c .5 (right), b .6 (wrong), d .8 (right), a 1.0 (right)
    # 3 bins of sizes 2, 1, 1 (larger first): {c, b}, {d}, {a}
    b = reliability_bins(P, Y, n_bins=3, strategy="quantile")
    assert b.strategy == "quantile"
    np.testing.assert_array_equal(b.count, [2, 1, 1])
    np.testing.assert_allclose(b.upper, [0.6, 0.8, 1.0])  # the largest confidence of each bin
    np.testing.assert_allclose(b.lower, [0.0, 0.6, 0.8])  # the previous upper edge, 0 first
    np.testing.assert_allclose(b.accuracy, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(b.confidence, [0.55, 0.8, 1.0])
    # ECE = (2 * |.5 - .55| + 1 * |1 - .8| + 1 * |1 - 1|) / 4 = (.1 + .2) / 4 = .075; MCE = .2
    assert ece_from_bins(b) == pytest.approx(0.075)
    assert mce_from_bins(b) == pytest.approx(0.2)
    assert adaptive_ece(P, Y, n_bins=3) == pytest.approx(0.075)


def test_equal_mass_bins_more_bins_than_samples_and_ties():
    b = reliability_bins(P, Y, n_bins=6, strategy="quantile")
    np.testing.assert_array_equal(b.count, [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(b.upper, [0.5, 0.6, 0.8, 1.0, 1.0, 1.0])  # empty bins: both edges at the max
    np.testing.assert_allclose(b.lower, [0.0, 0.5, 0.6, 0.8, 1.0, 1.0])
    # three tied confidences .7 cut 2 | 1 by input order: the tie straddles the two bins
    b = reliability_bins_from_confidence([0.7, 0.7, 0.7, 0.9], [1, 0, 0, 1], n_bins=2, strategy="quantile")
    np.testing.assert_array_equal(b.count, [2, 2])
    np.testing.assert_allclose(b.accuracy, [0.5, 0.5])
    np.testing.assert_allclose(b.confidence, [0.7, 0.8])
    np.testing.assert_allclose(b.edges, [0.0, 0.7, 0.9])


def test_brier_score_hand_computed():
    # a: (1-1)² + 0² = 0; b: (.6-0)² + (.4-1)² = .72; c: .5² + .5² = .5; d: .2² + .2² = .08
    assert brier_score(P, Y) == pytest.approx((0 + 0.72 + 0.5 + 0.08) / 4)
    # three classes: (.2)² + (.5)² + (.3 - 1)² = .04 + .25 + .49
    assert brier_score([[0.2, 0.5, 0.3]], [2]) == pytest.approx(0.78)
    assert brier_score([[1.0, 0.0]], [1]) == pytest.approx(2.0)  # certain and wrong: the maximum


def test_overconfidence_hand_computed():
    # mean confidence (1 + .6 + .5 + .8) / 4 = .725, accuracy 3/4 -> -.025 (slightly under-confident)
    assert overconfidence(P, Y) == pytest.approx(-0.025)
    assert overconfidence([[0.9, 0.1]], [1]) == pytest.approx(0.9)


def test_ece_bootstrap_matches_the_exact_resampling_distribution():
    # Two samples in one bin, both at confidence .9, one right and one wrong. Resamples:
    # {a, a} (prob 1/4): ECE |1 - .9| = .1; {a, b} (1/2): |.5 - .9| = .4; {b, b} (1/4): .9.
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    y = np.array([0, 1])
    # the 30 % and 70 % quantiles of that distribution are both .4; 2.5 % is .1, 97.5 % is .9
    assert ece_bootstrap_ci(p, y, n_boot=4000, level=0.4, seed=1) == (pytest.approx(0.4), pytest.approx(0.4))
    assert ece_bootstrap_ci(p, y, n_boot=4000, level=0.95, seed=1) == (pytest.approx(0.1), pytest.approx(0.9))


def test_ece_bootstrap_is_seeded_and_brackets_the_ece():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * 3
    y = rng.integers(0, 5, 300)
    p = softmax(z)
    low, high = ece_bootstrap_ci(p, y, n_boot=200, seed=3)
    assert 0.0 <= low < ece(p, y) < high <= 1.0
    assert ece_bootstrap_ci(p, y, n_boot=200, seed=3) == (low, high)
    assert ece_bootstrap_ci(p, y, n_boot=200, seed=4) != (low, high)
    # a perfectly calibrated, perfectly confident model has ECE 0 in every resample
    assert ece_bootstrap_ci(np.eye(3), [0, 1, 2], n_boot=50) == (0.0, 0.0)


@pytest.mark.parametrize("call, message", [
    (lambda: reliability_bins(P, Y, strategy="equal"),
     "strategy must be one of ('uniform', 'quantile'); got 'equal'"),
    (lambda: reliability_bins_from_confidence([0.5, 1.5], [1, 0]),
     "confidence must hold finite values in [0, 1] (max softmax probabilities)"),
    (lambda: reliability_bins_from_confidence([0.5, 0.6], [1]), "correct has shape (1,) but confidence has shape (2,)"),
    (lambda: reliability_bins_from_confidence([0.5], [2]),
     "correct must hold booleans (or 0 / 1): whether each prediction is right"),
    (lambda: ece_bootstrap_ci(P, Y, level=1.0), "level must be a number strictly between 0 and 1; got 1.0"),
    (lambda: ece_bootstrap_ci(P, Y, n_boot=0), "n_boot must be a positive integer; got 0"),
    (lambda: brier_score([[3.0, -2.0]], [0]),
     "probs must lie in [0, 1]; got values in [-2, 3] (pass softmax(logits), not logits)"),
])
def test_new_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


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
