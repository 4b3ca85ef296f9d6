import math

import numpy as np
import pytest

from cskd.analysis.misclassified import (
    log_probs_on,
    logprob_hist_counts,
    misclassified_by_all,
    misclassified_by_first_not_second,
    predictive_distribution,
)

Y = np.array([0, 1, 2, 0])
# run a predicts [0, 0, 1, 0] -> wrong on rows 1, 2; run b predicts [0, 1, 0, 1] -> wrong on 2, 3
A = np.eye(3)[[0, 0, 1, 0]] * 5.0
B = np.eye(3)[[0, 1, 0, 1]] * 5.0


def test_misclassified_by_all_hand_computed():
    got = misclassified_by_all({"a": A, "b": B}, Y)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [2])  # {1, 2} ∩ {2, 3}
    np.testing.assert_array_equal(misclassified_by_all({"a": A}, Y), [1, 2])


def test_misclassified_by_first_not_second():
    np.testing.assert_array_equal(misclassified_by_first_not_second(A, B, Y), [1])  # {1,2} - {2,3}
    np.testing.assert_array_equal(misclassified_by_first_not_second(B, A, Y), [3])


def test_log_probs_on_hand_computed():
    # softmax([0, ln 3]) = [1/4, 3/4]; label 0 -> predicted ln(3/4), true ln(1/4)
    z = np.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    lp = log_probs_on(z, [0, 0], [0])
    assert lp["predicted"] == pytest.approx([math.log(0.75)])
    assert lp["true"] == pytest.approx([math.log(0.25)])
    lp = log_probs_on(z, [0, 0], np.array([1, 0]))  # row 1 is right: predicted == true
    assert lp["predicted"] == pytest.approx([math.log(0.75)] * 2)
    assert lp["true"] == pytest.approx([math.log(0.75), math.log(0.25)])
    empty = log_probs_on(z, [0, 0], [])  # no rows: empty arrays
    assert empty["predicted"].shape == (0,) and empty["true"].shape == (0,)


def test_predictive_distribution_hand_computed():
    # logits ln[1, 2, 3, 4] -> probs [.1, .2, .3, .4]
    z = np.log([[1.0, 2.0, 3.0, 4.0]])
    d = predictive_distribution(z, [0], 0, k=2)
    np.testing.assert_array_equal(d["classes"], [3, 2])
    np.testing.assert_allclose(d["probs"], [0.4, 0.3])
    assert d["true_class"] == 0 and d["true_prob"] == pytest.approx(0.1)
    assert d["true_in_topk"] is False
    assert predictive_distribution(z, [2], 0, k=2)["true_in_topk"] is True


def test_predictive_distribution_ties_go_to_lower_class_id():
    d = predictive_distribution(np.zeros((1, 4)), [3], 0, k=3)
    np.testing.assert_array_equal(d["classes"], [0, 1, 2])
    np.testing.assert_allclose(d["probs"], [0.25] * 3)


def test_logprob_hist_counts_share_edges_and_count_log_zero_in_the_lowest_bin():
    edges, counts = logprob_hist_counts({"a": [-np.inf, -1.0, -0.5, np.nan], "b": [-0.25]}, bins=2)
    np.testing.assert_allclose(edges, [-1.0, -0.5, 0.0])
    assert counts["a"].tolist() == [2, 1] and counts["b"].tolist() == [0, 1]
    edges, counts = logprob_hist_counts({"a": [0.0, -np.inf]}, bins=1)  # no value below 0
    np.testing.assert_allclose(edges, [-1e-3, 0.0])
    assert counts["a"].tolist() == [2]


@pytest.mark.parametrize("call, message", [
    (lambda: misclassified_by_all({}, Y),
     "logits_by_run must be a non-empty dict of run name -> (N, C) logits"),
    (lambda: misclassified_by_all({"a": A, "b": B[:3]}, Y),
     "all runs must have logits of one shape; got {'a': (4, 3), 'b': (3, 3)}"),
    (lambda: misclassified_by_all({"a": A}, Y[:3]),
     "labels has 3 entries but logits of run 'a' has 4 rows"),
    (lambda: misclassified_by_first_not_second(A, B[:2], Y),
     "logits_a and logits_b must have one shape; got (4, 3) and (2, 3)"),
    (lambda: predictive_distribution(A, Y, 4), "i must lie in [0, 4); got 4"),
    (lambda: predictive_distribution(A, Y, 0, k=4),
     "k must be at most the number of classes (3); got 4"),
    (lambda: log_probs_on(A, Y, [5]), "idx must lie in [0, 4); got values in [5, 5]"),
    (lambda: logprob_hist_counts({}), "logprobs_by_run is empty; pass at least one run"),
    (lambda: logprob_hist_counts({"a": [-1.0]}, bins=0), "bins must be a positive integer; got 0"),
])
def test_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
