"""Classification metrics on raw logits: softmax, top-k error, negative log-likelihood."""

from __future__ import annotations

import numpy as np

from . import _checks


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of a (N, C) logit array, as float64.

    p[i, c] = exp(z[i, c] - m_i) / sum_j exp(z[i, j] - m_i) with m_i = max_j z[i, j]; subtracting
    the row maximum keeps exp() from overflowing and does not change the result.
    """
    z = _checks.logits(logits)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits) -> np.ndarray:
    """Row-wise natural-log softmax of a (N, C) logit array, float64 (log-sum-exp, stable)."""
    z = _checks.logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def top_k_error(logits, labels, *, k: int = 1) -> float:
    """Fraction in [0, 1] of samples whose label is not among the k highest scores.

    A sample counts as correct when fewer than k classes score *strictly* higher than its label,
    so ties are resolved in the label's favour (deterministic, independent of class order).
    Requires 1 <= k <= C.
    """
    z, y = _checks.logits_and_labels(logits, labels)
    k = _checks.positive_int(k, "k")
    if k > z.shape[1]:
        raise ValueError(f"k must be at most the number of classes ({z.shape[1]}); got {k}")
    true_score = z[np.arange(z.shape[0]), y]
    n_higher = (z > true_score[:, None]).sum(axis=1)
    return float(np.mean(n_higher >= k))


def nll(logits, labels) -> float:
    """Mean negative log-likelihood, in nats: -(1/N) * sum_i log softmax(z_i)[y_i]. Range [0, inf)."""
    z, y = _checks.logits_and_labels(logits, labels)
    return float(-np.mean(log_softmax(z)[np.arange(z.shape[0]), y]))
